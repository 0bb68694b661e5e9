//! Where each stage of a run directory stands for a recipe, without touching anything: what a
//! run would skip (done, frozen), resume, or start. The dry run prints it; the pipeline acts on it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::plan::Plan;
use crate::recipe::{Recipe, Stage};
use crate::report::StageRecord;
use crate::run_dir;
use crate::train::checkpoints::Checkpoints;
use crate::train::resume::{differences, finished_identity, ResumeSection};

/// The recipe settings stage one's result depends on (kept in its `done.json`).
pub fn lm_identity(recipe: &Recipe) -> BTreeMap<String, String> {
    finished_identity(recipe, ResumeSection::Lm)
}

/// The recipe settings stage two's result depends on: both parts'.
pub fn decoder_identity(recipe: &Recipe) -> BTreeMap<String, String> {
    let mut identity = finished_identity(recipe, ResumeSection::Flow);
    identity.extend(finished_identity(recipe, ResumeSection::Hift));
    identity
}

#[derive(Debug, Clone)]
pub enum State {
    /// Not trained by this recipe: the given model is kept (what is kept).
    Frozen(String),
    /// Finished with these settings: skipped.
    Done(StageRecord),
    /// Interrupted: continues from its checkpoints (how far it got).
    Resumes(String),
    /// Not started (what it will do).
    Fresh(String),
    /// Finished or started with other model/data settings: the run refuses to touch it.
    Conflict(String),
}

impl State {
    pub fn describe(&self) -> String {
        match self {
            State::Frozen(kept) => format!("frozen: {kept} is kept"),
            State::Done(record) => {
                let steps: Vec<String> = record
                    .curves
                    .iter()
                    .map(|(part, c)| format!("{part} {} steps", c.steps))
                    .collect();
                format!("done ({}): skipped", steps.join(", "))
            }
            State::Resumes(how) => format!("resumes: {how}"),
            State::Fresh(what) => format!("runs: {what}"),
            State::Conflict(why) => format!("REFUSED: {why}"),
        }
    }

    pub fn needs_training(&self) -> bool {
        matches!(self, State::Resumes(_) | State::Fresh(_))
    }
}

pub fn lm_dir(recipe: &Recipe) -> std::path::PathBuf {
    run_dir::lm_dir(&recipe.output_dir)
}

pub fn decoder_dir(recipe: &Recipe) -> std::path::PathBuf {
    run_dir::decoder_dir(&recipe.output_dir)
}

fn planned_steps(plan: &Plan, part: &str) -> usize {
    plan.stages
        .iter()
        .find(|s| s.part == part)
        .map_or(0, |s| s.steps)
}

/// What a stage directory's `done.json` means for the recipe.
enum Finished {
    /// No record, or its outputs were removed: the stage runs (or reruns its export).
    No,
    /// Finished with these settings.
    Done(StageRecord),
    /// Finished with other optimizer, schedule or length settings, and `--continue-finished`
    /// lets it continue from its last checkpoint: the differences.
    Continues(Vec<String>),
}

/// The settings a finished stage may continue with under `--continue-finished`: a stage
/// section's optimizer, schedule and length (which must not shrink).
fn continuable(key: &str, then: Option<&String>, now: Option<&String>) -> bool {
    let setting = ["lm.", "decoder.flow.", "decoder.hift."]
        .iter()
        .find_map(|prefix| key.strip_prefix(prefix));
    let Some(setting) = setting else {
        return false;
    };
    let head = setting.split('.').next().unwrap_or_default();
    match head {
        "optimizer" | "schedule" => true,
        "steps" | "epochs" => {
            let number = |v: Option<&String>| v.and_then(|v| v.parse::<f64>().ok());
            match (number(then), number(now)) {
                (Some(then), Some(now)) => now >= then,
                _ => true,
            }
        }
        _ => false,
    }
}

/// The settings a finished record holds, as they count now.
fn saved_identity(record: &StageRecord) -> BTreeMap<String, String> {
    // Records of earlier builds also name the cache's location, which no longer counts.
    let mut saved = record.identity.clone();
    saved.remove("data.cache_dir");
    saved
}

/// The `differences` lines between a finished record and the recipe (empty: same settings).
fn changed_settings(
    saved: &BTreeMap<String, String>,
    identity: &BTreeMap<String, String>,
) -> Vec<String> {
    differences(saved, identity, "finished with")
}

/// Where a stage's finished record leaves it for this recipe; Err: refused, with why.
fn finished(
    stage_dir: &Path,
    identity: BTreeMap<String, String>,
    label: &str,
    continue_finished: bool,
) -> Result<Finished, String> {
    let Some(record) = StageRecord::read(stage_dir)? else {
        return Ok(Finished::No);
    };
    let saved = saved_identity(&record);
    let diffs = changed_settings(&saved, &identity);
    if !diffs.is_empty() {
        let all_continuable = saved
            .keys()
            .chain(identity.keys())
            .filter(|k| saved.get(*k) != identity.get(*k))
            .all(|k| continuable(k, saved.get(k), identity.get(k)));
        if all_continuable && continue_finished {
            return Ok(Finished::Continues(diffs));
        }
        let hint = if all_continuable {
            "(only the optimizer, schedule or length changed: `--continue-finished` continues \
             the stage from its last checkpoint with them; a different recipe needs its own \
             output directory: `--output DIR`, or `output_dir` in the recipe; nothing was changed)"
        } else {
            "(a different recipe or data set needs its own output directory: `--output DIR`, or \
             `output_dir` in the recipe; nothing was changed)"
        };
        return Err(format!(
            "{label} in {} finished with other model or data settings:\n{}\n{hint}",
            stage_dir.display(),
            diffs.join("\n")
        ));
    }
    if !record.missing_outputs(stage_dir).is_empty() {
        // Outputs removed by hand: the stage reruns its export from the final checkpoint.
        return Ok(Finished::No);
    }
    Ok(Finished::Done(record))
}

/// The continuations a stage's new record carries: the previous record's, plus this run's
/// changed settings when it continued a stage finished with others (`--continue-finished`).
pub fn continuations(stage_dir: &Path, identity: &BTreeMap<String, String>) -> Vec<String> {
    let Ok(Some(previous)) = StageRecord::read(stage_dir) else {
        return Vec::new();
    };
    let mut out = previous.continued.clone();
    let diffs = changed_settings(&saved_identity(&previous), identity);
    if !diffs.is_empty() {
        let steps: Vec<String> = previous
            .curves
            .iter()
            .map(|(part, c)| format!("{part} {}", c.steps))
            .collect();
        out.push(format!(
            "continued after {} steps with:\n{}",
            steps.join(", "),
            diffs.join("\n")
        ));
    }
    out
}

/// The training parts a run steps through (`lm`, `decoder`: whether each stage trains), for the whole-run line: (plan part,
/// planned steps, steps its checkpoints already hold).
pub fn parts_to_train(
    recipe: &Recipe,
    plan: &Plan,
    lm: bool,
    decoder: bool,
) -> Vec<(&'static str, usize, usize)> {
    let mut parts = Vec::new();
    let mut add = |part: &'static str, dir: std::path::PathBuf| {
        let total = planned_steps(plan, part);
        parts.push((part, total, part_progress(&dir, total).unwrap_or(0)));
    };
    if lm {
        add("lm", lm_dir(recipe));
    }
    if decoder {
        add(run_dir::FLOW, decoder_dir(recipe).join(run_dir::FLOW));
        add(run_dir::HIFT, decoder_dir(recipe).join(run_dir::HIFT));
    }
    parts
}

fn part_progress(dir: &Path, total: usize) -> Option<usize> {
    Checkpoints::peek(dir)
        .latest()
        .map(|(step, _)| step.min(total))
}

/// `continue_finished`: `--continue-finished` was given.
pub fn lm_state(recipe: &Recipe, plan: &Plan, continue_finished: bool) -> State {
    if recipe.freeze.contains(&Stage::Lm) {
        let base = recipe.lm.base_model.as_deref().unwrap_or(Path::new("-"));
        return State::Frozen(format!("the base model {}", base.display()));
    }
    let dir = lm_dir(recipe);
    let total = planned_steps(plan, "lm");
    match finished(
        &dir,
        lm_identity(recipe),
        "stage one (lm)",
        continue_finished,
    ) {
        Err(why) => return State::Conflict(why),
        Ok(Finished::Done(record)) => return State::Done(record),
        Ok(Finished::Continues(diffs)) => {
            return State::Resumes(format!(
                "continues the finished stage to {total} steps with (--continue-finished):\n{}",
                diffs.join("\n")
            ))
        }
        Ok(Finished::No) => {}
    }
    match part_progress(&dir, total) {
        Some(step) if step >= total => State::Resumes(format!(
            "all {total} steps trained; exports the adapter and merged model"
        )),
        Some(step) => State::Resumes(format!("from step {step} of {total}")),
        None => State::Fresh(format!("{total} steps")),
    }
}

/// `continue_finished`: `--continue-finished` was given.
pub fn decoder_state(recipe: &Recipe, plan: &Plan, continue_finished: bool) -> State {
    if recipe.freeze.contains(&Stage::Decoder) {
        let init = recipe.decoder.init.as_deref().unwrap_or(Path::new("-"));
        return State::Frozen(format!("the decoder {}", init.display()));
    }
    let dir = decoder_dir(recipe);
    match finished(
        &dir,
        decoder_identity(recipe),
        "stage two (decoder)",
        continue_finished,
    ) {
        Err(why) => return State::Conflict(why),
        Ok(Finished::Done(record)) => return State::Done(record),
        Ok(Finished::Continues(diffs)) => {
            return State::Resumes(format!(
                "continues the finished stage (flow {} steps, vocoder {}) with (--continue-finished):\n{}",
                planned_steps(plan, run_dir::FLOW),
                planned_steps(plan, run_dir::HIFT),
                diffs.join("\n")
            ))
        }
        Ok(Finished::No) => {}
    }
    let mut started = false;
    let parts: Vec<String> = [(run_dir::FLOW, "flow"), (run_dir::HIFT, "vocoder")]
        .iter()
        .map(|(sub, label)| {
            let total = planned_steps(plan, sub);
            match part_progress(&dir.join(sub), total) {
                Some(step) if step >= total => {
                    started = true;
                    format!("{label} trained ({total} steps)")
                }
                Some(step) => {
                    started = true;
                    format!("{label} from step {step} of {total}")
                }
                None => format!("{label} {total} steps"),
            }
        })
        .collect();
    if started {
        State::Resumes(parts.join(", "))
    } else {
        State::Fresh(parts.join(", "))
    }
}
