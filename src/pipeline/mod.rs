//! The main command's work once the recipe is loaded: prepare -> lm (stage one) -> decoder
//! (stage two) -> package. Each stage first says where it stands in the run directory
//! ([`status`]): done stages are skipped, interrupted ones resume from their checkpoints, frozen
//! ones keep the given model, and a stage finished with other settings is refused untouched.
//! `--stages` runs a subset. Rerunning the same command after a crash continues the run.

pub mod decoder_stage;
pub mod disk;
pub mod lm_stage;
pub mod prepare;
pub mod status;

use std::fmt::Write;

use crate::backend::{DeviceSpec, Dtype};
use crate::data::scan::Scan;
use crate::faults::Faults;
use crate::logfile::say;
use crate::package::{self, DecoderSource, LmSource};
use crate::plan::Plan;
use crate::recipe::Recipe;
use crate::run_dir;
use crate::train::driver::Resume;
use status::State;

/// Why the pipeline did not finish.
#[derive(Debug)]
pub enum Error {
    /// Refused before any work: settings that conflict with the run directory, no device.
    Refused(String),
    /// The work itself failed (or was stopped by a signal).
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageName {
    Prepare,
    Lm,
    Decoder,
    Package,
}

impl StageName {
    pub const ALL: [StageName; 4] = [
        StageName::Prepare,
        StageName::Lm,
        StageName::Decoder,
        StageName::Package,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Prepare => "prepare",
            StageName::Lm => "lm",
            StageName::Decoder => "decoder",
            StageName::Package => "package",
        }
    }

    /// `lm,decoder` (any order, no repeats) -> the stages in pipeline order.
    pub fn parse_list(text: &str) -> Result<Vec<StageName>, String> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let stage = Self::ALL
                .into_iter()
                .find(|s| s.as_str() == word)
                .ok_or_else(|| {
                    format!(
                        "--stages: unknown stage {word:?} (stages: prepare, lm, decoder, package)"
                    )
                })?;
            if out.contains(&stage) {
                return Err(format!("--stages: {word:?} is listed twice"));
            }
            out.push(stage);
        }
        if out.is_empty() {
            return Err("--stages: name at least one of prepare, lm, decoder, package".into());
        }
        out.sort();
        Ok(out)
    }
}

pub struct Options {
    pub stages: Vec<StageName>,
    /// True when the user chose the stages (`--stages`): prepare then runs even if nothing trains.
    pub stages_chosen: bool,
    /// Stage one's starting point: its newest checkpoint, or a given checkpoint directory.
    pub resume: Resume,
    /// Failures a test injects (none in normal use).
    pub faults: Faults,
    /// `--continue-finished`: a finished stage whose optimizer, schedule or length changed
    /// continues from its last checkpoint instead of being refused.
    pub continue_finished: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stages: StageName::ALL.to_vec(),
            stages_chosen: false,
            resume: Resume::Latest,
            faults: Faults::default(),
            continue_finished: false,
        }
    }
}

/// Where the run directory stands for this recipe.
pub struct Survey {
    pub lm: State,
    pub decoder: State,
    /// The package's inputs, once both stages are done or frozen.
    pub sources: Option<(LmSource, DecoderSource)>,
}

impl Survey {
    /// `continue_finished`: see [`Options::continue_finished`].
    pub fn take(recipe: &Recipe, plan: &Plan, continue_finished: bool) -> Survey {
        let lm = status::lm_state(recipe, plan, continue_finished);
        let decoder = status::decoder_state(recipe, plan, continue_finished);
        let sources = lm_source(recipe, &lm).zip(decoder_source(recipe, &decoder));
        Survey {
            lm,
            decoder,
            sources,
        }
    }

    /// True when every stage is done (or frozen) and the package is up to date.
    pub fn complete(&self, recipe: &Recipe) -> bool {
        self.sources
            .as_ref()
            .is_some_and(|(lm, decoder)| package::up_to_date(recipe, lm, decoder))
    }

    pub fn package_state(&self, recipe: &Recipe) -> String {
        if self.complete(recipe) {
            format!(
                "up to date in {}: skipped",
                package::package_dir(recipe).display()
            )
        } else if self.sources.is_some() {
            format!("assembles {}", package::package_dir(recipe).display())
        } else {
            "assembles the ARP-Model once lm and decoder are done".into()
        }
    }

    /// Prepare runs when asked for by name (`--stages`) or when a selected stage will train.
    pub fn prepare_runs(&self, options: &Options) -> bool {
        let selected = |stage: StageName| options.stages.contains(&stage);
        let trains = (selected(StageName::Lm) && self.lm.needs_training())
            || (selected(StageName::Decoder) && self.decoder.needs_training());
        selected(StageName::Prepare) && (trains || options.stages_chosen)
    }

    /// The dry run's (and the run's opening) account of each stage.
    pub fn render(&self, recipe: &Recipe, options: &Options) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== run directory {} ==", recipe.output_dir.display());
        let selected = |stage: StageName| options.stages.contains(&stage);
        let prepare = if self.prepare_runs(options) {
            "runs (incremental: cached clips are reused)"
        } else {
            "skipped: no selected stage trains"
        };
        let lines = [
            (StageName::Prepare, prepare.to_string()),
            (StageName::Lm, self.lm.describe()),
            (StageName::Decoder, self.decoder.describe()),
            (StageName::Package, self.package_state(recipe)),
        ];
        for (stage, text) in lines {
            if selected(stage) {
                let _ = writeln!(s, "{:<8} {text}", stage.as_str());
            } else {
                let _ = writeln!(s, "{:<8} not selected (--stages)", stage.as_str());
            }
        }
        s
    }
}

fn lm_source(recipe: &Recipe, state: &State) -> Option<LmSource> {
    let dir = status::lm_dir(recipe);
    match state {
        State::Frozen(_) => recipe.lm.base_model.clone().map(LmSource::Base),
        State::Done(record) => Some(LmSource::Trained {
            merged: dir.join(run_dir::MERGED),
            adapter: record
                .outputs
                .iter()
                .any(|o| o == run_dir::ADAPTER)
                .then(|| dir.join(run_dir::ADAPTER)),
            plot: dir.join(run_dir::LOSS_PLOT),
            record: record.clone(),
        }),
        _ => None,
    }
}

fn decoder_source(recipe: &Recipe, state: &State) -> Option<DecoderSource> {
    let dir = status::decoder_dir(recipe);
    match state {
        State::Frozen(_) => recipe.decoder.init.clone().map(DecoderSource::Original),
        State::Done(record) => Some(DecoderSource::Trained {
            model: dir.join(run_dir::DECODER_MODEL),
            plots: vec![
                (
                    "flow".into(),
                    dir.join(run_dir::FLOW).join(run_dir::LOSS_PLOT),
                ),
                (
                    "vocoder".into(),
                    dir.join(run_dir::HIFT).join(run_dir::LOSS_PLOT),
                ),
            ],
            record: record.clone(),
        }),
        _ => None,
    }
}

/// The console's whole-run line (steps and ETA over every part this run trains), for as long
/// as the run's stages run.
struct RunLine;

impl RunLine {
    fn start(recipe: &Recipe, plan: &Plan, lm: bool, decoder: bool) -> RunLine {
        let parts = status::parts_to_train(recipe, plan, lm, decoder);
        if !parts.is_empty() {
            crate::progress::start_run(&parts);
        }
        RunLine
    }
}

impl Drop for RunLine {
    fn drop(&mut self) {
        crate::progress::finish_run();
    }
}

/// After a stop signal that arrived while a stage was finishing (exporting, packaging), the
/// next stage does not start.
fn stopped_before(stage: &str) -> Option<Error> {
    crate::stop::requested().map(|signal| {
        Error::Failed(format!(
            "stopped by {} before {stage} started; rerun the same command to continue",
            crate::stop::signal_name(signal)
        ))
    })
}

/// Runs the selected stages of `recipe` into its output directory.
pub fn run(
    recipe: &Recipe,
    scan: &Scan,
    plan: &Plan,
    device: DeviceSpec,
    dtype: Dtype,
    options: &Options,
) -> Result<(), Error> {
    let selected = |stage: StageName| options.stages.contains(&stage);
    let survey = Survey::take(recipe, plan, options.continue_finished);
    say(survey.render(recipe, options));
    for (stage, state) in [
        (StageName::Lm, &survey.lm),
        (StageName::Decoder, &survey.decoder),
    ] {
        if let (true, State::Conflict(why)) = (selected(stage), state) {
            return Err(Error::Refused(why.clone()));
        }
    }

    if survey.prepare_runs(options) {
        prepare::prepare_recipe(recipe, scan, device)?;
    }

    let _run_line = RunLine::start(
        recipe,
        plan,
        selected(StageName::Lm) && survey.lm.needs_training(),
        selected(StageName::Decoder) && survey.decoder.needs_training(),
    );
    if selected(StageName::Lm) {
        if let Some(stop) = stopped_before("stage one (lm)") {
            return Err(stop);
        }
        match &survey.lm {
            State::Frozen(kept) => say(format!("stage one (lm): frozen, {kept} is kept")),
            State::Done(_) => say("stage one (lm): done, skipped"),
            _ => {
                let stage_dir = status::lm_dir(recipe);
                lm_stage::run(recipe, &stage_dir, device, dtype, options).map_err(Error::Failed)?;
            }
        }
    }
    if selected(StageName::Decoder) {
        if let Some(stop) = stopped_before("stage two (decoder)") {
            return Err(stop);
        }
        match &survey.decoder {
            State::Frozen(kept) => say(format!("stage two (decoder): frozen, {kept} is kept")),
            State::Done(_) => say("stage two (decoder): done, skipped"),
            _ => {
                decoder_stage::run(
                    recipe,
                    &status::decoder_dir(recipe),
                    device,
                    &options.faults,
                )
                .map_err(Error::Failed)?;
            }
        }
    }
    if selected(StageName::Package) {
        if let Some(stop) = stopped_before("the package") {
            return Err(stop);
        }
        let survey = Survey::take(recipe, plan, false);
        let Some((lm, decoder)) = &survey.sources else {
            let waiting: Vec<&str> = [("lm", &survey.lm), ("decoder", &survey.decoder)]
                .iter()
                .filter(|(_, s)| !matches!(s, State::Done(_) | State::Frozen(_)))
                .map(|(name, _)| *name)
                .collect();
            return Err(Error::Refused(format!(
                "the package needs finished stages: {} not done yet (run them first, e.g. --stages {})",
                waiting.join(" and "),
                waiting.join(",")
            )));
        };
        if package::up_to_date(recipe, lm, decoder) {
            say(format!(
                "package: up to date, {}",
                package::package_dir(recipe).display()
            ));
        } else {
            let abort_midway = options.faults.abort_in_package;
            let manifest = package::assemble(recipe, plan, lm, decoder, abort_midway)
                .map_err(Error::Failed)?;
            say(package_summary(recipe, &manifest));
        }
    }
    say(disk::run_line(&recipe.output_dir));
    Ok(())
}

fn package_summary(recipe: &Recipe, m: &package::Manifest) -> String {
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    format!(
        "package: {} ({} files, {}; trained: {}) in {}",
        m.name,
        m.files.len(),
        disk::human(bytes),
        match m.trained_stages().as_slice() {
            [] => "none".to_string(),
            stages => stages.join(", "),
        },
        package::package_dir(recipe).display()
    )
}
