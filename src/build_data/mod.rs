//! `arp-train build-data`: from episodes and their subtitles to a manifest of one show's
//! characters, after the AudioRole paper's pipeline (speaker assignment, dialogue context,
//! acoustic filters).
//!
//! For every subtitle line: cut its span (plus padding) out of the episode, measure its levels
//! and speech, and embed it with a speaker encoder (all cached per episode). Then, from the
//! cache: the filters (silence judged against the episode's own level), the corrections a
//! person made after listening, and the assignment of every line to an enrolled character or to
//! `other` (kept as context, never trained on), learned from the whole show (`assign`). A
//! subtitle line holding two speakers' turns is not embedded: it is context only. Lines closer
//! together than the scene gap form a scene; each line's context is the scene's earlier lines.
//! The manifest references the episode files by `start`/`end`; nothing is copied.

pub mod assign;
pub mod cache;
pub mod corrections;
pub mod enroll;
pub mod episodes;
pub mod filters;
pub mod line;
pub mod listen;
pub mod report;
pub mod report_html;
pub mod scores;
pub mod subtitles;
pub mod yaml_place;

use std::collections::HashSet;
use std::path::PathBuf;

use crate::audio::read::read_mono;
use crate::audio::Audio;
use crate::audio::{compressed, filters as levels};
use crate::speaker::Utterance;
use assign::{Pin, Settings};
use cache::{EpisodeCache, Measured};
use corrections::Verdict;
use episodes::Episode;
use filters::LineFilters;
use line::{BadLine, Line};
use report::Report;

/// The rejection of a subtitle line that holds two or more speakers' turns (kept as context).
pub const SEVERAL_SPEAKERS: &str = "several_speakers";
/// The rejection of a line a person rejected in the corrections file.
pub const CORRECTED: &str = "rejected_by_correction";
/// Samples at or above this are at full scale (for the `clipped` filter).
const CLIP_LEVEL: f64 = 0.999;

pub struct Options {
    pub episodes: Vec<PathBuf>,
    pub enrollment: PathBuf,
    pub out: PathBuf,
    /// Seconds added before and after each subtitle line.
    pub padding: f64,
    pub settings: Settings,
    /// A pause longer than this (seconds) between lines starts a new scene.
    pub scene_gap: f64,
    pub filters: LineFilters,
    /// The corrections file, when one is to be applied.
    pub corrections: Option<PathBuf>,
    /// Who really speaks each line (JSONL `episode`, `line`, `speaker`), to score against.
    pub truth: Option<PathBuf>,
    /// The speaker encoder's name (the cache belongs to one encoder).
    pub encoder: String,
    /// The encoder's typical leave-one-out similarity, for enrollments of one clip each.
    pub typical_similarity: f64,
}

/// Runs the whole build with `embed` (the speaker encoder).
pub fn build(options: &Options, embed: &dyn Fn(&Audio) -> Utterance) -> Result<Report, String> {
    let enrollment = enroll::read(&options.enrollment)?;
    let episodes = episodes::find(&options.episodes)?;
    for episode in &episodes {
        let languages = compressed::audio_track_languages(&episode.media);
        if let Some(note) = episodes::audio_track_note(&episode.media, &languages) {
            tracing::warn!("{note}");
        }
    }
    std::fs::create_dir_all(options.out.join(cache::DIR))
        .map_err(|e| format!("cannot create {}: {e}", options.out.display()))?;
    let voices = enroll::embed(&enrollment, &options.out, &options.encoder, embed)?;

    let bad_cues: Vec<BadLine> = episodes
        .iter()
        .flat_map(|e| {
            e.rejected.iter().map(|cue| BadLine {
                episode: e.media.clone(),
                subtitles: e.subtitles.clone(),
                cue: cue.clone(),
            })
        })
        .collect();
    let total: usize = episodes.iter().map(|e| e.cues.len()).sum();
    let bar = crate::progress::bar(total as u64, "build-data");
    let mut lines = Vec::new();
    let mut measured = Vec::new();
    for episode in &episodes {
        let cached = measure_episode(options, episode, embed, &bar)?;
        let level = filters::speech_level(&cached);
        for (cue, m) in episode.cues.iter().zip(cached) {
            let rejection = if cue.turns > 1 {
                Some((
                    SEVERAL_SPEAKERS.to_string(),
                    format!(
                        "{} speakers' turns in one subtitle (dialogue dashes, or a name per row): \
                         which words are whose voice is unknown",
                        cue.turns
                    ),
                ))
            } else {
                filters::check(&m, level, &options.filters)
            };
            lines.push(Line {
                episode: episode.media.clone(),
                episode_name: episode.name.clone(),
                cue: cue.clone(),
                start: m.start,
                end: m.end,
                rejection,
                assignment: None,
                correction: None,
                scene: 0,
            });
            measured.push(m.embedding);
        }
    }
    bar.finish_and_clear();

    let names: Vec<String> = voices.iter().map(|v| v.name.clone()).collect();
    let pins = apply_corrections(options, &mut lines, &names)?;
    let embeddings: Vec<Option<&[f32]>> = lines
        .iter()
        .zip(&measured)
        .map(|(line, e)| e.as_deref().filter(|_| line.rejection.is_none()))
        .collect();
    let (assignments, calibration) = assign::assign_show(
        &embeddings,
        &voices,
        &pins,
        &options.settings,
        options.typical_similarity,
    );
    for (line, a) in lines.iter_mut().zip(assignments) {
        line.assignment = a;
    }
    line::number_scenes(&mut lines, options.scene_gap);
    let truth = match &options.truth {
        Some(path) => {
            let name = path
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into());
            Some((name, scores::read_truth(path)?))
        }
        None => None,
    };
    let report = Report::new(
        &lines,
        &bad_cues,
        &names,
        calibration,
        &options.filters,
        &options.encoder,
        truth.as_ref().map(|(name, t)| (name.as_str(), t)),
    );
    report::write_manifest(&options.out, &lines, enrollment.series.as_deref())?;
    report.write(&options.out, &lines, &bad_cues)?;
    let chosen = listen::choose(&lines);
    let clips = listen::cut(&options.out, &lines, &chosen);
    report_html::write(&options.out, &report, &lines, &chosen, &clips, &names)?;
    Ok(report)
}

/// The corrections file's verdicts applied: rejected lines get their rejection, the others a
/// pin for the assignment. Parallel to `lines`.
fn apply_corrections(
    options: &Options,
    lines: &mut [Line],
    characters: &[String],
) -> Result<Vec<Option<Pin>>, String> {
    let mut pins = vec![None; lines.len()];
    let Some(path) = &options.corrections else {
        return Ok(pins);
    };
    let ids: HashSet<String> = lines.iter().map(Line::id).collect();
    let corrections = corrections::read(path, &ids, characters)?;
    for (line, pin) in lines.iter_mut().zip(pins.iter_mut()) {
        let Some(verdict) = corrections.get(&line.id()) else {
            continue;
        };
        line.correction = Some(verdict.clone());
        match verdict {
            Verdict::Reject => {
                line.rejection = Some((
                    CORRECTED.to_string(),
                    format!("rejected in {}", path.display()),
                ))
            }
            Verdict::Other => *pin = Some(Pin::Other),
            Verdict::Character(c) => {
                *pin = characters.iter().position(|n| n == c).map(Pin::Character)
            }
        }
    }
    Ok(pins)
}

/// Every cue of `episode` cut, measured and embedded, from the episode's cache where a previous
/// run already did it (the cache is written every few lines, so an interrupted build resumes).
fn measure_episode(
    options: &Options,
    episode: &Episode,
    embed: &dyn Fn(&Audio) -> Utterance,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Measured>, String> {
    let path = cache::path(&options.out, episode);
    let mut cache = EpisodeCache::load(&path, episode, options.padding, &options.encoder);
    let mut out = Vec::with_capacity(episode.cues.len());
    let mut fresh = 0;
    for cue in &episode.cues {
        bar.inc(1);
        if crate::stop::requested().is_some() {
            cache.save(&path)?;
            return Err("stopped: a rerun resumes from the embeddings cached so far".into());
        }
        let start = (cue.start - options.padding).max(0.0);
        let end = cue.end + options.padding;
        if cue.turns > 1 {
            // Never embedded: whose voice it is does not matter.
            out.push(Measured::failed(
                start,
                end,
                SEVERAL_SPEAKERS,
                String::new(),
            ));
            continue;
        }
        if let Some(line) = cache.get(cue) {
            out.push(line.clone());
            continue;
        }
        let line = match read_mono(&episode.media, Some((start, Some(end)))) {
            Err(e) => Measured::failed(start, end, "undecodable", e.to_string()),
            Ok(audio) => measure(audio, start, end, embed),
        };
        cache.put(cue, line.clone());
        out.push(line);
        fresh += 1;
        if fresh % cache::SAVE_EVERY == 0 {
            cache.save(&path)?;
        }
    }
    cache.save(&path)?;
    Ok(out)
}

fn measure(audio: Audio, start: f64, end: f64, embed: &dyn Fn(&Audio) -> Utterance) -> Measured {
    // The span may run past the file's end by the padding: it is read to the end.
    let end = end.min(start + audio.seconds());
    if let Some(at) = audio.samples.iter().position(|x| !x.is_finite()) {
        let detail = format!("sample {at} is {}", audio.samples[at]);
        return Measured::failed(start, end, "non_finite_samples", detail);
    }
    if audio.samples.is_empty() {
        return Measured::failed(start, end, "too_short", "no audio in the span".into());
    }
    let levels = levels::levels(&audio, CLIP_LEVEL);
    let utterance = embed(&audio);
    Measured {
        start,
        end,
        rms_dbfs: levels.rms_dbfs,
        clipped_fraction: levels.clipped_fraction,
        voiced_seconds: utterance.voiced_seconds,
        embedding: Some(utterance.embedding),
        failure: None,
    }
}
