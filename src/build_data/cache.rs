//! Per-episode cache of what build-data measured of each subtitle line: its span, levels, how
//! much of it is speech, and its speaker embedding. Nothing in it depends on a threshold or a
//! filter setting, so a rerun with other settings, or with corrections, decodes and embeds
//! nothing again. Valid while the media file's size, the subtitle times, the padding and the
//! speaker encoder stay the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::episodes::Episode;
use super::subtitles::Cue;

/// Under the output directory.
pub const DIR: &str = "cache";
/// Lines embedded between two writes of the cache.
pub const SAVE_EVERY: usize = 32;
/// Bumped when what a line's entry means changes; older caches are measured again.
const VERSION: u32 = 2;

/// What decoding and embedding found of one line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measured {
    /// The span read (the subtitle's plus padding, within the file).
    pub start: f64,
    pub end: f64,
    pub rms_dbfs: f64,
    /// Share of samples in flat runs at full scale (`audio::filters::levels`).
    pub clipped_fraction: f64,
    /// Seconds of speech after the voice-activity trim.
    pub voiced_seconds: f64,
    pub embedding: Option<Vec<f32>>,
    /// (reason, detail) when the line could not be measured at all (undecodable, non-finite
    /// samples, nothing decoded): the same whatever the settings.
    pub failure: Option<(String, String)>,
}

impl Measured {
    pub fn failed(start: f64, end: f64, reason: &str, detail: String) -> Measured {
        Measured {
            start,
            end,
            rms_dbfs: -200.0,
            clipped_fraction: 0.0,
            voiced_seconds: 0.0,
            embedding: None,
            failure: Some((reason.to_string(), detail)),
        }
    }

    pub fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

#[derive(Serialize, Deserialize, Default)]
pub struct EpisodeCache {
    version: u32,
    encoder: String,
    media_bytes: u64,
    padding: f64,
    lines: HashMap<String, Measured>,
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
    /// The cache at `path` if it belongs to this episode file, padding and encoder, else an
    /// empty one.
    pub fn load(path: &Path, episode: &Episode, padding: f64, encoder: &str) -> EpisodeCache {
        let media_bytes = std::fs::metadata(&episode.media).map_or(0, |m| m.len());
        let fresh = EpisodeCache {
            version: VERSION,
            encoder: encoder.to_string(),
            media_bytes,
            padding,
            lines: HashMap::new(),
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return fresh;
        };
        match serde_json::from_str::<EpisodeCache>(&text) {
            Ok(cache)
                if cache.version == VERSION
                    && cache.encoder == encoder
                    && cache.media_bytes == media_bytes
                    && cache.padding == padding =>
            {
                cache
            }
            _ => fresh,
        }
    }

    pub fn get(&self, cue: &Cue) -> Option<&Measured> {
        self.lines.get(&key(cue))
    }

    pub fn put(&mut self, cue: &Cue, line: Measured) {
        self.lines.insert(key(cue), line);
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        crate::atomic::write(path, &json)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
