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

use super::yaml_place;
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

#[derive(Debug)]
pub struct Enrollment {
    pub series: Option<String>,
    /// Character name -> clips, in name order.
    pub characters: Vec<(String, Vec<Clip>)>,
}

/// Reads the enrollment file `path`.
pub fn read(path: &Path) -> Result<Enrollment, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read enrollment file {}: {e}", path.display()))?;
    let file: File = serde_yaml::from_str(&text).map_err(|e| yaml_place::syntax_error(path, &e))?;
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
    check_names(path, &text, &characters)?;
    Ok(Enrollment {
        series: file.series,
        characters,
    })
}

/// Refuses names a manifest could not keep apart: two that differ only in case (manifests and
/// recipes match speakers without regard to case, so their lines would train one voice), and
/// build-data's own labels `other` and `reject`.
fn check_names(path: &Path, text: &str, characters: &[(String, Vec<Clip>)]) -> Result<(), String> {
    use super::corrections::REJECT;
    use crate::data::speaker_names::same;
    let at = |name: &str| {
        let line = yaml_place::key_line(text, path, Some("characters"), name);
        format!("{}{line}", path.display())
    };
    for (i, (name, _)) in characters.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(format!("{}: a character has an empty name", path.display()));
        }
        if same(name, super::assign::OTHER) || same(name, REJECT) {
            return Err(format!(
                "{}: `characters.{name}`: `{}` and `{REJECT}` are build-data's labels for lines of no enrolled character; give the character another name",
                at(name),
                super::assign::OTHER
            ));
        }
        if let Some((earlier, _)) = characters[..i].iter().find(|(other, _)| same(other, name)) {
            return Err(format!(
                "{}: `characters.{name}` and `characters.{earlier}` differ only in case, and speakers are matched without regard to case: one voice would get both characters' lines; rename one",
                at(name)
            ));
        }
    }
    Ok(())
}

/// Under the cache directory: the enrollment clips' embeddings.
const CACHE: &str = "enrollment.json";

#[derive(serde::Serialize, Deserialize, Default)]
struct EmbeddingCache {
    encoder: String,
    /// "path|start|end|bytes|modified" -> embedding.
    clips: BTreeMap<String, Vec<f32>>,
}

fn clip_key(clip: &Clip) -> String {
    let meta = std::fs::metadata(&clip.audio).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}|{:?}|{}|{modified}",
        clip.audio.display(),
        clip.segment,
        meta.map_or(0, |m| m.len())
    )
}

/// Each character's enrollment clips embedded with `embed` (cached under `out`'s cache
/// directory for `encoder`, so a rerun decodes nothing).
pub fn embed(
    enrollment: &Enrollment,
    out: &Path,
    encoder: &str,
    embed: &dyn Fn(&crate::audio::Audio) -> crate::speaker::Utterance,
) -> Result<Vec<crate::build_data::assign::Voice>, String> {
    let path = out.join(super::cache::DIR).join(CACHE);
    let mut cache: EmbeddingCache = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|c: &EmbeddingCache| c.encoder == encoder)
        .unwrap_or_else(|| EmbeddingCache {
            encoder: encoder.to_string(),
            clips: BTreeMap::new(),
        });
    let mut voices = Vec::new();
    for (name, clips) in &enrollment.characters {
        let mut embeddings = Vec::new();
        for clip in clips {
            let key = clip_key(clip);
            if let Some(e) = cache.clips.get(&key) {
                embeddings.push(e.clone());
                continue;
            }
            let audio = crate::audio::read::read_mono(&clip.audio, clip.segment)
                .map_err(|e| format!("enrollment clip {}: {e}", clip.audio.display()))?;
            let e = embed(&audio).embedding;
            cache.clips.insert(key, e.clone());
            embeddings.push(e);
        }
        voices.push(crate::build_data::assign::Voice {
            name: name.clone(),
            clips: embeddings,
        });
    }
    let json = serde_json::to_vec(&cache).map_err(|e| e.to_string())?;
    crate::atomic::write(&path, &json)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(voices)
}

#[cfg(test)]
mod tests {
    fn read(yaml: &str) -> Result<super::Enrollment, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enroll.yaml");
        std::fs::write(&path, yaml).unwrap();
        super::read(&path).map_err(|e| e.replace(&dir.path().display().to_string(), "DIR"))
    }

    #[test]
    fn names_that_would_merge_or_that_build_data_uses_are_refused() {
        let err = read("characters:\n  ada: [a.wav]\n  ADA: [b.wav]\n").unwrap_err();
        assert!(err.starts_with("DIR/enroll.yaml:"), "{err}");
        assert!(err.contains("differ only in case"), "{err}");
        for label in ["other", "Other", "reject"] {
            let err = read(&format!(
                "characters:\n  ada: [a.wav]\n  {label}: [b.wav]\n"
            ))
            .unwrap_err();
            assert!(err.starts_with("DIR/enroll.yaml:3: "), "{err}");
            assert!(err.contains("build-data's labels"), "{err}");
        }
        let err = read("characters:\n  '': [a.wav]\n").unwrap_err();
        assert!(err.contains("empty name"), "{err}");
        let ok = read("characters:\n  ada: [a.wav]\n  bram: [b.wav]\n").unwrap();
        assert_eq!(ok.characters.len(), 2);
    }
}
