//! Per-episode cache of what build-data computed for each subtitle line (its span, embedding or
//! rejection), so a rerun, or one with other thresholds, does not decode and embed again.
//! Valid while the media file's size, the subtitle times and the padding stay the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::episodes::Episode;
use super::subtitles::Cue;

/// Under the output directory.
pub const DIR: &str = "cache";
/// Lines embedded between two writes of the cache.
pub const SAVE_EVERY: usize = 32;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CachedLine {
    /// The span read (the subtitle's plus padding, within the file).
    pub start: f64,
    pub end: f64,
    pub embedding: Option<Vec<f32>>,
    /// (reason, detail) when the line was rejected before assignment.
    pub rejection: Option<(String, String)>,
}

impl CachedLine {
    pub fn rejected(start: f64, end: f64, reason: &str, detail: String) -> CachedLine {
        CachedLine {
            start,
            end,
            embedding: None,
            rejection: Some((reason.to_string(), detail)),
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
pub struct EpisodeCache {
    media_bytes: u64,
    padding: f64,
    lines: HashMap<String, CachedLine>,
}

/// The cache file of `episode` (named after the episode, and after its directory when two
/// episodes share a name).
pub fn path(out: &Path, episode: &Episode) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    episode.media.hash(&mut hasher);
    out.join(DIR).join(format!(
        "{}-{:08x}.json",
        episode.name,
        hasher.finish() as u32
    ))
}

fn key(cue: &Cue) -> String {
    format!("{:.3}-{:.3}", cue.start, cue.end)
}

impl EpisodeCache {
    /// The cache at `path` if it belongs to this episode file and padding, else an empty one.
    pub fn load(path: &Path, episode: &Episode, padding: f64) -> EpisodeCache {
        let media_bytes = std::fs::metadata(&episode.media).map_or(0, |m| m.len());
        let fresh = EpisodeCache {
            media_bytes,
            padding,
            lines: HashMap::new(),
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return fresh;
        };
        match serde_json::from_str::<EpisodeCache>(&text) {
            Ok(cache) if cache.media_bytes == media_bytes && cache.padding == padding => cache,
            _ => fresh,
        }
    }

    pub fn get(&self, cue: &Cue) -> Option<&CachedLine> {
        self.lines.get(&key(cue))
    }

    pub fn put(&mut self, cue: &Cue, line: CachedLine) {
        self.lines.insert(key(cue), line);
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        crate::atomic::write(path, &json)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
