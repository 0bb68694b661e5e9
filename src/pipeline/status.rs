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

/// A finished record that matches the recipe and still has its outputs.
fn finished(
    stage_dir: &Path,
    identity: std::collections::BTreeMap<String, String>,
    label: &str,
) -> Result<Option<StageRecord>, String> {
    let Some(record) = StageRecord::read(stage_dir)? else {
        return Ok(None);
    };
    // Records of earlier builds also name the cache's location, which no longer counts.
    let mut saved = record.identity.clone();
    saved.remove("data.cache_dir");
    let diffs = differences(&saved, &identity, "finished with");
    if !diffs.is_empty() {
        return Err(format!(
            "{label} in {} finished with other model or data settings:\n{}\n\
             (a different recipe needs its own output_dir; nothing was changed)",
            stage_dir.display(),
            diffs.join("\n")
        ));
    }
    if !record.missing_outputs(stage_dir).is_empty() {
        // Outputs removed by hand: the stage reruns its export from the final checkpoint.
        return Ok(None);
    }
    Ok(Some(record))
}

fn part_progress(dir: &Path, total: usize) -> Option<usize> {
    Checkpoints::peek(dir)
        .latest()
        .map(|(step, _)| step.min(total))
}

pub fn lm_state(recipe: &Recipe, plan: &Plan) -> State {
    if recipe.freeze.contains(&Stage::Lm) {
        let base = recipe.lm.base_model.as_deref().unwrap_or(Path::new("-"));
        return State::Frozen(format!("the base model {}", base.display()));
    }
    let dir = lm_dir(recipe);
    match finished(&dir, lm_identity(recipe), "stage one (lm)") {
        Err(why) => return State::Conflict(why),
        Ok(Some(record)) => return State::Done(record),
        Ok(None) => {}
    }
    let total = planned_steps(plan, "lm");
    match part_progress(&dir, total) {
        Some(step) if step >= total => State::Resumes(format!(
            "all {total} steps trained; exports the adapter and merged model"
        )),
        Some(step) => State::Resumes(format!("from step {step} of {total}")),
        None => State::Fresh(format!("{total} steps")),
    }
}

pub fn decoder_state(recipe: &Recipe, plan: &Plan) -> State {
    if recipe.freeze.contains(&Stage::Decoder) {
        let init = recipe.decoder.init.as_deref().unwrap_or(Path::new("-"));
        return State::Frozen(format!("the decoder {}", init.display()));
    }
    let dir = decoder_dir(recipe);
    match finished(&dir, decoder_identity(recipe), "stage two (decoder)") {
        Err(why) => return State::Conflict(why),
        Ok(Some(record)) => return State::Done(record),
        Ok(None) => {}
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
