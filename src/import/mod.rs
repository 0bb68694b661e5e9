//! `arp-train import`: manifests from the formats people already have, so a dataset made for
//! another project trains here without hand-written JSONL.
//!
//! - `glm4-voice-sft`: GLM-4-Voice fine-tuning JSONL (`{"id", "turns", "data": [{"user":
//!   {"wav_path"}, "agent": {"wav_path", "text"}}]}`): each agent turn is a line of the
//!   character, the conversation's earlier turns its context;
//! - `ljspeech`: `metadata.csv` (`id|text|normalized text`) with `wavs/<id>.wav`;
//! - `folders`: `<speaker>/<clip>.<audio>` with `<clip>.txt` or `<clip>.lab` beside each clip.

pub mod folders;
pub mod glm4_sft;
pub mod ljspeech;

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(name = "glm4-voice-sft")]
    Glm4VoiceSft,
    Ljspeech,
    Folders,
}

/// One earlier turn of a line's conversation.
#[derive(Serialize, Clone, Debug)]
pub struct Turn {
    pub speaker: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<PathBuf>,
}

/// A manifest line (docs/manifest.md), audio as an absolute or input-relative path until
/// written.
#[derive(Serialize, Clone, Debug)]
pub struct Line {
    pub id: String,
    pub audio: PathBuf,
    pub text: String,
    pub speaker: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<Turn>,
}

/// What an importer found: the lines, and what it skipped with why (`file:line: reason`).
#[derive(Default)]
pub struct Imported {
    pub lines: Vec<Line>,
    pub skipped: Vec<String>,
}

/// Reads `input` in `format`; `speaker` names the character where the format has no speaker.
pub fn import(format: Format, input: &Path, speaker: Option<&str>) -> Result<Imported, String> {
    let named = |what: &str| {
        speaker.map(str::to_string).ok_or_else(|| {
            format!("{what} does not name its speaker: pass --speaker NAME (the character card's `speaker`)")
        })
    };
    match format {
        Format::Glm4VoiceSft => glm4_sft::read(input, &named("GLM-4-Voice SFT data")?),
        Format::Ljspeech => ljspeech::read(input, &named("an LJSpeech metadata.csv")?),
        Format::Folders => folders::read(input),
    }
}

/// The lines of a text file's `bytes`, each with its 1-based number, `\r\n` endings allowed; a
/// line that is not UTF-8 is an `Err` saying where, so that an importer skips that line alone.
fn utf8_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<&str, String>)> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(index, raw)| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|e| {
                format!(
                    "not UTF-8 (byte {} of the line): save the file as UTF-8",
                    e.valid_up_to() + 1
                )
            });
            (index + 1, line)
        })
}

/// The bytes of `path`, or an error naming it.
fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Writes the lines as a manifest at `out`, audio paths relative to its directory when the
/// audio lies beneath it, else absolute.
pub fn write(lines: &[Line], out: &Path) -> Result<(), String> {
    let base = out.parent().unwrap_or(Path::new(""));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let rel = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        p.strip_prefix(&base).map(Path::to_path_buf).unwrap_or(p)
    };
    let mut text = Vec::new();
    for line in lines {
        let mut line = line.clone();
        line.audio = rel(&line.audio);
        for turn in &mut line.context {
            turn.audio = turn.audio.as_deref().map(rel);
        }
        serde_json::to_writer(&mut text, &line).map_err(|e| e.to_string())?;
        text.push(b'\n');
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::atomic::write(out, &text).map_err(|e| format!("cannot write {}: {e}", out.display()))
}
