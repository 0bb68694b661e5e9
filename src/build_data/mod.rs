//! `arp-train build-data`: from episodes and their subtitles to a manifest of one show's
//! characters, after the AudioRole paper's pipeline (speaker assignment, dialogue context,
//! acoustic filters).
//!
//! For every subtitle line: cut its span (plus padding) out of the episode, check that it holds
//! speech, embed it with the speaker encoder `eval` uses, and assign it to the nearest enrolled
//! character when the similarity clears a threshold and beats the runner-up by a margin, else
//! to `other` (kept as context, never trained on). A subtitle line holding two speakers' turns
//! is not embedded: it is context only. Lines closer together than the scene gap form
//! a scene; each line's context is the scene's earlier lines. The manifest references the
//! episode files by `start`/`end`; nothing is copied.

pub mod assign;
pub mod cache;
pub mod enroll;
pub mod episodes;
pub mod line;
pub mod report;
pub mod subtitles;

use std::path::PathBuf;

use crate::audio::read::read_mono;
use crate::audio::Audio;
use crate::audio::{compressed, filters};
use crate::eval::speaker::{centroid, Utterance};
use crate::recipe::QualityFilters;
use assign::Thresholds;
use cache::{CachedLine, EpisodeCache};
use episodes::Episode;
use line::Line;
use report::Report;

/// The rejection of a subtitle line that holds two or more speakers' turns (kept as context).
pub const SEVERAL_SPEAKERS: &str = "several_speakers";

pub struct Options {
    pub episodes: Vec<PathBuf>,
    pub enrollment: PathBuf,
    pub out: PathBuf,
    /// Seconds added before and after each subtitle line.
    pub padding: f64,
    pub thresholds: Thresholds,
    /// A pause longer than this (seconds) between lines starts a new scene.
    pub scene_gap: f64,
    /// Lines with less speech than this (seconds, after the encoder's voice-activity trim)
    /// are rejected as `no_speech`.
    pub min_voiced_seconds: f64,
    pub filters: QualityFilters,
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

    let mut voices = Vec::new();
    for (name, clips) in &enrollment.characters {
        let mut embeddings = Vec::new();
        for clip in clips {
            let audio = read_mono(&clip.audio, clip.segment)
                .map_err(|e| format!("enrollment clip {}: {e}", clip.audio.display()))?;
            embeddings.push(embed(&audio).embedding);
        }
        let voice = centroid(embeddings.iter().map(Vec::as_slice)).expect("at least one clip");
        voices.push((name.clone(), voice));
    }

    let total: usize = episodes.iter().map(|e| e.cues.len()).sum();
    let bar = crate::progress::bar(total as u64, "build-data");
    let mut lines = Vec::new();
    for episode in &episodes {
        let cached = embed_episode(options, episode, embed, &bar)?;
        for (cue, line) in episode.cues.iter().zip(cached) {
            let assignment = line
                .embedding
                .as_ref()
                .map(|e| assign::assign(e, &voices, &options.thresholds));
            lines.push(Line {
                episode: episode.media.clone(),
                episode_name: episode.name.clone(),
                cue: cue.clone(),
                start: line.start,
                end: line.end,
                rejection: line.rejection,
                assignment,
                scene: 0,
            });
        }
    }
    bar.finish_and_clear();
    line::number_scenes(&mut lines, options.scene_gap);
    let report = Report::new(&lines, &enrollment.characters, &options.thresholds);
    report::write_manifest(&options.out, &lines, enrollment.series.as_deref())?;
    report.write(&options.out, &lines)?;
    Ok(report)
}

/// Every cue of `episode` cut, checked and embedded, from the episode's cache where a previous
/// run already did it (the cache is written every few lines, so an interrupted build resumes).
fn embed_episode(
    options: &Options,
    episode: &Episode,
    embed: &dyn Fn(&Audio) -> Utterance,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<CachedLine>, String> {
    let path = cache::path(&options.out, episode);
    let mut cache = EpisodeCache::load(&path, episode, options.padding);
    let mut out = Vec::with_capacity(episode.cues.len());
    for (i, cue) in episode.cues.iter().enumerate() {
        bar.inc(1);
        if crate::stop::requested().is_some() {
            cache.save(&path)?;
            return Err("stopped: a rerun resumes from the embeddings cached so far".into());
        }
        let start = (cue.start - options.padding).max(0.0);
        let end = cue.end + options.padding;
        if cue.turns > 1 {
            let detail = format!(
                "{} speakers' turns in one subtitle (dialogue dashes, or a name per row): \
                 which words are whose voice is unknown",
                cue.turns
            );
            out.push(CachedLine::rejected(start, end, SEVERAL_SPEAKERS, detail));
            continue;
        }
        if let Some(line) = cache.get(cue) {
            out.push(line.clone());
            continue;
        }
        let line = match read_mono(&episode.media, Some((start, Some(end)))) {
            Err(e) => CachedLine::rejected(start, end, "undecodable", e.to_string()),
            Ok(audio) => check_and_embed(options, cue, audio, start, end, embed),
        };
        cache.put(cue, line.clone());
        out.push(line);
        if i % cache::SAVE_EVERY == cache::SAVE_EVERY - 1 {
            cache.save(&path)?;
        }
    }
    cache.save(&path)?;
    Ok(out)
}

fn check_and_embed(
    options: &Options,
    cue: &subtitles::Cue,
    audio: Audio,
    start: f64,
    end: f64,
    embed: &dyn Fn(&Audio) -> Utterance,
) -> CachedLine {
    // The span may run past the file's end by the padding: it is read to the end.
    let end = end.min(start + audio.seconds());
    if let Err((reason, detail)) = filters::check(&audio, &cue.text, &options.filters) {
        return CachedLine::rejected(start, end, reason.name(), detail);
    }
    let utterance = embed(&audio);
    if utterance.voiced_seconds < options.min_voiced_seconds {
        let detail = format!(
            "{:.2} s of speech after the voice-activity trim (at least {:.2} s)",
            utterance.voiced_seconds, options.min_voiced_seconds
        );
        return CachedLine::rejected(start, end, "no_speech", detail);
    }
    CachedLine {
        start,
        end,
        embedding: Some(utterance.embedding),
        rejection: None,
    }
}
