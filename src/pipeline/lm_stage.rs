//! Stage one in the pipeline: train (or resume) on the resolved backend with autodiff, turn a
//! backend panic into advice, print the curve, and leave the stage's `done.json`.

use std::path::Path;

use burn::tensor::backend::Backend;

use super::status::lm_identity;
use super::Options;
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::logfile::say;
use crate::recipe::Recipe;
use crate::report::{CurveSummary, LmReport, StageRecord};

pub fn run(
    recipe: &Recipe,
    stage_dir: &Path,
    device: DeviceSpec,
    dtype: Dtype,
    options: &Options,
) -> Result<StageRecord, String> {
    let tuned_before = crate::logging::autotuned_shapes();
    let report = match backend::run_on(
        device,
        dtype,
        TrainLm {
            recipe,
            stage_dir,
            options,
        },
    ) {
        Ok(Ok(report)) => report,
        // A stop signal's message says what stopped where; it is not a failure.
        Ok(Err(e)) if crate::stop::requested().is_some() => return Err(e),
        Ok(Err(e)) => return Err(format!("stage one failed: {e}")),
        Err(e) => return Err(e.to_string()),
    };
    print_report(&report);
    if let Some(line) = crate::logging::autotune_summary(tuned_before) {
        say(line);
    }
    let mut record = StageRecord::from_lm(lm_identity(recipe), &report, stage_dir);
    record.continued = super::status::continuations(stage_dir, &record.identity);
    record.write(stage_dir)?;
    say(format!(
        "  {}",
        super::disk::checkpoints_line(stage_dir, recipe.lm.train.keep_last_n)
    ));
    Ok(record)
}

fn print_report(r: &LmReport) {
    let curve = &r.curve;
    say(format!(
        "stage one (lm): {} steps in {:.1} s on {} samples ({} held out); {}; {} skipped",
        curve.steps,
        curve.wall_seconds,
        r.train_samples,
        r.validation_samples,
        CurveSummary::of_part(curve).describe(),
        curve.skipped_steps
    ));
    say(format!(
        "  samples: {:.1}% padding in batches, {} shortened by dropping old turns, {} too long (left out)",
        100.0 * r.padding_share,
        r.truncated_samples,
        r.dropped_too_long
    ));
    if let Some(adapter) = &r.adapter_dir {
        say(format!("  PEFT adapter: {}", adapter.display()));
    }
    say(format!("  merged model: {}", r.merged_dir.display()));
}

struct TrainLm<'a> {
    recipe: &'a Recipe,
    stage_dir: &'a Path,
    options: &'a Options,
}

impl BackendTask for TrainLm<'_> {
    type Output = Result<LmReport, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        backend::catch_crash(
            "stage one",
            "Lower lm.batch_size (and raise lm.gradient_accumulation to keep the effective batch), \
             lower lm.max_seq_len, keep lm.activation_checkpointing on, or use LoRA with a smaller \
             rank; `--dry-run` prints the memory estimate",
            || self.train::<B>(device),
        )
    }
}

impl TrainLm<'_> {
    fn train<B: Backend>(&self, device: B::Device) -> Result<LmReport, String> {
        use crate::train::lm::train_lm;
        use burn::backend::Autodiff;
        let (resume, faults) = (&self.options.resume, &self.options.faults.lm);
        train_lm::<Autodiff<B>>(self.recipe, &device, self.stage_dir, resume, faults)
    }
}
