//! The dataset cache that `arp-train prepare` fills and the trainers read (format: docs/cache.md).
//!
//! One safetensors file per audio span ("segment": an utterance's audio, or a context turn's)
//! holds its speech tokens and decoder mel; `index.jsonl` lists the kept utterances with their
//! segments. Every file is written atomically, so a killed `prepare` never leaves a half-written
//! file behind, and a segment whose sources are unchanged is never computed twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

/// Version of the segment file layout; part of every fingerprint.
pub const FORMAT: &str = "arp-train-segment-v2";

/// 128-bit FNV-1a (two 64-bit lanes with different offsets), as hex: stable across runs and
/// platforms, unlike std's hasher.
pub fn stable_hash(parts: &[&[u8]]) -> String {
    let mut lanes = [0xcbf29ce484222325u64, 0x84222325cbf29ce4u64];
    for part in parts {
        for lane in lanes.iter_mut() {
            for &byte in part.iter().chain(b"\x1f") {
                *lane ^= byte as u64;
                *lane = lane.wrapping_mul(0x100000001b3);
            }
        }
    }
    format!("{:016x}{:016x}", lanes[0], lanes[1])
}

/// An audio span: a file, optionally cut to [start, end) seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentSource {
    pub audio: PathBuf,
    pub start: Option<f64>,
    pub end: Option<f64>,
}

impl SegmentSource {
    /// The segment's file name stem in the cache.
    pub fn key(&self) -> String {
        let t = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
        stable_hash(&[
            self.audio.to_string_lossy().as_bytes(),
            t(self.start).as_bytes(),
            t(self.end).as_bytes(),
        ])
    }

    pub fn segment(&self) -> Option<(f64, Option<f64>)> {
        match (self.start, self.end) {
            (None, None) => None,
            (start, end) => Some((start.unwrap_or(0.0), end)),
        }
    }
}

/// What a segment file says about itself (the `arp_train` metadata entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub format: String,
    pub source: SegmentSource,
    /// Changes whenever the audio file, the tokenizer or the provided tokens change.
    pub fingerprint: String,
    pub seconds: f64,
    /// `encoder` or `manifest` (tokens given in the manifest).
    pub tokens_from: String,
    pub speech_tokens: usize,
    pub mel_frames: usize,
}

/// A segment's content.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub meta: SegmentMeta,
    pub speech_tokens: Vec<u32>,
    /// Decoder log-mel, row-major [80, frames].
    pub mel: Vec<f32>,
    pub mel_frames: usize,
    /// The 22.05 kHz waveform the mel was computed from (stored as 16-bit PCM).
    pub audio: Vec<f32>,
    /// YIN F0 per mel frame in Hz, 0 where unvoiced (audio::pitch).
    pub f0: Vec<f32>,
}

pub fn segment_path(cache: &Path, key: &str) -> PathBuf {
    cache
        .join("segments")
        .join(&key[..2])
        .join(format!("{key}.safetensors"))
}

const META_KEY: &str = "arp_train";

/// Writes a segment file atomically.
pub fn write_segment(cache: &Path, segment: &Segment) -> std::io::Result<PathBuf> {
    let tokens: Vec<u8> = segment
        .speech_tokens
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect();
    let mel: Vec<u8> = segment.mel.iter().flat_map(|x| x.to_le_bytes()).collect();
    let audio: Vec<u8> = segment
        .audio
        .iter()
        .flat_map(|x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let f0: Vec<u8> = segment.f0.iter().flat_map(|x| x.to_le_bytes()).collect();
    let invalid = |e: safetensors::SafeTensorError| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    let views = vec![
        (
            "audio",
            TensorView::new(Dtype::I16, vec![segment.audio.len()], &audio).map_err(invalid)?,
        ),
        (
            "f0",
            TensorView::new(Dtype::F32, vec![segment.f0.len()], &f0).map_err(invalid)?,
        ),
        (
            "mel",
            TensorView::new(Dtype::F32, vec![80, segment.mel_frames], &mel).map_err(invalid)?,
        ),
        (
            "speech_tokens",
            TensorView::new(Dtype::U32, vec![segment.speech_tokens.len()], &tokens)
                .map_err(invalid)?,
        ),
    ];
    // One metadata entry only: safetensors writes metadata maps in hash order.
    let meta = HashMap::from([(META_KEY.to_string(), serde_json::to_string(&segment.meta)?)]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(invalid)?;
    let path = segment_path(cache, &segment.meta.source.key());
    crate::atomic::write(&path, &bytes)?;
    Ok(path)
}

/// Reads only a segment's metadata (to decide whether it is up to date).
pub fn read_segment_meta(path: &Path) -> Option<SegmentMeta> {
    let bytes = std::fs::read(path).ok()?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    serde_json::from_str(metadata.metadata().as_ref()?.get(META_KEY)?).ok()
}

/// Reads a whole segment file.
pub fn read_segment(path: &Path) -> Result<Segment, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |m: String| format!("{}: {m}", path.display());
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta: SegmentMeta = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad("not an arp-train segment (no metadata)".into()))
        .and_then(|m| serde_json::from_str(m).map_err(|e| bad(e.to_string())))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let tokens = tensors
        .tensor("speech_tokens")
        .map_err(|e| bad(e.to_string()))?;
    let mel = tensors.tensor("mel").map_err(|e| bad(e.to_string()))?;
    let audio = tensors.tensor("audio").map_err(|e| bad(e.to_string()))?;
    let f0 = tensors.tensor("f0").map_err(|e| bad(e.to_string()))?;
    let floats = |data: &[u8]| -> Vec<f32> {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect()
    };
    Ok(Segment {
        audio: audio
            .data()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes(b.try_into().expect("2 bytes")) as f32 / 32767.0)
            .collect(),
        f0: floats(f0.data()),
        meta,
        speech_tokens: tokens
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        mel_frames: mel.shape()[1],
        mel: mel
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
    })
}

/// A context turn in the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexTurn {
    pub speaker: String,
    pub text: String,
    /// Segment key of the turn's audio; None when it has none (or it could not be decoded).
    pub segment: Option<String>,
}

/// One kept utterance in `index.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: String,
    pub speaker: String,
    pub text: String,
    pub language: Option<String>,
    pub series: Option<String>,
    pub episode: Option<String>,
    pub seconds: f64,
    pub segment: String,
    pub speech_tokens: usize,
    pub mel_frames: usize,
    pub context: Vec<IndexTurn>,
}

/// Reads `index.jsonl` of a prepared cache.
pub fn read_index(cache: &Path) -> Result<Vec<IndexEntry>, String> {
    let path = cache.join("index.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}): run `arp-train prepare` first",
            path.display()
        )
    })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Removes temporary files a killed run left behind (never complete files).
pub fn remove_stale_temporaries(cache: &Path) -> usize {
    let mut removed = 0;
    let mut dirs = vec![cache.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if entry.file_name().to_string_lossy().contains(".tmp-")
                && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}
