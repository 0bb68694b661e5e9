//! The data scan: decode every utterance, apply the quality filters, and summarize what is kept
//! and what is rejected (by reason, with a JSONL report), per speaker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{self, Utterance};
use crate::audio::error::AudioError;
use crate::audio::filters::{self, Rejection};
use crate::audio::mel::decoder_mel_frames;
use crate::audio::read;
use crate::progress;
use crate::recipe::QualityFilters;

/// An utterance that passed the filters.
#[derive(Clone, Debug)]
pub struct Kept {
    pub utterance: Utterance,
    pub seconds: f64,
    /// Frames of its decoder mel (what stage two's batches are filled with).
    pub decoder_mel_frames: usize,
}

/// One line of the rejection report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RejectionRecord {
    pub manifest: PathBuf,
    pub line: usize,
    pub id: Option<String>,
    pub audio: Option<PathBuf>,
    pub speaker: Option<String>,
    pub reason: &'static str,
    pub detail: String,
}

#[derive(Default, Debug, Clone, PartialEq, Serialize)]
pub struct SpeakerSummary {
    pub kept: usize,
    pub rejected: usize,
    pub seconds: f64,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub kept: Vec<Kept>,
    pub rejected: Vec<RejectionRecord>,
}

impl Scan {
    /// The scan in one line for the console: what was kept and rejected, per reason, and where
    /// each rejection is listed.
    pub fn summary(&self, report: &Path) -> String {
        let reasons: Vec<String> = self
            .rejected_by_reason()
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        let rejected = match reasons.is_empty() {
            true => "0 rejected".to_string(),
            false => format!("{} rejected ({})", self.rejected.len(), reasons.join(", ")),
        };
        format!(
            "data checked: {} kept, {rejected}; every rejection with its reason: {}",
            self.kept.len(),
            report.display()
        )
    }

    pub fn rejected_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for r in &self.rejected {
            *out.entry(r.reason).or_insert(0) += 1;
        }
        out
    }

    pub fn per_speaker(&self) -> BTreeMap<String, SpeakerSummary> {
        let mut out: BTreeMap<String, SpeakerSummary> = BTreeMap::new();
        for k in &self.kept {
            let s = out.entry(k.utterance.speaker.clone()).or_default();
            s.kept += 1;
            s.seconds += k.seconds;
        }
        for r in &self.rejected {
            if let Some(speaker) = &r.speaker {
                out.entry(speaker.clone()).or_default().rejected += 1;
            }
        }
        out
    }

    /// Writes the rejection report (JSONL) atomically: a crash never leaves a half-written one.
    pub fn write_rejections(&self, path: &Path) -> std::io::Result<()> {
        let mut out = Vec::new();
        for r in &self.rejected {
            serde_json::to_writer(&mut out, r)?;
            out.push(b'\n');
        }
        crate::atomic::write(path, &out)
    }
}

fn audio_rejection(e: &AudioError) -> Rejection {
    match e {
        AudioError::Missing => Rejection::MissingFile,
        AudioError::Undecodable(_) | AudioError::Unsupported(_) | AudioError::Unreadable(_) => {
            Rejection::Undecodable
        }
        AudioError::Truncated { .. } | AudioError::OversizeData { .. } => Rejection::Truncated,
        AudioError::BadSegment { .. } => Rejection::BadSegment,
    }
}

/// Where a run (and `prepare`) writes every rejected line and clip with its reason.
pub fn rejections_report(output_dir: &Path) -> PathBuf {
    crate::run_dir::rejections_file(output_dir)
}

/// Reads the manifests and checks every utterance. A bad line or a bad clip is recorded and
/// the scan goes on; only an unreadable manifest is an error.
pub fn scan(manifests: &[PathBuf], filters: &QualityFilters) -> std::io::Result<Scan> {
    let manifest = manifest::read(manifests)?;
    for note in &manifest.spelling_notes {
        tracing::warn!("{note}");
    }
    let mut out = Scan::default();
    for bad in manifest.bad_lines {
        out.rejected.push(RejectionRecord {
            manifest: bad.manifest,
            line: bad.line,
            id: bad.id,
            audio: None,
            speaker: None,
            reason: Rejection::MalformedLine.name(),
            detail: bad.message,
        });
    }
    let bar = progress::bar(manifest.utterances.len() as u64, "checking audio");
    for utterance in manifest.utterances {
        bar.inc(1);
        let verdict = read::read_mono(&utterance.audio, utterance.segment())
            .map_err(|e| (audio_rejection(&e), e.to_string()))
            .and_then(|audio| {
                filters::check(&audio, &utterance.text, filters).map(|_| {
                    let frames = decoder_mel_frames(audio.samples.len(), audio.rate);
                    (audio.seconds(), frames)
                })
            });
        match verdict {
            Ok((seconds, decoder_mel_frames)) => out.kept.push(Kept {
                utterance,
                seconds,
                decoder_mel_frames,
            }),
            Err((reason, detail)) => out.rejected.push(RejectionRecord {
                manifest: utterance.manifest.clone(),
                line: utterance.line,
                id: Some(utterance.id.clone()),
                audio: Some(utterance.audio.clone()),
                speaker: Some(utterance.speaker.clone()),
                reason: reason.name(),
                detail,
            }),
        }
    }
    bar.finish_and_clear();
    Ok(out)
}
