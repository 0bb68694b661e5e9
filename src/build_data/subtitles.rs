//! Subtitle files (SRT, WebVTT, ASS/SSA) to timed lines of dialogue, with the speaker's name
//! where the file carries one: an ASS `Name` field, a WebVTT `<v Name>` tag, or a `NAME:`
//! prefix (SDH subtitles). Formatting tags are dropped and wrapped rows joined. A cue that
//! holds two speakers' turns (dialogue dashes, or a name on each row) is counted as such, so
//! that build-data never trains one character on another's words.

use std::borrow::Cow;
use std::path::Path;

use crate::data::manifest::MAX_TEXT_CHARS;

/// One subtitle line.
#[derive(Clone, Debug, PartialEq)]
pub struct Cue {
    /// 1-based position among the file's dialogue lines.
    pub number: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub name: Option<String>,
    /// How many speakers' turns the cue holds: 1, or more for `- Hi.` / `- Hello.` rows.
    pub turns: usize,
}

/// A cue that cannot be a spoken line (a bad or negative time, no length, no text, a text no
/// line has), kept with its place in the file for `rejected.jsonl`.
#[derive(Clone, Debug, PartialEq)]
pub struct BadCue {
    /// The 1-based line of the file where the cue starts (its times, or its `Dialogue:`).
    pub line: usize,
    /// The cue's text, cut to its first `SHOWN_CHARS` characters.
    pub text: String,
    pub reason: &'static str,
    pub detail: String,
}

/// A subtitle file read: its cues sorted by start, the ones rejected in file order, and the
/// text encoding it was read in.
#[derive(Debug)]
pub struct Subtitles {
    pub cues: Vec<Cue>,
    pub rejected: Vec<BadCue>,
    pub encoding: &'static str,
    /// The encoding was guessed (no byte-order mark, not UTF-8): the text may be misread.
    pub guessed: bool,
}

/// The subtitle extensions read, in order of preference when an episode has several.
pub const EXTENSIONS: [&str; 4] = ["ass", "ssa", "srt", "vtt"];

/// The largest subtitle file read (an episode's subtitles are tens of kilobytes).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// No episode is a day long.
const MAX_SECONDS: f64 = 24.0 * 3600.0;
/// How much of a rejected cue's text `rejected.jsonl` shows.
const SHOWN_CHARS: usize = 200;

/// Reads the subtitle file `path` (format from its extension, encoding from its byte-order
/// mark, else UTF-8, else UTF-16 by its zero bytes, else Windows-1252). Only an unreadable or
/// oversized file is an error; a cue that cannot be a spoken line is in `rejected`.
pub fn read(path: &Path) -> Result<Subtitles, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{}: {size} bytes, not a subtitle file (at most {} MiB)",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (text, encoding, guessed) = decode(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let raw = match extension.as_str() {
        "ass" | "ssa" => ass(text),
        "vtt" => timed_blocks(text, true),
        _ => timed_blocks(text, false),
    };
    let mut out = Subtitles {
        cues: Vec::new(),
        rejected: Vec::new(),
        encoding,
        guessed,
    };
    for raw in raw {
        match raw.judge() {
            Ok(cue) => out.cues.push(cue),
            Err(bad) => out.rejected.push(bad),
        }
    }
    out.cues.sort_by(|a, b| a.start.total_cmp(&b.start));
    for (i, cue) in out.cues.iter_mut().enumerate() {
        cue.number = i + 1;
    }
    Ok(out)
}

/// The text of `bytes`, the encoding's name, and whether it was a guess.
fn decode(bytes: &[u8]) -> (Cow<'_, str>, &'static str, bool) {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return (text, encoding.name(), false);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return (Cow::Borrowed(text), "UTF-8", false);
    }
    let encoding = utf16_by_zero_bytes(bytes).unwrap_or(encoding_rs::WINDOWS_1252);
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    (text, encoding.name(), true)
}

/// UTF-16 without a byte-order mark: text in Latin script has a zero byte in most code units,
/// always on the same side.
fn utf16_by_zero_bytes(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = &bytes[..bytes.len().min(4096) & !1];
    let units = head.len() / 2;
    let zeros = |offset: usize| {
        head.iter()
            .skip(offset)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let (even, odd) = (zeros(0), zeros(1));
    match units {
        0 => None,
        _ if odd * 2 > units && even * 20 < units => Some(encoding_rs::UTF_16LE),
        _ if even * 2 > units && odd * 20 < units => Some(encoding_rs::UTF_16BE),
        _ => None,
    }
}

/// A cue as parsed, before it is judged.
struct RawCue {
    line: usize,
    times: Result<(f64, f64), String>,
    rows: Vec<String>,
    /// An ASS `Name` field.
    name: Option<String>,
    vtt: bool,
}

impl RawCue {
    /// The cue, or why it cannot be a spoken line.
    fn judge(self) -> Result<Cue, BadCue> {
        let bytes: usize = self.rows.iter().map(String::len).sum();
        let reject = |reason: &'static str, detail: String, text: &str| BadCue {
            line: self.line,
            text: text.chars().take(SHOWN_CHARS).collect(),
            reason,
            detail,
        };
        // Checked before the text is cleaned, so that a cue of megabytes costs no more.
        if bytes > 4 * MAX_TEXT_CHARS {
            let head = self.rows.first().map_or("", String::as_str);
            let detail = format!(
                "{bytes} bytes of text, not one spoken line (at most {MAX_TEXT_CHARS} characters)"
            );
            return Err(reject("text_too_long", detail, head));
        }
        let (name, text) = spoken(&self.rows, self.vtt);
        let name = self.name.clone().or(name);
        let (start, end) = match self.times {
            Ok(times) => times,
            Err(detail) => return Err(reject("bad_time", detail, &text)),
        };
        let length = |detail: String| reject("no_length", detail, &text);
        if end < start {
            return Err(length(format!(
                "ends at {end:.3} s, before it starts ({start:.3} s)"
            )));
        }
        if end == start {
            return Err(length(format!("starts and ends at {start:.3} s")));
        }
        if text.is_empty() {
            return Err(reject(
                "no_text",
                "no words once markup is removed".into(),
                &text,
            ));
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            let detail =
                format!("{chars} characters, not one spoken line (at most {MAX_TEXT_CHARS})");
            return Err(reject("text_too_long", detail, &text));
        }
        Ok(Cue {
            number: 0,
            start,
            end,
            turns: turns(&self.rows),
            text,
            name,
        })
    }
}

/// SRT and WebVTT: blocks of an optional id, a `start --> end` line and text rows.
fn timed_blocks(text: &str, vtt: bool) -> Vec<RawCue> {
    let mut cues = Vec::new();
    let mut current: Option<RawCue> = None;
    for (index, row) in text.lines().enumerate() {
        let row = row.trim_end_matches('\r');
        if let Some((from, to)) = row.split_once("-->") {
            cues.extend(current.take());
            // WebVTT puts cue settings after the end time.
            let to = to.split_whitespace().next().unwrap_or_default();
            let times = timestamp(from.trim()).and_then(|s| Ok((s, timestamp(to)?)));
            current = Some(RawCue {
                line: index + 1,
                times,
                rows: Vec::new(),
                name: None,
                vtt,
            });
        } else if row.trim().is_empty() {
            cues.extend(current.take());
        } else if let Some(cue) = current.as_mut() {
            cue.rows.push(row.to_string());
        }
    }
    cues.extend(current);
    cues
}

/// `HH:MM:SS,mmm`, `HH:MM:SS.mmm`, `MM:SS.mmm` or ASS's `H:MM:SS.cc`, in seconds; digits only
/// (no sign), under a day.
fn timestamp(text: &str) -> Result<f64, String> {
    if text.starts_with('-') {
        return Err(format!("a negative time: {text:?}"));
    }
    let normalized = text.replace(',', ".");
    let number = |part: &str| {
        let digits = !part.is_empty() && part.chars().all(|c| c.is_ascii_digit() || c == '.');
        digits.then(|| part.parse::<f64>().ok()).flatten()
    };
    let parts: Vec<Option<f64>> = normalized.split(':').map(number).collect();
    let seconds = match parts.as_slice() {
        [Some(h), Some(m), Some(s)] => h * 3600.0 + m * 60.0 + s,
        [Some(m), Some(s)] => m * 60.0 + s,
        _ => return Err(format!("not a time: {text:?}")),
    };
    if !(seconds <= MAX_SECONDS) {
        return Err(format!(
            "{text:?} is past 24 hours: no episode is that long"
        ));
    }
    Ok(seconds)
}

/// The speaker's name (a `<v Name>` tag, or a `NAME:` prefix) and the spoken text of a cue's
/// rows, tags removed and rows joined.
fn spoken(rows: &[String], vtt: bool) -> (Option<String>, String) {
    let mut name = None;
    let mut joined = rows.join(" ");
    if vtt {
        if let Some(rest) = joined.strip_prefix("<v") {
            if let Some((voice, text)) = rest.split_once('>') {
                let voice = voice.trim().trim_start_matches('.').split_whitespace();
                let voice: Vec<&str> = voice.filter(|w| !w.starts_with('.')).collect();
                name = (!voice.is_empty()).then(|| voice.join(" "));
                joined = text.to_string();
            }
        }
    }
    let text = clean(&joined);
    match name {
        Some(name) => (Some(name), text),
        None => name_prefix(&text),
    }
}

/// `SHELDON: Hi.` -> (`SHELDON`, `Hi.`). A prefix counts when it is at most three words, each
/// starting with a capital letter.
fn name_prefix(text: &str) -> (Option<String>, String) {
    if let Some((prefix, rest)) = text.split_once(':') {
        let words: Vec<&str> = prefix.split_whitespace().collect();
        let is_name = !words.is_empty()
            && words.len() <= 3
            && words.iter().all(|w| {
                w.chars().next().is_some_and(char::is_uppercase)
                    && w.chars()
                        .all(|c| c.is_alphabetic() || matches!(c, '.' | '\'' | '-'))
            })
            && rest.starts_with(' ');
        if is_name {
            return (Some(words.join(" ")), rest.trim().to_string());
        }
    }
    (None, text.to_string())
}

/// Text without markup (`<i>`, `{\i1}`), ASS line breaks as spaces, a leading dialogue dash
/// dropped, whitespace collapsed.
fn clean(text: &str) -> String {
    let text = without_markup(text);
    text.strip_prefix("- ").unwrap_or(&text).to_string()
}

/// Text without markup and ASS line breaks, whitespace collapsed.
fn without_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skip_until = None;
    for c in text.chars() {
        match (skip_until, c) {
            (Some(end), c) if c == end => skip_until = None,
            (Some(_), _) => {}
            (None, '<') => skip_until = Some('>'),
            (None, '{') => skip_until = Some('}'),
            (None, c) => out.push(c),
        }
    }
    let out = out
        .replace("\\N", " ")
        .replace("\\n", " ")
        .replace("\\h", " ");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// ASS/SSA: `Dialogue:` lines of the `[Events]` section, fields in its `Format:` order.
fn ass(text: &str) -> Vec<RawCue> {
    let mut in_events = false;
    let mut format: Vec<String> = Vec::new();
    let mut cues = Vec::new();
    for (index, row) in text.lines().enumerate() {
        let row = row.trim();
        if row.starts_with('[') {
            in_events = row.eq_ignore_ascii_case("[events]");
            continue;
        }
        if !in_events {
            continue;
        }
        if let Some(fields) = row.strip_prefix("Format:") {
            format = fields
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .collect();
            continue;
        }
        let Some(fields) = row.strip_prefix("Dialogue:") else {
            continue;
        };
        let values: Vec<&str> = fields.splitn(format.len().max(1), ',').collect();
        let field = |name: &str| {
            format
                .iter()
                .position(|f| f == name)
                .and_then(|i| values.get(i))
                .map(|v| v.trim())
        };
        let time = |name: &str| match field(name) {
            Some(value) => timestamp(value),
            None if format.is_empty() => {
                Err("a Dialogue line before the [Events] Format line".into())
            }
            None => Err(format!("no `{name}` field")),
        };
        let times = time("start").and_then(|start| Ok((start, time("end")?)));
        let raw = field("text").unwrap_or_default();
        cues.push(RawCue {
            line: index + 1,
            times,
            rows: raw
                .replace("\\n", "\\N")
                .split("\\N")
                .map(str::to_string)
                .collect(),
            name: field("name").filter(|n| !n.is_empty()).map(str::to_string),
            vtt: false,
        });
    }
    cues
}

/// How many speakers' turns the rows of one cue hold. Subtitles mark a change of speaker with a
/// dash opening a row (`- Hi.` / `- Hello.`, or `Hi.` / `- Hello.`), or within one row after a
/// sentence (`- Hi. - Hello.`); SDH subtitles and WebVTT may name each speaker instead.
fn turns(rows: &[String]) -> usize {
    let voices = rows.iter().map(|r| r.matches("<v").count()).sum::<usize>();
    let rows: Vec<String> = rows
        .iter()
        .map(|r| without_markup(r))
        .filter(|r| !r.is_empty())
        .collect();
    let mut dashes = 0;
    for row in &rows {
        if opens_with_dash(row) {
            dashes += 1 + inner_dashes(row);
        }
    }
    if dashes > 0 && !rows.first().is_some_and(|r| opens_with_dash(r)) {
        dashes += 1;
    }
    let names = rows.iter().filter(|r| name_prefix(r).0.is_some()).count();
    dashes.max(names).max(voices).max(1)
}

fn opens_with_dash(row: &str) -> bool {
    let mut chars = row.chars();
    matches!(chars.next(), Some('-' | '\u{2013}' | '\u{2014}'))
        && chars
            .next()
            .is_some_and(|c| !c.is_ascii_digit() && c != '-')
}

/// Turns after the first within one row: a dash after the end of a sentence.
fn inner_dashes(row: &str) -> usize {
    let chars: Vec<char> = row.chars().collect();
    chars
        .windows(4)
        .filter(|w| {
            matches!(w[0], '.' | '?' | '!' | '\u{2026}')
                && w[1] == ' '
                && matches!(w[2], '-' | '\u{2013}' | '\u{2014}')
                && w[3] == ' '
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_vtt_and_ass_give_the_same_cues() {
        let srt = "1\n00:00:01,000 --> 00:00:02,500\nSHELDON: <i>Hello</i>\nthere.\n\n2\n00:00:03,000 --> 00:00:04,000\n- Bazinga!\n";
        let vtt = "WEBVTT\n\nNOTE a comment\n\n00:01.000 --> 00:02.500 align:start\n<v Sheldon>Hello\nthere.\n\nx\n00:00:03.000 --> 00:00:04.000\nBazinga!\n";
        let ass = "[Script Info]\nTitle: x\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nComment: 0,0:00:00.00,0:00:09.00,Default,,0,0,0,,not spoken\nDialogue: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,{\\i1}Bazinga!{\\i0}\nDialogue: 0,0:00:01.00,0:00:02.50,Default,Sheldon,0,0,0,,Hello,\\Nthere.\n";
        let dir = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        for (name, body) in [("a.srt", srt), ("a.vtt", vtt), ("a.ass", ass)] {
            let path = dir.path().join(name);
            std::fs::write(&path, body).unwrap();
            let cues = read(&path).unwrap().cues;
            assert_eq!(cues.len(), 2, "{name}: {cues:?}");
            assert_eq!(
                (cues[0].start, cues[0].end, cues[1].start),
                (1.0, 2.5, 3.0),
                "{name}"
            );
            assert_eq!(cues[1].text, "Bazinga!", "{name}");
            assert_eq!(cues[1].name, None, "{name}");
            assert_eq!(
                cues[0].name.as_deref().map(str::to_lowercase).as_deref(),
                Some("sheldon")
            );
            all.push(cues[0].text.replace(',', ""));
        }
        assert!(all.iter().all(|t| t == "Hello there."), "{all:?}");
    }

    #[test]
    fn two_speakers_in_one_cue_are_counted() {
        let rows = |t: &str| t.split('|').map(str::to_string).collect::<Vec<_>>();
        for (cue, expected) in [
            ("Hello there.", 1),
            ("Hello,|there.", 1),
            ("- Hello there.", 1),
            ("-20 degrees|outside.", 1),
            ("It's a well-known fact -|as they say.", 1),
            ("- Hi.|- Hello.", 2),
            ("Hi.|- Hello.", 2),
            ("<i>- Hi.</i>|<i>- Hello.</i>", 2),
            ("\u{2013} Hi. \u{2013} Hello. \u{2013} Bye.", 3),
            ("- Hi. - Hello.", 2),
            ("SHELDON: Hi.|LEONARD: Hello.", 2),
            ("<v Ada>Hi.|<v Bram>Hello.", 2),
        ] {
            assert_eq!(turns(&rows(cue)), expected, "{cue:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let srt = dir.path().join("d.srt");
        std::fs::write(&srt, "1\n00:00:01,000 --> 00:00:03,000\n- Hi.\n- Hello.\n").unwrap();
        let ass = dir.path().join("d.ass");
        std::fs::write(&ass, "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:01.00,0:00:03.00,Default,,0,0,0,,- Hi.\\N- Hello.\n").unwrap();
        for path in [srt, ass] {
            let cue = &read(&path).unwrap().cues[0];
            assert_eq!(
                (cue.turns, cue.text.as_str()),
                (2, "Hi. - Hello."),
                "{path:?}"
            );
        }
    }

    fn srt(body: &str) -> Subtitles {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.srt");
        std::fs::write(&path, body).unwrap();
        read(&path).unwrap()
    }

    #[test]
    fn bad_cues_are_rejected_with_their_line() {
        let subtitles = srt("1\n00:00:01,000 --> 00:00:02,000\nok\n\n\
             2\n00:00:xx,000 --> 00:00:03,000\nbad\n\n\
             3\n-00:00:01,000 --> 00:00:09,539\nnegative\n\n\
             4\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n\
             5\n00:00:05,000 --> 00:00:05,000\nzero\n\n\
             6\n99:00:00,000 --> 99:00:01,000\nabsurd\n\n\
             7\n00:00:06,000 --> 00:00:07,000\n<i></i>\n\n\
             8\n00:00:08,000 --> 00:00:09,000\n+1:00:00 or 1e3\n");
        let texts: Vec<&str> = subtitles.cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["ok", "+1:00:00 or 1e3"]);
        let rejected: Vec<(usize, &str, &str)> = subtitles
            .rejected
            .iter()
            .map(|b| (b.line, b.reason, b.text.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [
                (6, "bad_time", "bad"),
                (10, "bad_time", "negative"),
                (14, "no_length", "backwards"),
                (18, "no_length", "zero"),
                (22, "bad_time", "absurd"),
                (26, "no_text", ""),
            ]
        );
        assert_eq!(subtitles.rejected[0].detail, "not a time: \"00:00:xx,000\"");
        assert_eq!(
            subtitles.rejected[1].detail,
            "a negative time: \"-00:00:01,000\""
        );
        for bad in ["+00:00:01,000", "00:00:1e3", "00:00:inf", "00:00:NaN"] {
            assert!(timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cue_of_megabytes_is_rejected_whole() {
        let huge = "word ".repeat(2_000_000);
        let subtitles = srt(&format!(
            "1\n00:00:01,000 --> 00:00:02,000\n{huge}\n\n2\n00:00:03,000 --> 00:00:04,000\n{}\n",
            "x".repeat(MAX_TEXT_CHARS + 1)
        ));
        assert!(subtitles.cues.is_empty());
        let reasons: Vec<&str> = subtitles.rejected.iter().map(|b| b.reason).collect();
        assert_eq!(reasons, ["text_too_long", "text_too_long"]);
        assert!(subtitles
            .rejected
            .iter()
            .all(|b| b.text.chars().count() <= SHOWN_CHARS));
    }

    #[test]
    fn utf16_and_latin1_subtitles_are_read() {
        let body = "1\n00:00:01,000 --> 00:00:02,000\nCafé, señor? Größer!\n";
        let utf16le: Vec<u8> = body.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let utf16be: Vec<u8> = body.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let latin1: Vec<u8> = body.chars().map(|c| c as u32 as u8).collect();
        let with_bom = |bom: &[u8], rest: &[u8]| [bom, rest].concat();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, encoding, guessed) in [
            (
                "utf8-bom",
                with_bom(&[0xEF, 0xBB, 0xBF], body.as_bytes()),
                "UTF-8",
                false,
            ),
            (
                "utf16le-bom",
                with_bom(&[0xFF, 0xFE], &utf16le),
                "UTF-16LE",
                false,
            ),
            (
                "utf16be-bom",
                with_bom(&[0xFE, 0xFF], &utf16be),
                "UTF-16BE",
                false,
            ),
            ("utf16le", utf16le.clone(), "UTF-16LE", true),
            ("utf16be", utf16be.clone(), "UTF-16BE", true),
            ("latin1", latin1, "windows-1252", true),
        ] {
            let path = dir.path().join(format!("{name}.srt"));
            std::fs::write(&path, bytes).unwrap();
            let subtitles = read(&path).unwrap();
            assert_eq!(
                (subtitles.encoding, subtitles.guessed),
                (encoding, guessed),
                "{name}"
            );
            let texts: Vec<&str> = subtitles.cues.iter().map(|c| c.text.as_str()).collect();
            assert_eq!(texts, ["Café, señor? Größer!"], "{name}");
        }
    }

    #[test]
    fn random_bytes_and_empty_files_hold_no_cues() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..50_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [("noise.srt", noise), ("empty.srt", Vec::new())] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let subtitles = read(&path).unwrap();
            assert!(subtitles.cues.is_empty(), "{name}");
        }
    }
}
