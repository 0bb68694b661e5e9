//! report.html: the report with audio players, for listening before training and correcting
//! what the voice got wrong. Each offered line has a player (its clip under `listen/`) and a
//! choice of speaker; the page turns the choices into the text of `corrections.yaml`, which a
//! rerun of the same command applies from the cache in seconds. Self-contained: no network,
//! no external script, every text from the subtitles escaped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::corrections::{Verdict, FILE as CORRECTIONS, REJECT};
use super::line::{Line, OTHER};
use super::listen::Section;
use super::report::{Report, REPORT_HTML};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative path as a URL path: every byte outside the unreserved set percent-encoded.
fn url(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:78em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.25em .5em;\
text-align:left;vertical-align:middle}th{background:#f4f4f4}pre{background:#f7f7f7;padding:.75em;white-space:pre-wrap}\
td.text{max-width:30em}audio{height:2em;width:16em}textarea{width:100%;height:10em;font-family:monospace}\
.corrected{background:#fff6d5}";

const SCRIPT: &str = "function collect(){const rows=[];document.querySelectorAll('select[data-id]')\
.forEach(s=>{if(s.value!==''){rows.push(s.dataset.id+': '+s.value);}});\
document.getElementById('corrections').value=(rows.length?'# corrections made in report.html\\n'+rows.join('\\n')+'\\n':'');}\
function copyCorrections(){const t=document.getElementById('corrections');t.select();\
if(navigator.clipboard){navigator.clipboard.writeText(t.value);}else{document.execCommand('copy');}}\
document.addEventListener('change',collect);window.addEventListener('load',collect);";

/// Writes `out/report.html`; `chosen` and `clips` come from `listen`.
pub fn write(
    out: &Path,
    report: &Report,
    lines: &[Line],
    chosen: &[(Section, usize)],
    clips: &[Option<PathBuf>],
    characters: &[String],
) -> Result<(), String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>build-data report</title>\
         <style>{STYLE}</style><script>{SCRIPT}</script></head><body>\n<h1>build-data report</h1>\n\
         <pre>{}</pre>\n",
        escape(&report.summary())
    );
    let c = &report.calibration;
    let _ = writeln!(
        h,
        "<p>Speaker encoder {}. A line is a character's when that character's voice is its nearest, \
         at similarity {:.3} or more ({}), {:.2} ahead of the runner-up voice. Voices grow with the \
         lines as alike to them as their enrollment clips are to each other (at least {:.3}); {} \
         groups of lines that sound like no character were taken as other voices.</p>",
        escape(&report.speaker_encoder),
        c.threshold,
        escape(&c.threshold_source),
        c.margin,
        c.anchor_level,
        c.competitor_groups.len()
    );
    let _ = writeln!(
        h,
        "<h2>Listen and correct</h2>\n<p>Play a line; if the speaker is wrong, pick the right one \
         (<code>{OTHER}</code>: somebody not enrolled, kept as context; <code>{REJECT}</code>: not one \
         person's speech, left out). The choices collect at the bottom of the page: save them as \
         <code>{CORRECTIONS}</code> beside this report (or pass <code>--corrections FILE</code>) and \
         rerun the same command. It applies them from the cache in seconds, and lines corrected to a \
         character join its enrollment.</p>"
    );
    let mut sections: Vec<Section> = chosen.iter().map(|(s, _)| *s).collect();
    sections.sort();
    sections.dedup();
    for section in sections {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<table><tr><th>listen</th><th>line</th><th>time</th><th>text</th>\
             <th>given to</th><th>nearest</th><th>similarity</th><th>lead</th><th>correct to</th></tr>",
            escape(section.title())
        );
        for ((_, i), clip) in chosen.iter().zip(clips).filter(|((s, _), _)| *s == section) {
            row(&mut h, &lines[*i], clip.as_deref(), characters);
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<h2>{CORRECTIONS}</h2>\n<p>Save this text as <code>{CORRECTIONS}</code> beside this report, \
         then rerun. <button onclick=\"copyCorrections()\">copy</button></p>\n\
         <textarea id=\"corrections\" readonly></textarea>\n</body></html>"
    );
    let path = out.join(REPORT_HTML);
    crate::atomic::write(&path, h.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn row(h: &mut String, line: &Line, clip: Option<&Path>, characters: &[String]) {
    let player = match clip {
        Some(clip) => format!(
            "<audio controls preload=\"none\" src=\"{}\"></audio>",
            escape(&url(clip))
        ),
        None => "(could not be cut)".to_string(),
    };
    let a = line.assignment.as_ref();
    let current = match &line.correction {
        Some(Verdict::Character(c)) => c.as_str(),
        Some(Verdict::Other) => OTHER,
        Some(Verdict::Reject) => REJECT,
        None => "",
    };
    let mut select = format!(
        "<select data-id=\"{}\"><option value=\"\">(keep)</option>",
        escape(&line.id())
    );
    for choice in characters.iter().map(String::as_str).chain([OTHER, REJECT]) {
        let selected = if choice == current { " selected" } else { "" };
        let _ = write!(
            select,
            "<option value=\"{0}\"{selected}>{0}</option>",
            escape(choice)
        );
    }
    select.push_str("</select>");
    let class = if line.correction.is_some() {
        " class=\"corrected\""
    } else {
        ""
    };
    let _ = writeln!(
        h,
        "<tr{class}><td>{player}</td><td>{}</td><td>{:.2}-{:.2} s</td><td class=\"text\">{}</td>\
         <td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{select}</td></tr>",
        escape(&line.id()),
        line.start,
        line.end,
        escape(&line.cue.text),
        escape(line.speaker()),
        escape(a.map_or("", |a| a.nearest.as_str())),
        a.map_or(0.0, |a| a.similarity),
        a.map_or(0.0, |a| a.margin),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitle_text_and_paths_cannot_break_out() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url(Path::new("listen/a b#1.wav")), "listen/a%20b%231.wav");
    }
}
