//! The enrollment file: a few seconds of each character's voice, which build-data compares every
//! subtitle line with.
//!
//! ```yaml
//! series: The Tiny Lab          # optional, written into every manifest line
//! characters:
//!   ada:
//!     - clips/ada-1.wav                          # a whole clip
//!     - {audio: s01e01.mkv, start: 61.2, end: 64.0}   # a span of an episode
//! ```
//! Paths are relative to the enrollment file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audio::error::Segment;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    series: Option<String>,
    characters: BTreeMap<String, Vec<ClipEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ClipEntry {
    Path(String),
    Span {
        audio: String,
        #[serde(default)]
        start: Option<f64>,
        #[serde(default)]
        end: Option<f64>,
    },
}

/// One enrollment clip.
#[derive(Clone, Debug)]
pub struct Clip {
    pub audio: PathBuf,
    pub segment: Segment,
}

pub struct Enrollment {
    pub series: Option<String>,
    /// Character name -> clips, in name order.
    pub characters: Vec<(String, Vec<Clip>)>,
}

/// Reads the enrollment file `path`.
pub fn read(path: &Path) -> Result<Enrollment, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read enrollment file {}: {e}", path.display()))?;
    let file: File = serde_yaml::from_str(&text).map_err(|e| {
        let place = e
            .location()
            .map(|l| format!(":{}", l.line()))
            .unwrap_or_default();
        format!("{}{place}: {e}", path.display())
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut characters = Vec::new();
    for (name, entries) in file.characters {
        if entries.is_empty() {
            return Err(format!(
                "{}: `characters.{name}` lists no clips; give a few seconds of the character's voice",
                path.display()
            ));
        }
        let clips = entries
            .into_iter()
            .map(|entry| match entry {
                ClipEntry::Path(p) => Clip {
                    audio: base.join(p),
                    segment: None,
                },
                ClipEntry::Span { audio, start, end } => Clip {
                    audio: base.join(audio),
                    segment: match (start, end) {
                        (None, None) => None,
                        (start, end) => Some((start.unwrap_or(0.0), end)),
                    },
                },
            })
            .collect();
        characters.push((name, clips));
    }
    if characters.is_empty() {
        return Err(format!("{}: `characters` is empty", path.display()));
    }
    Ok(Enrollment {
        series: file.series,
        characters,
    })
}
