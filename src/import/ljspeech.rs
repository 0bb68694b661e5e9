//! LJSpeech-style `metadata.csv`: `id|transcription|normalized transcription` (the last field
//! optional), audio in `wavs/<id>.wav` beside it. The normalized text is used when present.

use std::path::Path;

use super::{Imported, Line};

/// `input`: the metadata.csv, or the directory holding it.
pub fn read(input: &Path, speaker: &str) -> Result<Imported, String> {
    let csv = if input.is_dir() {
        input.join("metadata.csv")
    } else {
        input.to_path_buf()
    };
    let text =
        std::fs::read_to_string(&csv).map_err(|e| format!("cannot read {}: {e}", csv.display()))?;
    let wavs = csv.parent().unwrap_or(Path::new("")).join("wavs");
    let mut out = Imported::default();
    for (index, row) in text.lines().enumerate() {
        let row = row.trim_end_matches('\r');
        if row.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split('|').collect();
        let text = fields
            .get(2)
            .or(fields.get(1))
            .map(|t| t.trim())
            .unwrap_or_default();
        if fields.len() < 2 || fields[0].trim().is_empty() || text.is_empty() {
            out.skipped.push(format!(
                "{}:{}: expected `id|text|normalized text`",
                csv.display(),
                index + 1
            ));
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
