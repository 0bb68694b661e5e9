//! LJSpeech-style `metadata.csv`: `id|transcription|normalized transcription` (the last field
//! optional), audio in `wavs/<id>.wav` beside it. The normalized text is used when present.

use std::path::Path;

use super::{read_bytes, utf8_lines, Imported, Line};

/// `input`: the metadata.csv, or the directory holding it.
pub fn read(input: &Path, speaker: &str) -> Result<Imported, String> {
    let csv = if input.is_dir() {
        input.join("metadata.csv")
    } else {
        input.to_path_buf()
    };
    let bytes = read_bytes(&csv)?;
    let wavs = csv.parent().unwrap_or(Path::new("")).join("wavs");
    let mut out = Imported::default();
    for (number, row) in utf8_lines(&bytes) {
        let place = format!("{}:{number}", csv.display());
        let row = match row {
            Ok(row) => row,
            Err(why) => {
                out.skipped.push(format!("{place}: {why}"));
                continue;
            }
        };
        if row.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split('|').collect();
        if fields.len() > 3 {
            out.skipped.push(format!(
                "{place}: {} fields; rows are `id|text|normalized text` (a `|` inside a text \
                 cannot be told from a field separator)",
                fields.len()
            ));
            continue;
        }
        let text = fields
            .get(2)
            .or(fields.get(1))
            .map(|t| t.trim())
            .unwrap_or_default();
        if fields.len() < 2 || fields[0].trim().is_empty() || text.is_empty() {
            out.skipped
                .push(format!("{place}: expected `id|text|normalized text`"));
            continue;
        }
        let id = fields[0].trim();
        out.lines.push(Line {
            id: id.to_string(),
            audio: wavs.join(format!("{id}.wav")),
            text: text.to_string(),
            speaker: speaker.to_string(),
            context: Vec::new(),
        });
    }
    Ok(out)
}
