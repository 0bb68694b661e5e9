//! The prepare step: speech tokens and decoder mels for every kept utterance and every context
//! turn with audio, into the recipe's dataset cache. Incremental (segments whose
//! audio, tokenizer and settings are unchanged are reused) and safe to kill at any point (every
//! file is written atomically; a rerun finishes the job).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use burn::tensor::backend::Backend;
use serde::Serialize;

use super::Error;
use crate::audio::mel::MelExtractor;
use crate::audio::{read, DECODER_RATE, TOKENIZER_RATE};
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::data::cache::{
    self, IndexEntry, IndexTurn, Segment, SegmentMeta, SegmentSource, FORMAT,
};
use crate::data::scan::{self, Scan};
use crate::models::whisper_vq::SpeechTokenizer;
use crate::progress;
use crate::recipe::Recipe;

/// A segment to have in the cache, and where its tokens come from.
#[derive(Clone, Debug)]
struct Wanted {
    source: SegmentSource,
    /// Tokens given in the manifest (then the encoder is skipped).
    given_tokens: Option<Vec<u32>>,
    fingerprint: String,
}

/// Identity of a file's current content without reading it: size and modification time.
fn file_stamp(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{mtime}", m.len())
        }
        Err(_) => "missing".into(),
    }
}

/// Fingerprint of the tokenizer: its config and the stamps of its weight files.
fn tokenizer_fingerprint(dir: &Path) -> String {
    let config = std::fs::read(dir.join("config.json")).unwrap_or_default();
    let mut weights: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect()
        })
        .unwrap_or_default();
    weights.sort();
    let stamps: Vec<String> = weights
        .iter()
        .map(|p| format!("{}={}", p.display(), file_stamp(p)))
        .collect();
    cache::stable_hash(&[&config, stamps.join(";").as_bytes()])
}

fn wanted_segments(scan: &Scan, tokenizer_fp: &str) -> Vec<Wanted> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut add = |source: SegmentSource, given: Option<Vec<u32>>| {
        let key = source.key();
        match by_key.get_mut(&key) {
            Some(existing) => {
                if existing.given_tokens.is_none() && given.is_some() {
                    existing.given_tokens = given;
                }
            }
            None => {
                order.push(key.clone());
                by_key.insert(
                    key,
                    Wanted {
                        source,
                        given_tokens: given,
                        fingerprint: String::new(),
                    },
                );
            }
        }
    };
    for kept in &scan.kept {
        let u = &kept.utterance;
        add(
            SegmentSource {
                audio: u.audio.clone(),
                start: u.start,
                end: u.end,
            },
            u.speech_tokens.clone(),
        );
        for turn in &u.context {
            if let Some(audio) = &turn.audio {
                add(
                    SegmentSource {
                        audio: PathBuf::from(audio),
                        start: turn.start,
                        end: turn.end,
                    },
                    None,
                );
            }
        }
    }
    order
        .into_iter()
        .map(|key| {
            let mut w = by_key.remove(&key).expect("every key was inserted");
            let tokens_part = match &w.given_tokens {
                Some(tokens) => format!("manifest:{tokens:?}"),
                None => format!("encoder:{tokenizer_fp}"),
            };
            w.fingerprint = cache::stable_hash(&[
                FORMAT.as_bytes(),
                w.source.audio.to_string_lossy().as_bytes(),
                file_stamp(&w.source.audio).as_bytes(),
                format!("{:?}-{:?}", w.source.start, w.source.end).as_bytes(),
                tokens_part.as_bytes(),
            ]);
            w
        })
        .collect()
}

/// Computes and writes segments; runs on the recipe's device.
struct Compute<'a> {
    cache_dir: &'a Path,
    tokenizer_dir: Option<&'a Path>,
    todo: Vec<Wanted>,
}

#[derive(Default)]
struct Computed {
    written: usize,
    /// Segments whose audio could not be decoded: key -> reason.
    failed: BTreeMap<String, String>,
}

const CHUNK: usize = 16;

impl BackendTask for Compute<'_> {
    type Output = Result<Computed, String>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let needs_encoder = self.todo.iter().any(|w| w.given_tokens.is_none());
        let tokenizer = match (needs_encoder, self.tokenizer_dir) {
            (true, Some(dir)) => Some(SpeechTokenizer::<B>::load(dir, &device)?),
            (true, None) => {
                return Err("no speech tokenizer configured (data.speech_tokenizer)".into())
            }
            (false, _) => None,
        };
        let mel = MelExtractor::decoder();
        let mut out = Computed::default();
        let bar = progress::bar(self.todo.len() as u64, "preparing");
        for (index, chunk) in self.todo.chunks(CHUNK).enumerate() {
            if let Some(signal) = crate::stop::requested() {
                bar.finish_and_clear();
                return Err(format!(
                    "prepare stopped by {} after {} of {} clips; those are cached in {}, and rerunning the same command continues with the rest",
                    crate::stop::signal_name(signal),
                    index * CHUNK,
                    self.todo.len(),
                    self.cache_dir.display()
                ));
            }
            let mut decoded = Vec::new();
            for w in chunk {
                match read::read_mono(&w.source.audio, w.source.segment()) {
                    Ok(audio) => decoded.push((w, audio)),
                    Err(e) => {
                        out.failed.insert(w.source.key(), e.to_string());
                        bar.inc(1);
                    }
                }
            }
            let at16: Vec<Vec<f32>> = decoded
                .iter()
                .map(|(_, a)| a.at_rate(TOKENIZER_RATE).samples)
                .collect();
            let need: Vec<&[f32]> = decoded
                .iter()
                .zip(&at16)
                .filter(|((w, _), _)| w.given_tokens.is_none())
                .map(|(_, s)| s.as_slice())
                .collect();
            let mut encoded = match &tokenizer {
                Some(t) if !need.is_empty() => t.tokenize(&need).into_iter(),
                _ => Vec::new().into_iter(),
            };
            for (w, audio) in &decoded {
                let (tokens, from) = match &w.given_tokens {
                    Some(tokens) => (tokens.clone(), "manifest"),
                    None => (
                        encoded.next().expect("one token list per encoded segment"),
                        "encoder",
                    ),
                };
                let at22 = audio.at_rate(DECODER_RATE).samples;
                let spec = mel.decoder_log_mel(&at22);
                let f0 = crate::audio::pitch::yin(&at22, DECODER_RATE, spec.frames);
                let segment = Segment {
                    meta: SegmentMeta {
                        format: FORMAT.into(),
                        source: w.source.clone(),
                        fingerprint: w.fingerprint.clone(),
                        seconds: audio.seconds(),
                        tokens_from: from.into(),
                        speech_tokens: tokens.len(),
                        mel_frames: spec.frames,
                    },
                    speech_tokens: tokens,
                    mel: spec.data,
                    mel_frames: spec.frames,
                    audio: at22,
                    f0,
                };
                cache::write_segment(self.cache_dir, &segment).map_err(|e| {
                    format!(
                        "cannot write to the cache {}: {e}",
                        self.cache_dir.display()
                    )
                })?;
                out.written += 1;
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// The summary written to `report.json` (only facts about the data, so an interrupted and an
/// uninterrupted run write the same file).
#[derive(Serialize)]
struct Report {
    utterances: usize,
    hours: f64,
    rejected: BTreeMap<&'static str, usize>,
    per_speaker: BTreeMap<String, scan::SpeakerSummary>,
    segments: usize,
    context_turns_without_usable_audio: usize,
}

/// Fills the recipe's dataset cache on `device` (already resolved) from the data scan of its
/// manifests; the prepare command and the main pipeline both run this.
pub fn prepare_recipe(recipe: &Recipe, scan: &Scan, device: DeviceSpec) -> Result<(), Error> {
    let started = Instant::now();
    let cache_dir = recipe.data.cache_dir.clone();
    let stale = cache::remove_stale_temporaries(&cache_dir);
    if stale > 0 {
        tracing::info!(stale, "removed temporary files of an interrupted run");
    }
    let tokenizer_dir = recipe.data.speech_tokenizer.as_deref();
    let tokenizer_fp = tokenizer_dir.map(tokenizer_fingerprint).unwrap_or_default();
    let wanted = wanted_segments(scan, &tokenizer_fp);
    let (reused, todo): (Vec<&Wanted>, Vec<&Wanted>) = wanted.iter().partition(|w| {
        cache::read_segment_meta(&cache::segment_path(&cache_dir, &w.source.key()))
            .is_some_and(|m| m.fingerprint == w.fingerprint && m.format == FORMAT)
    });
    tracing::info!(segments = wanted.len(), reused = reused.len(), to_compute = todo.len(), %device, "preparing the dataset cache");
    let task = Compute {
        cache_dir: &cache_dir,
        tokenizer_dir,
        todo: todo.into_iter().cloned().collect(),
    };
    let computed = match backend::run_on(device, Dtype::Fp32, task) {
        Ok(Ok(computed)) => computed,
        Ok(Err(e)) => return Err(Error::Failed(e)),
        Err(e) => return Err(Error::Refused(e.to_string())),
    };

    // The index: every kept utterance whose own audio is in the cache.
    let mut index = Vec::new();
    let mut rejected = scan.rejected.clone();
    let mut turns_without_audio = 0;
    for kept in &scan.kept {
        let u = &kept.utterance;
        let key = SegmentSource {
            audio: u.audio.clone(),
            start: u.start,
            end: u.end,
        }
        .key();
        let Some(meta) = cache::read_segment_meta(&cache::segment_path(&cache_dir, &key)) else {
            let detail = computed
                .failed
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "segment missing from the cache".into());
            rejected.push(scan::RejectionRecord {
                manifest: u.manifest.clone(),
                line: u.line,
                id: Some(u.id.clone()),
                audio: Some(u.audio.clone()),
                speaker: Some(u.speaker.clone()),
                reason: "undecodable",
                detail,
            });
            continue;
        };
        let context = u
            .context
            .iter()
            .map(|turn| {
                let segment = turn.audio.as_ref().map(|a| {
                    SegmentSource {
                        audio: PathBuf::from(a),
                        start: turn.start,
                        end: turn.end,
                    }
                    .key()
                });
                let segment = segment.filter(|k| !computed.failed.contains_key(k));
                if turn.audio.is_some() && segment.is_none() {
                    turns_without_audio += 1;
                }
                IndexTurn {
                    speaker: turn.speaker.clone(),
                    text: turn.text.clone(),
                    segment,
                }
            })
            .collect();
        index.push(IndexEntry {
            id: u.id.clone(),
            speaker: u.speaker.clone(),
            text: u.text.clone(),
            language: u.language.clone(),
            series: u.series.clone(),
            episode: u.episode.clone(),
            seconds: meta.seconds,
            segment: key,
            speech_tokens: meta.speech_tokens,
            mel_frames: meta.mel_frames,
            context,
        });
    }
    let final_scan = Scan {
        kept: Vec::new(),
        rejected,
    };
    let mut per_speaker = scan.per_speaker();
    for (speaker, summary) in per_speaker.iter_mut() {
        let entries: Vec<&IndexEntry> = index.iter().filter(|e| &e.speaker == speaker).collect();
        summary.kept = entries.len();
        summary.seconds = entries.iter().map(|e| e.seconds).sum();
        summary.rejected = final_scan
            .rejected
            .iter()
            .filter(|r| r.speaker.as_deref() == Some(speaker))
            .count();
    }
    let report = Report {
        utterances: index.len(),
        hours: index.iter().map(|e| e.seconds).sum::<f64>() / 3600.0,
        rejected: final_scan.rejected_by_reason(),
        per_speaker,
        segments: wanted.len(),
        context_turns_without_usable_audio: turns_without_audio,
    };
    let mut lines = Vec::new();
    for entry in &index {
        lines.extend(serde_json::to_vec(entry).expect("index entries serialize"));
        lines.push(b'\n');
    }
    let written = crate::atomic::write(&cache_dir.join("index.jsonl"), &lines)
        .and_then(|_| final_scan.write_rejections(&cache_dir.join("rejections.jsonl")))
        .and_then(|_| {
            let json = serde_json::to_vec_pretty(&report).expect("report serializes");
            crate::atomic::write(&cache_dir.join("report.json"), &json)
        });
    if let Err(e) = written {
        return Err(Error::Failed(format!(
            "cannot write to the cache {}: {e}",
            cache_dir.display()
        )));
    }

    println!(
        "prepared {} utterances ({:.4} h) into {}: {} segments ({} computed, {} reused, {} undecodable) in {:.1} s",
        report.utterances,
        report.hours,
        cache_dir.display(),
        report.segments,
        computed.written,
        reused.len(),
        computed.failed.len(),
        started.elapsed().as_secs_f64()
    );
    for (reason, count) in &report.rejected {
        println!("  rejected {reason}: {count}");
    }
    if report.context_turns_without_usable_audio > 0 {
        println!(
            "  context turns whose audio could not be decoded (kept as text): {}",
            report.context_turns_without_usable_audio
        );
    }
    println!("  report: {}", cache_dir.join("report.json").display());
    Ok(())
}
