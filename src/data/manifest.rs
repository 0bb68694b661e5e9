//! Data manifests: JSONL, one utterance per line (format: docs/manifest.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::speaker_names::Spellings;

/// One earlier turn of the scene.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ContextTurn {
    pub speaker: String,
    pub text: String,
    #[serde(default)]
    pub audio: Option<String>,
    #[serde(default)]
    pub start: Option<f64>,
    #[serde(default)]
    pub end: Option<f64>,
}

/// A manifest line as written. Unknown extra fields are allowed (AudioRole-style data carries
/// more metadata than arp-train uses).
#[derive(Clone, Debug, Deserialize, PartialEq)]
struct Line {
    id: String,
    audio: String,
    text: String,
    speaker: String,
    #[serde(default)]
    start: Option<f64>,
    #[serde(default)]
    end: Option<f64>,
    #[serde(default)]
    series: Option<String>,
    #[serde(default)]
    episode: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    context: Vec<ContextTurn>,
    /// GLM-4-Voice speech tokens precomputed by the Python tokenizer (optional).
    #[serde(default)]
    speech_tokens: Option<Vec<u32>>,
}

/// One utterance, with its audio path resolved against the manifest's directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Utterance {
    pub manifest: PathBuf,
    /// 1-based line number in the manifest.
    pub line: usize,
    pub id: String,
    pub audio: PathBuf,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub text: String,
    pub speaker: String,
    pub series: Option<String>,
    pub episode: Option<String>,
    pub language: Option<String>,
    pub context: Vec<ContextTurn>,
    pub speech_tokens: Option<Vec<u32>>,
}

impl Utterance {
    /// The segment to decode, if the line names one.
    pub fn segment(&self) -> Option<(f64, Option<f64>)> {
        match (self.start, self.end) {
            (None, None) => None,
            (start, end) => Some((start.unwrap_or(0.0), end)),
        }
    }
}

/// A line that could not be used, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct BadLine {
    pub manifest: PathBuf,
    pub line: usize,
    /// The line's id when it could be read (a duplicate id's rejection carries it).
    pub id: Option<String>,
    pub message: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.manifest.display(),
            self.line,
            self.message
        )
    }
}

#[derive(Default, Debug)]
pub struct Manifest {
    pub utterances: Vec<Utterance>,
    pub bad_lines: Vec<BadLine>,
    /// Where a speaker name was spelled two ways (taken as one speaker, the first spelling).
    pub spelling_notes: Vec<String>,
}

/// The longest manifest line read: a line with a long context and precomputed speech tokens is
/// tens of kilobytes; anything near this is not one spoken line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The longest `text` (of the line or of a context turn), in characters: about twelve minutes
/// of speech, far beyond any sequence stage one trains on.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// The most earlier turns a manifest line carries as its context (build-data's scene, an
/// imported conversation): more than any sequence stage one trains on holds, which drops the
/// oldest turns that do not fit anyway. It keeps a manifest linear in its lines.
pub const MAX_CONTEXT_TURNS: usize = 64;

/// Reads manifests; malformed lines (not UTF-8, bad JSON, missing fields, bad times, absurd
/// lengths, duplicate ids) are collected in `bad_lines` and the rest is kept. Only an
/// unreadable file is an error.
pub fn read(paths: &[PathBuf]) -> std::io::Result<Manifest> {
    let mut out = Manifest::default();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut spellings = Spellings::default();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read manifest {}: {e}", path.display()),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let bad = |message: String| BadLine {
                manifest: path.clone(),
                line,
                id: None,
                message,
            };
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.len() > MAX_LINE_BYTES {
                out.bad_lines.push(bad(format!(
                    "the line is {} bytes, more than one utterance can take (at most {} MiB)",
                    raw.len(),
                    MAX_LINE_BYTES >> 20
                )));
                continue;
            }
            let raw = match std::str::from_utf8(raw) {
                Ok(raw) => raw,
                Err(e) => {
                    out.bad_lines.push(bad(format!(
                        "not valid UTF-8 (byte {} of the line); manifests are UTF-8 JSON lines",
                        e.valid_up_to() + 1
                    )));
                    continue;
                }
            };
            if raw.trim().is_empty() {
                continue;
            }
            let parsed: Line = match serde_json::from_str(raw) {
                Ok(parsed) => parsed,
                Err(e) => {
                    out.bad_lines
                        .push(bad(format!("invalid manifest line: {e}")));
                    continue;
                }
            };
            if let Some(problem) = length_problem(&parsed) {
                out.bad_lines.push(bad(problem));
                continue;
            }
            if let Some(problem) = times_problem(parsed.start, parsed.end) {
                out.bad_lines.push(bad(problem));
                continue;
            }
            if let Some((first_file, first_line)) = seen.get(&parsed.id) {
                out.bad_lines.push(BadLine {
                    id: Some(parsed.id.clone()),
                    ..bad(format!(
                        "duplicate id {:?} (first at {}:{first_line})",
                        parsed.id,
                        first_file.display()
                    ))
                });
                continue;
            }
            seen.insert(parsed.id.clone(), (path.clone(), line));
            let resolve = |p: &str| base.join(p);
            let place = || format!("{}:{line}", path.display());
            let speaker = spellings.canonical(&parsed.speaker, place);
            out.utterances.push(Utterance {
                manifest: path.clone(),
                line,
                audio: resolve(&parsed.audio),
                context: parsed
                    .context
                    .into_iter()
                    .map(|mut turn| {
                        turn.speaker = spellings.canonical(&turn.speaker, place);
                        turn.audio = turn
                            .audio
                            .map(|a| resolve(&a).to_string_lossy().into_owned());
                        turn
                    })
                    .collect(),
                id: parsed.id,
                start: parsed.start,
                end: parsed.end,
                text: parsed.text,
                speaker,
                series: parsed.series,
                episode: parsed.episode,
                language: parsed.language,
                speech_tokens: parsed.speech_tokens,
            });
        }
    }
    out.spelling_notes = spellings.notes;
    Ok(out)
}

fn length_problem(line: &Line) -> Option<String> {
    let chars = line.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Some(format!(
            "`text` is {chars} characters, not one spoken line (at most {MAX_TEXT_CHARS})"
        ));
    }
    line.context.iter().enumerate().find_map(|(i, turn)| {
        let chars = turn.text.chars().count();
        (chars > MAX_TEXT_CHARS).then(|| {
            format!("`context[{i}].text` is {chars} characters, not one spoken line (at most {MAX_TEXT_CHARS})")
        })
    })
}

fn times_problem(start: Option<f64>, end: Option<f64>) -> Option<String> {
    let finite_nonneg = |t: f64| t.is_finite() && t >= 0.0;
    match (start, end) {
        (Some(s), _) if !finite_nonneg(s) => Some(format!(
            "`start` must be a time >= 0 in seconds, found {}",
            crate::audio::error::seconds_text(s)
        )),
        (_, Some(e)) if !finite_nonneg(e) => Some(format!(
            "`end` must be a time >= 0 in seconds, found {}",
            crate::audio::error::seconds_text(e)
        )),
        (Some(s), Some(e)) if e <= s => Some(format!(
            "`end` ({}) must be after `start` ({})",
            crate::audio::error::seconds_text(e),
            crate::audio::error::seconds_text(s)
        )),
        _ => None,
    }
}
