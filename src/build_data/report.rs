//! What build-data writes: the manifest of the characters' lines, and a report a person reads
//! before training on them (hours per character, assignment confidence, rejections, agreement
//! with the subtitles' own speaker names, and the least certain lines to listen to).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::assign::Calibration;
use super::filters::LineFilters;
use super::line::{label, BadLine, Line, OTHER};
use super::scores::{self, Scores, Truth};
use crate::data::manifest::MAX_CONTEXT_TURNS;
use crate::data::speaker_names;

/// The manifest build-data writes under its output directory.
pub const MANIFEST: &str = "manifest.jsonl";

pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";
pub const REJECTED: &str = "rejected.jsonl";
/// Least certain assigned lines listed in the report.
const LOW_CONFIDENCE_SAMPLE: usize = 20;

#[derive(Serialize, Default)]
pub struct Share {
    pub lines: usize,
    pub hours: f64,
}

#[derive(Serialize)]
pub struct Bin {
    pub from: f64,
    pub to: f64,
    pub assigned: usize,
    pub other: usize,
}

#[derive(Serialize, Default)]
pub struct NameAgreement {
    /// Lines whose subtitle names a speaker (and that were not rejected).
    pub named: usize,
    /// The voice was assigned to the named character (or to `other` for a name not enrolled).
    pub agree: usize,
    pub disagree: usize,
}

#[derive(Serialize)]
pub struct Uncertain {
    pub id: String,
    pub episode: String,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub assigned: String,
    pub nearest: String,
    pub similarity: f64,
    pub margin: f64,
    pub confidence: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub episodes: usize,
    pub lines: usize,
    pub speaker_encoder: String,
    pub characters: BTreeMap<String, Share>,
    pub other: Share,
    pub rejected: BTreeMap<String, usize>,
    /// How the thresholds were chosen, and what the assignment rounds found.
    pub calibration: Calibration,
    pub filters: LineFilters,
    pub corrections_applied: usize,
    pub similarity_histogram: Vec<Bin>,
    pub subtitle_names: NameAgreement,
    /// Per character, against the subtitles' speaker names (when some lines carry one).
    pub subtitle_name_scores: Option<Scores>,
    /// Per character, against `--truth`.
    pub truth_scores: Option<Scores>,
    pub low_confidence: Vec<Uncertain>,
}

fn hours(line: &Line) -> f64 {
    (line.cue.end - line.cue.start) / 3600.0
}

impl Report {
    /// The report of `lines` and of the cues rejected before they became lines.
    pub fn new(
        lines: &[Line],
        bad_cues: &[BadLine],
        characters: &[String],
        calibration: Calibration,
        filters: &LineFilters,
        speaker_encoder: &str,
        truth: Option<(&str, &Truth)>,
    ) -> Report {
        let mut report = Report {
            episodes: lines
                .iter()
                .map(|l| &l.episode)
                .chain(bad_cues.iter().map(|b| &b.episode))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            lines: lines.len() + bad_cues.len(),
            speaker_encoder: speaker_encoder.to_string(),
            characters: characters
                .iter()
                .map(|name| (name.clone(), Share::default()))
                .collect(),
            other: Share::default(),
            rejected: BTreeMap::new(),
            calibration,
            filters: *filters,
            corrections_applied: lines.iter().filter(|l| l.correction.is_some()).count(),
            similarity_histogram: (0..20)
                .map(|i| Bin {
                    from: i as f64 * 0.05,
                    to: (i + 1) as f64 * 0.05,
                    assigned: 0,
                    other: 0,
                })
                .collect(),
            subtitle_names: NameAgreement::default(),
            subtitle_name_scores: scores::score(lines, characters, "subtitle names", |l| {
                l.cue.name.clone()
            }),
            truth_scores: truth.and_then(|(name, truth)| {
                scores::score(lines, characters, name, |l| truth.get(&l.id()).cloned())
            }),
            low_confidence: Vec::new(),
        };
        for bad in bad_cues {
            *report.rejected.entry(bad.cue.reason.into()).or_default() += 1;
        }
        let mut uncertain: Vec<&Line> = Vec::new();
        for line in lines {
            if let Some((reason, _)) = &line.rejection {
                *report.rejected.entry(reason.clone()).or_default() += 1;
                continue;
            }
            let Some(a) = &line.assignment else { continue };
            let share = match &a.character {
                Some(c) => report.characters.entry(c.clone()).or_default(),
                None => &mut report.other,
            };
            share.lines += 1;
            share.hours += hours(line);
            let bin = ((a.similarity.clamp(0.0, 0.9999)) / 0.05) as usize;
            match a.character {
                Some(_) => report.similarity_histogram[bin].assigned += 1,
                None => report.similarity_histogram[bin].other += 1,
            }
            if let Some(name) = &line.cue.name {
                let expected = characters
                    .iter()
                    .find(|c| speaker_names::same(c, name))
                    .map_or(OTHER, |c| c.as_str());
                report.subtitle_names.named += 1;
                if expected == label(a) {
                    report.subtitle_names.agree += 1;
                } else {
                    report.subtitle_names.disagree += 1;
                }
            }
            if a.character.is_some() && line.correction.is_none() {
                uncertain.push(line);
            }
        }
        uncertain.sort_by(|a, b| {
            let c = |l: &Line| l.assignment.as_ref().map_or(0.0, |a| a.confidence);
            c(a).total_cmp(&c(b))
        });
        report.low_confidence = uncertain
            .into_iter()
            .take(LOW_CONFIDENCE_SAMPLE)
            .map(|l| {
                let a = l.assignment.as_ref().expect("assigned lines only");
                Uncertain {
                    id: l.id(),
                    episode: l.episode_name.clone(),
                    start: round3(l.start),
                    end: round3(l.end),
                    text: l.cue.text.clone(),
                    assigned: label(a).to_string(),
                    nearest: a.nearest.clone(),
                    similarity: round3(a.similarity),
                    margin: round3(a.margin),
                    confidence: round3(a.confidence),
                }
            })
            .collect();
        report
    }

    /// report.json, report.md and rejected.jsonl under `out` (the cues rejected before they
    /// became lines first, each with its subtitle file's line).
    pub fn write(&self, out: &Path, lines: &[Line], bad_cues: &[BadLine]) -> Result<(), String> {
        let write = |name: &str, bytes: &[u8]| {
            let path = out.join(name);
            crate::atomic::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        write(REPORT_JSON, &json)?;
        write(REPORT_MD, self.markdown().as_bytes())?;
        let mut rejected = Vec::new();
        for bad in bad_cues {
            let subtitles = relative_to(&bad.subtitles, out);
            let row = serde_json::json!({
                "subtitle": format!("{}:{}", subtitles.display(), bad.cue.line),
                "episode": relative_to(&bad.episode, out), "text": bad.cue.text,
                "reason": bad.cue.reason, "detail": bad.cue.detail,
            });
            rejected.extend(serde_json::to_vec(&row).map_err(|e| e.to_string())?);
            rejected.push(b'\n');
        }
        for line in lines {
            if let Some((reason, detail)) = &line.rejection {
                let row = serde_json::json!({
                    "id": line.id(), "episode": relative_to(&line.episode, out), "start": round3(line.start),
                    "end": round3(line.end), "text": line.cue.text, "reason": reason, "detail": detail,
                });
                rejected.extend(serde_json::to_vec(&row).map_err(|e| e.to_string())?);
                rejected.push(b'\n');
            }
        }
        write(REJECTED, &rejected)
    }

    /// The console summary (also the head of report.md).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} subtitle lines in {} episodes",
            self.lines, self.episodes
        );
        for (name, share) in &self.characters {
            let _ = writeln!(
                s,
                "  {name:<12} {:>6} lines {:>8.3} h",
                share.lines, share.hours
            );
        }
        let _ = writeln!(
            s,
            "  {OTHER:<12} {:>6} lines {:>8.3} h (context only, not trained on)",
            self.other.lines, self.other.hours
        );
        let rejected: usize = self.rejected.values().sum();
        let reasons: Vec<String> = self
            .rejected
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let reasons = match reasons.is_empty() {
            true => String::new(),
            false => format!(" ({})", reasons.join(", ")),
        };
        let _ = writeln!(s, "  rejected     {rejected:>6} lines{reasons}");
        let c = &self.calibration;
        let _ = writeln!(
            s,
            "speaker encoder {}; a line is a character's at similarity {:.3} or more, {:.2} ahead of any other voice ({}); {} other voices found",
            self.speaker_encoder,
            c.threshold,
            c.margin,
            c.threshold_source,
            c.competitor_groups.len()
        );
        if self.corrections_applied > 0 {
            let _ = writeln!(s, "corrections applied: {}", self.corrections_applied);
        }
        let n = &self.subtitle_names;
        if n.named > 0 {
            let _ = writeln!(
                s,
                "subtitle speaker names: {} lines named, voice agrees on {} ({:.1}%), disagrees on {}",
                n.named,
                n.agree,
                100.0 * n.agree as f64 / n.named as f64,
                n.disagree
            );
        }
        if let Some(scores) = &self.truth_scores {
            s.push_str(&scores.table());
        }
        s
    }

    fn markdown(&self) -> String {
        let mut s = String::from("# build-data report\n\n```\n");
        s.push_str(&self.summary());
        let c = &self.calibration;
        let _ = writeln!(s, "```\n\n## How lines were assigned\n");
        let _ = writeln!(
            s,
            "Speaker encoder: {}. Each character's voice starts as the centroid of its enrollment clips and grows, round by round, with the lines as alike to it as the clips are to each other (at least {:.3}). Lines that sound like no character and form groups (at least 5 lines alike) are voices of their own. A line goes to a character when that character's voice is its nearest, at similarity {:.3} or more, {:.2} ahead of the runner-up voice; else to `{OTHER}`.\n",
            self.speaker_encoder, c.anchor_level, c.threshold, c.margin
        );
        let _ = writeln!(s, "- threshold: {}", c.threshold_source);
        for (name, sim) in &c.enrollment_similarity {
            let sim = sim.map_or("one clip".to_string(), |v| format!("{v:.3}"));
            let _ = writeln!(s, "- `{name}`: enrollment clips alike at {sim}");
        }
        let _ = writeln!(
            s,
            "- {} rounds; lines joined to the enrollment: {}",
            c.rounds,
            c.anchors
                .iter()
                .map(|(n, k)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "- other voices found: {} (lines: {:?})",
            c.competitor_groups.len(),
            c.competitor_groups
        );
        let f = &self.filters;
        let _ = writeln!(
            s,
            "- filters: {}-{} s, silent under the episode's median line level by {} dB, clipped above {} of samples in flat runs at full scale, at least {} s of speech",
            f.min_seconds, f.max_seconds, f.quiet_db, f.max_clipped_fraction, f.min_voiced_seconds
        );
        for scores in [&self.subtitle_name_scores, &self.truth_scores]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(s, "\n## Precision and recall\n\n```\n{}```", scores.table());
        }
        let _ = writeln!(
            s,
            "\n## Similarity to the nearest character's voice\n\n| similarity | assigned | other |\n|---|---|---|"
        );
        for bin in self
            .similarity_histogram
            .iter()
            .filter(|b| b.assigned + b.other > 0)
        {
            let _ = writeln!(
                s,
                "| {:.2}-{:.2} | {} | {} |",
                bin.from, bin.to, bin.assigned, bin.other
            );
        }
        let _ = writeln!(
            s,
            "\n## Least certain assigned lines (listen to these: {REPORT_HTML})\n\n| id | time | assigned | similarity | margin | text |\n|---|---|---|---|---|---|"
        );
        for u in &self.low_confidence {
            let _ = writeln!(
                s,
                "| {} | {:.2}-{:.2} s | {} | {:.3} | {:.3} | {} |",
                u.id,
                u.start,
                u.end,
                u.assigned,
                u.similarity,
                u.margin,
                u.text.replace('|', "\\|")
            );
        }
        let _ = writeln!(
            s,
            "\nRejected lines, each with its reason: `{REJECTED}`. To correct a line, open `{REPORT_HTML}`, listen, pick the right speaker, and save the corrections it shows as `corrections.yaml` here; rerun the same command."
        );
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The manifest: one line per assigned, unrejected subtitle line, its context the scene's
/// earlier lines (any speaker, `other` included; the newest `MAX_CONTEXT_TURNS` of them).
pub fn write_manifest(out: &Path, lines: &[Line], series: Option<&str>) -> Result<(), String> {
    let mut text = Vec::new();
    let mut scene_start = 0;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && line.scene != lines[i - 1].scene {
            scene_start = i;
        }
        if !line.trained() {
            continue;
        }
        let audio = |l: &Line| relative_to(&l.episode, out).display().to_string();
        let first = scene_start.max(i.saturating_sub(MAX_CONTEXT_TURNS));
        let context: Vec<serde_json::Value> = lines[first..i]
            .iter()
            .map(|l| {
                serde_json::json!({
                    "speaker": l.speaker(), "text": l.cue.text, "audio": audio(l),
                    "start": round3(l.start), "end": round3(l.end),
                })
            })
            .collect();
        let a = line
            .assignment
            .as_ref()
            .expect("trained lines are assigned");
        let mut row = serde_json::json!({
            "id": line.id(),
            "audio": audio(line),
            "start": round3(line.start),
            "end": round3(line.end),
            "text": line.cue.text,
            "speaker": line.speaker(),
            "episode": line.episode_name,
            "context": context,
            "assignment": {"similarity": round3(a.similarity), "margin": round3(a.margin),
                           "confidence": round3(a.confidence),
                           "corrected": line.correction.is_some(),
                           "subtitle_name": line.cue.name},
        });
        if let Some(series) = series {
            row["series"] = serde_json::Value::from(series);
        }
        text.extend(serde_json::to_vec(&row).map_err(|e| e.to_string())?);
        text.push(b'\n');
    }
    let path = out.join(MANIFEST);
    crate::atomic::write(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `path` relative to `base` when the two share a directory below the root (the manifest and
/// the episodes can move together), else absolute.
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (path, base) = (absolute(path), absolute(base));
    let common = path
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common <= 1 {
        return path;
    }
    let mut out = PathBuf::new();
    for _ in base.components().skip(common) {
        out.push("..");
    }
    for c in path.components().skip(common) {
        out.push(c);
    }
    out
}
