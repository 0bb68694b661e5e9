//! Subtitle files (SRT, WebVTT, ASS/SSA) to timed lines of dialogue, with the speaker's name
//! where the file carries one: an ASS `Name` field, a WebVTT `<v Name>` tag, or a `NAME:`
//! prefix (SDH subtitles). Formatting tags are dropped and wrapped rows joined. A cue that
//! holds two speakers' turns (dialogue dashes, or a name on each row) is counted as such, so
//! that build-data never trains one character on another's words.

use std::path::Path;

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

/// The subtitle extensions read, in order of preference when an episode has several.
pub const EXTENSIONS: [&str; 4] = ["ass", "ssa", "srt", "vtt"];

/// Reads the subtitle file `path` (format from its extension); cues sorted by start.
pub fn read(path: &Path) -> Result<Vec<Cue>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}');
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut cues = match extension.as_str() {
        "ass" | "ssa" => ass(text),
        "vtt" => timed_blocks(text, true),
        _ => timed_blocks(text, false),
    }
    .map_err(|(line, message)| format!("{}:{line}: {message}", path.display()))?;
    cues.retain(|c| !c.text.is_empty() && c.end > c.start);
    cues.sort_by(|a, b| a.start.total_cmp(&b.start));
    for (i, cue) in cues.iter_mut().enumerate() {
        cue.number = i + 1;
    }
    Ok(cues)
}

/// SRT and WebVTT: blocks of an optional id, a `start --> end` line and text rows.
fn timed_blocks(text: &str, vtt: bool) -> Result<Vec<Cue>, (usize, String)> {
    let mut cues = Vec::new();
    let mut current: Option<(f64, f64, Vec<String>)> = None;
    let flush = |current: &mut Option<(f64, f64, Vec<String>)>, cues: &mut Vec<Cue>| {
        if let Some((start, end, rows)) = current.take() {
            let (name, text) = spoken(&rows, vtt);
            cues.push(Cue {
                number: 0,
                start,
                end,
                text,
                name,
                turns: turns(&rows),
            });
        }
    };
    for (index, row) in text.lines().enumerate() {
        let row = row.trim_end_matches('\r');
        if let Some((from, to)) = row.split_once("-->") {
            flush(&mut current, &mut cues);
            let start = timestamp(from.trim())
                .ok_or_else(|| (index + 1, format!("not a time: {:?}", from.trim())))?;
            // WebVTT puts cue settings after the end time.
            let to = to.split_whitespace().next().unwrap_or_default();
            let end = timestamp(to).ok_or_else(|| (index + 1, format!("not a time: {to:?}")))?;
            current = Some((start, end, Vec::new()));
        } else if row.trim().is_empty() {
            flush(&mut current, &mut cues);
        } else if let Some((_, _, rows)) = current.as_mut() {
            rows.push(row.to_string());
        }
    }
    flush(&mut current, &mut cues);
    Ok(cues)
}

/// `HH:MM:SS,mmm`, `HH:MM:SS.mmm`, `MM:SS.mmm` or ASS's `H:MM:SS.cc`, in seconds.
fn timestamp(text: &str) -> Option<f64> {
    let text = text.replace(',', ".");
    let parts: Vec<&str> = text.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m, s] => (
            h.parse::<f64>().ok()?,
            m.parse::<f64>().ok()?,
            s.parse::<f64>().ok()?,
        ),
        [m, s] => (0.0, m.parse::<f64>().ok()?, s.parse::<f64>().ok()?),
        _ => return None,
    };
    let seconds = h * 3600.0 + m * 60.0 + s;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
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
fn ass(text: &str) -> Result<Vec<Cue>, (usize, String)> {
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
        if format.is_empty() {
            return Err((
                index + 1,
                "a Dialogue line before the [Events] Format line".into(),
            ));
        }
        let values: Vec<&str> = fields.splitn(format.len(), ',').collect();
        let field = |name: &str| {
            format
                .iter()
                .position(|f| f == name)
                .and_then(|i| values.get(i))
                .map(|v| v.trim())
        };
        let time = |name: &str| {
            field(name)
                .and_then(timestamp)
                .ok_or_else(|| (index + 1, format!("no valid `{name}` time")))
        };
        let (start, end) = (time("start")?, time("end")?);
        let raw = field("text").unwrap_or_default();
        let rows: Vec<String> = raw
            .replace("\\n", "\\N")
            .split("\\N")
            .map(str::to_string)
            .collect();
        let text = clean(raw);
        let name = field("name").filter(|n| !n.is_empty()).map(str::to_string);
        let (name, text) = match name {
            Some(name) => (Some(name), text),
            None => name_prefix(&text),
        };
        cues.push(Cue {
            number: 0,
            start,
            end,
            text,
            name,
            turns: turns(&rows),
        });
    }
    Ok(cues)
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
            let cues = read(&path).unwrap();
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
            let cue = &read(&path).unwrap()[0];
            assert_eq!(
                (cue.turns, cue.text.as_str()),
                (2, "Hi. - Hello."),
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_bad_time_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.srt");
        std::fs::write(
            &path,
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:xx,000 --> 00:00:03,000\nbad\n",
        )
        .unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            err.ends_with("b.srt:6: not a time: \"00:00:xx,000\""),
            "{err}"
        );
    }
}
