//! The one training loop every part runs in: stage one's LM, stage two's flow and vocoder. It
//! owns what they share: where a run starts (fresh, a checkpoint, or already finished), the
//! learning-rate schedule, gradient-accumulation groups, the non-finite guard with its
//! last-good checkpoint, evaluation and checkpoint cadence, the metrics log, the progress bar,
//! a graceful stop, injected faults, and the closing plot. A [`Part`] only batches, steps,
//! evaluates and saves its own models.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoints::{Checkpoints, COMPLETE_MARKER};
use super::metrics::MetricsLog;
use super::resume::{check_resumable, ResumeSection};
use super::schedule::learning_rate;
use super::step::StepOutcome;
use super::tensorboard::{scalars_of, EventWriter};
use crate::faults::PartFaults;
use crate::progress::{round4, sig4};
use crate::recipe::training::TrainingConfig;
use crate::recipe::Recipe;
use crate::report::PartReport;
use crate::run_dir;

/// What a part starts from. Checkpoints of other settings are refused by
/// [`check_resumable`], so resuming never mixes two runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Resume {
    /// The newest complete checkpoint of the part's directory, if any.
    Latest,
    /// This checkpoint directory.
    From(PathBuf),
}

/// Where a part's run stands, saved in every checkpoint (`trainer_state.json`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct TrainerState {
    /// Steps taken (skipped ones included).
    pub step: usize,
    pub epoch: usize,
    /// Index of the next step's group of batches in `epoch` (groups before it are done).
    pub next_group: usize,
    pub skipped_steps: usize,
    pub consecutive_bad: usize,
    pub losses: Vec<f64>,
    pub eval_losses: Vec<(usize, f64)>,
    /// Seconds spent training up to this checkpoint, over every invocation that got here.
    #[serde(default)]
    pub train_seconds: f64,
}

/// How a part is named to the user.
pub struct Names {
    /// Progress bar and log lines: "decoder flow".
    pub label: &'static str,
    /// The part in the plan and on the whole-run line: "lm", "flow", "hift".
    pub part: &'static str,
    /// In "resuming {resuming}": "the decoder flow".
    pub resuming: &'static str,
    /// In "N consecutive {steps} had a non-finite loss": "decoder flow steps".
    pub steps: &'static str,
    /// In the stop message: "stage two (flow)".
    pub title: &'static str,
    pub plot_title: &'static str,
    /// The recipe section of its settings, named in advice: "decoder.flow".
    pub recipe_key: &'static str,
    /// What the loss is, on the progress bar: "loss", "mel L1".
    pub loss: &'static str,
    /// Its throughput's key in metrics.jsonl: "tokens_per_second".
    pub throughput: &'static str,
}

/// What one step is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct StepInput {
    /// Steps taken before this one (0 for the first): seeds its random draws.
    pub step: usize,
    pub lr: f64,
    /// An injected fault: make the losses NaN.
    pub poison: bool,
}

/// What one step did.
pub struct Measured {
    /// The curve's loss, the gradient norm, whether the update was applied.
    pub outcome: StepOutcome,
    /// Tokens or mel frames trained on (the throughput's numerator).
    pub work: usize,
    /// More of the step's figures for metrics.jsonl (the GAN's loss terms).
    pub extra: BTreeMap<&'static str, f64>,
}

/// One trainable part: its models, optimizers and data.
pub trait Part: Sized {
    /// One epoch's micro-batches (indices into the part's training items), in training order.
    fn batches(&mut self, epoch: usize) -> Vec<Vec<usize>>;
    /// One optimizer step on `group`, its micro-batches' gradients accumulated.
    fn step(self, group: &[Vec<usize>], input: StepInput) -> (Self, Measured);
    /// The held-out loss, or None without held-out data.
    fn evaluate(&self) -> Option<f64>;
    /// Writes the trained model's weights into a checkpoint being written.
    fn save_weights(&self, dir: &Path) -> std::io::Result<()>;
    /// Writes everything else a resumed run needs (optimizer states, other models).
    fn save_training_state(&self, dir: &Path) -> std::io::Result<()>;
}

/// A part's checkpoints and the one it starts from.
pub struct Start {
    checkpoints: Checkpoints,
    /// The checkpoint to load the part from; None: fresh weights.
    pub from: Option<PathBuf>,
    pub state: TrainerState,
}

impl Start {
    /// Opens `dir`'s checkpoints and picks the starting point: `resume`'s checkpoint, which
    /// must be complete and trained with the same model and data settings, or none.
    pub fn open(
        dir: &Path,
        recipe: &Recipe,
        train: &TrainingConfig,
        section: ResumeSection,
        resume: &Resume,
    ) -> Result<Start, String> {
        let checkpoints = Checkpoints::open(dir, train.keep_last_n)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let from = match resume {
            Resume::Latest => checkpoints.latest().map(|(_, dir)| dir),
            Resume::From(dir) => Some(dir.clone()),
        };
        let mut state = TrainerState::default();
        if let Some(dir) = &from {
            if !dir.join(COMPLETE_MARKER).is_file() {
                return Err(format!("{} is not a complete checkpoint", dir.display()));
            }
            check_resumable(recipe, &dir.join(run_dir::RESOLVED_RECIPE), section)?;
            let path = dir.join(run_dir::TRAINER_STATE);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", dir.display()))?;
            state = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Start {
            checkpoints,
            from,
            state,
        })
    }
}

/// How the loop runs a part.
pub struct Settings<'a> {
    pub names: &'a Names,
    pub recipe: &'a Recipe,
    pub train: &'a TrainingConfig,
    pub total_steps: usize,
    pub dir: &'a Path,
    pub faults: &'a PartFaults,
}

/// One line of `metrics.jsonl`.
#[derive(Serialize)]
struct StepRecord<'a> {
    step: usize,
    epoch: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    #[serde(flatten)]
    throughput: BTreeMap<&'static str, f64>,
    step_seconds: f64,
    skipped_steps: usize,
    #[serde(flatten)]
    extra: &'a BTreeMap<&'static str, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_loss: Option<f64>,
}

/// Trains `part` from `start` to `settings.total_steps`, checkpointing as the recipe says, and
/// returns it with its report. A part already trained that far is only returned. Stops with a
/// checkpoint (and an error saying so) on a stop signal or after too many non-finite steps.
pub fn train<P: Part>(
    mut part: P,
    start: Start,
    settings: &Settings,
) -> Result<(P, PartReport), String> {
    let started = Instant::now();
    let Settings {
        names,
        recipe,
        train,
        total_steps: total,
        dir,
        faults,
    } = *settings;
    let Start {
        checkpoints,
        from,
        mut state,
    } = start;
    if state.step > total {
        return Err(format!(
            "{}: the checkpoint is at step {}, past the recipe's {total} steps; raise {}.steps \
             (or epochs) to at least that, or start a new output_dir",
            names.title, state.step, names.recipe_key
        ));
    }
    if state.step == total {
        write_plots(dir, recipe, names, &state)?;
        return Ok((part, report(&state, started, true)));
    }
    if let Some(from) = &from {
        tracing::info!(step = state.step, from = %from.display(), "resuming {}", names.resuming);
    }
    let (earlier_seconds, invocation) = (state.train_seconds, Instant::now());
    let save = |state: &mut TrainerState, part: &P, abort: bool| {
        state.train_seconds = earlier_seconds + invocation.elapsed().as_secs_f64();
        let state = &*state;
        checkpoints
            .save(state.step, |dir| {
                part.save_weights(dir)?;
                if abort {
                    // An injected fault: a crash in the middle of writing a checkpoint.
                    std::process::abort();
                }
                part.save_training_state(dir)?;
                std::fs::write(dir.join(run_dir::TRAINER_STATE), serde_json::to_vec(state)?)?;
                std::fs::write(dir.join(run_dir::RESOLVED_RECIPE), recipe.resolved_yaml())
            })
            .map(|_| ())
    };
    let mut log = Logs::open(dir, state.step)?;
    // The starting point of the held-out curve.
    if state.step == 0 {
        if let Some(loss) = part.evaluate() {
            state.eval_losses.push((0, loss));
            log.write(0, serde_json::json!({ "step": 0, "eval_loss": loss }))?;
            tracing::info!(step = 0, held_out = round4(loss), "{}", names.label);
        }
    }
    write_plots(dir, recipe, names, &state)?;
    let bar = crate::progress::bar(total as u64, names.label);
    bar.set_position(state.step as u64);
    crate::progress::part_progress(names.part, state.step, None);
    // This process's pace (evaluations and checkpoints included), for the whole-run ETA.
    let (pace_start, pace_first_step) = (Instant::now(), state.step);
    'epochs: while state.step < total {
        let epoch = state.epoch;
        let batches = part.batches(epoch);
        let groups: Vec<&[Vec<usize>]> = batches.chunks(train.gradient_accumulation).collect();
        if groups.is_empty() {
            return Err(format!("{}: no training batches", names.title));
        }
        for (index, group) in groups.iter().enumerate().skip(state.next_group) {
            if state.step >= total {
                break 'epochs;
            }
            let step_start = Instant::now();
            let input = StepInput {
                step: state.step,
                lr: learning_rate(&train.schedule, train.optimizer.lr, state.step, total),
                poison: faults.nan_steps.contains(&(state.step + 1)),
            };
            let (stepped, measured) = part.step(group, input);
            part = stepped;
            let StepOutcome {
                loss,
                grad_norm,
                applied,
            } = measured.outcome;
            // The cursor moves past this group whether or not its update was applied.
            state.step += 1;
            let last_group = index + 1 == groups.len();
            state.epoch = if last_group { epoch + 1 } else { epoch };
            state.next_group = if last_group { 0 } else { index + 1 };
            let step = state.step;
            if !applied {
                state.consecutive_bad += 1;
                state.skipped_steps += 1;
                tracing::warn!(
                    step = input.step,
                    loss,
                    grad_norm,
                    "{}: non-finite loss or gradient norm: step skipped",
                    names.label
                );
                if state.consecutive_bad >= train.max_nonfinite_steps {
                    bar.finish_and_clear();
                    let bad = std::mem::take(&mut state.consecutive_bad);
                    // The skipped steps left the weights untouched: save them, past the bad batches.
                    save(&mut state, &part, false)?;
                    return Err(format!(
                        "{bad} consecutive {} had a non-finite loss or gradient norm (last at step {}); \
                         stopping with a checkpoint of the last good weights. Lower {key}.optimizer.lr, \
                         check the data, or raise {key}.max_nonfinite_steps",
                        names.steps,
                        input.step,
                        key = names.recipe_key
                    ));
                }
                bar.inc(1);
                crate::progress::part_progress(names.part, state.step, None);
                continue;
            }
            state.consecutive_bad = 0;
            state.losses.push(loss);
            let eval_loss = if step % train.eval_every == 0 || step == total {
                part.evaluate()
            } else {
                None
            };
            if let Some(held_out) = eval_loss {
                state.eval_losses.push((step, held_out));
            }
            let seconds = step_start.elapsed().as_secs_f64();
            let record = StepRecord {
                step,
                epoch,
                loss,
                lr: input.lr,
                grad_norm,
                throughput: BTreeMap::from([(
                    names.throughput,
                    measured.work as f64 / seconds.max(1e-9),
                )]),
                step_seconds: seconds,
                skipped_steps: state.skipped_steps,
                extra: &measured.extra,
                eval_loss,
            };
            log.write(
                step,
                serde_json::to_value(&record).expect("records serialize"),
            )?;
            let stopping = crate::stop::requested().is_some();
            let checkpoint = step % train.checkpoint_every == 0 || step == total || stopping;
            if checkpoint {
                save(
                    &mut state,
                    &part,
                    faults.abort_in_checkpoint.contains(&step),
                )?;
            }
            if checkpoint || eval_loss.is_some() {
                write_plots(dir, recipe, names, &state)?;
            }
            let held_out = state.eval_losses.last().map(|(_, l)| *l);
            bar.set_message(match held_out {
                Some(h) => format!("{} {} · held-out {}", names.loss, sig4(loss), sig4(h)),
                None => format!("{} {}", names.loss, sig4(loss)),
            });
            bar.inc(1);
            let pace = pace_start.elapsed().as_secs_f64() / (step - pace_first_step) as f64;
            let run_eta = crate::progress::part_progress(names.part, step, Some(pace));
            if step % train.log_every == 0 {
                tracing::info!(
                    step,
                    loss = round4(loss),
                    lr = round4(input.lr),
                    grad_norm = round4(grad_norm),
                    run_eta = %run_eta.as_deref().unwrap_or("-"),
                    "{}",
                    names.label
                );
            }
            if let Some(held_out) = eval_loss {
                tracing::info!(step, held_out = round4(held_out), "{}", names.label);
            }
            if stopping {
                bar.finish_and_clear();
                return Err(crate::stop::stopped_training(
                    names.title,
                    step,
                    total,
                    &checkpoints.step_dir(step),
                ));
            }
        }
        if state.epoch == epoch {
            // A cursor past this epoch's last group (batches changed since it was saved).
            state.epoch += 1;
            state.next_group = 0;
        }
    }
    bar.finish_and_clear();
    state.train_seconds = earlier_seconds + invocation.elapsed().as_secs_f64();
    write_plots(dir, recipe, names, &state)?;
    Ok((part, report(&state, started, false)))
}

fn report(state: &TrainerState, started: Instant, already_done: bool) -> PartReport {
    PartReport {
        steps: state.step,
        losses: state.losses.clone(),
        eval_losses: state.eval_losses.clone(),
        skipped_steps: state.skipped_steps,
        wall_seconds: started.elapsed().as_secs_f64(),
        train_seconds: state.train_seconds,
        already_done,
    }
}

/// A part's two logs of every step: `metrics.jsonl` and the TensorBoard event file, cut back
/// together to the step a run resumes from.
struct Logs {
    metrics: MetricsLog,
    events: EventWriter,
}

impl Logs {
    fn open(dir: &Path, resume_step: usize) -> Result<Logs, String> {
        let metrics = dir.join(run_dir::METRICS);
        let metrics = MetricsLog::open(&metrics, Some(resume_step))
            .map_err(|e| format!("cannot open {}: {e}", metrics.display()))?;
        let events = EventWriter::open(dir, Some(resume_step)).map_err(|e| {
            format!(
                "cannot open {}: {e}",
                dir.join(super::tensorboard::FILE).display()
            )
        })?;
        Ok(Logs { metrics, events })
    }

    /// One step's record (a JSON object with `step`) into both logs.
    fn write(&mut self, step: usize, record: serde_json::Value) -> Result<(), String> {
        self.metrics
            .write(&record)
            .map_err(|e| format!("cannot write {}: {e}", self.metrics.path().display()))?;
        self.events
            .write(step, scalars_of(&record))
            .map_err(|e| format!("cannot write {}: {e}", self.events.path().display()))
    }
}

/// The part's `loss.svg` (the training loss per applied step and the held-out points) and the
/// run's index of plots.
fn write_plots(
    dir: &Path,
    recipe: &Recipe,
    names: &Names,
    state: &TrainerState,
) -> Result<(), String> {
    let curve: Vec<(usize, f64)> = state
        .losses
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 1, *l))
        .collect();
    let plot = dir.join(run_dir::LOSS_PLOT);
    super::plot::write_loss_svg(
        &plot,
        names.plot_title,
        names.loss,
        &curve,
        &state.eval_losses,
    )
    .map_err(|e| format!("cannot write {}: {e}", plot.display()))?;
    let index = recipe.output_dir.join(run_dir::PLOT_INDEX);
    super::plot::write_index(&recipe.output_dir)
        .map_err(|e| format!("cannot write {}: {e}", index.display()))
}
