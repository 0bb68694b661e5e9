//! Stage two in the pipeline: the flow, then the vocoder, in fp32 on the resolved backend (as
//! CosyVoice trains them, whatever precision stage one used); prints both curves and leaves
//! the stage's `done.json`.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;

use super::status::decoder_identity;
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::faults::Faults;
use crate::logfile::say;
use crate::recipe::Recipe;
use crate::report::{CurveSummary, DecoderReport, PartReport, StageRecord};
use crate::run_dir;
use crate::train::driver::Resume;

pub fn run(
    recipe: &Recipe,
    stage_dir: &Path,
    device: DeviceSpec,
    faults: &Faults,
) -> Result<StageRecord, String> {
    let started = Instant::now();
    let tuned_before = crate::logging::autotuned_shapes();
    let report = match backend::run_on(
        device,
        Dtype::Fp32,
        TrainDecoder {
            recipe,
            stage_dir,
            resume: &Resume::Latest,
            faults,
        },
    ) {
        Ok(Ok(report)) => report,
        // A stop signal's message says what stopped where; it is not a failure.
        Ok(Err(e)) if crate::stop::requested().is_some() => return Err(e),
        Ok(Err(e)) => return Err(format!("stage two failed: {e}")),
        Err(e) => return Err(e.to_string()),
    };
    say(format!(
        "stage two (decoder): {} utterances ({:.1} s of audio, {} held out)",
        report.train_utterances, report.seconds_of_audio, report.validation_utterances
    ));
    say(format!(
        "  flow (flow-matching loss): {}",
        curve(&report.flow)
    ));
    say(format!("  vocoder (mel L1): {}", curve(&report.vocoder)));
    say(format!("  decoder: {}", report.model_dir.display()));
    if let Some(line) = crate::logging::autotune_summary(tuned_before) {
        say(line);
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let mut record =
        StageRecord::from_decoder(decoder_identity(recipe), &report, stage_dir, wall_seconds);
    record.continued = super::status::continuations(stage_dir, &record.identity);
    record.write(stage_dir)?;
    for (part, config) in [
        (run_dir::FLOW, &recipe.decoder.flow),
        (run_dir::HIFT, &recipe.decoder.hift),
    ] {
        say(format!(
            "  {part}: {}",
            super::disk::checkpoints_line(&stage_dir.join(part), config.train.keep_last_n)
        ));
    }
    Ok(record)
}

fn curve(p: &PartReport) -> String {
    if p.already_done {
        return format!("already trained ({} steps)", p.steps);
    }
    format!(
        "{} steps in {:.1} s; {}; {} skipped",
        p.steps,
        p.wall_seconds,
        CurveSummary::of_part(p).describe(),
        p.skipped_steps
    )
}

struct TrainDecoder<'a> {
    recipe: &'a Recipe,
    stage_dir: &'a Path,
    resume: &'a Resume,
    faults: &'a Faults,
}

impl BackendTask for TrainDecoder<'_> {
    type Output = Result<DecoderReport, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        backend::catch_crash(
            "stage two",
            "Lower decoder.flow.max_frames_per_batch or decoder.hift.max_frames_per_batch",
            || {
                crate::train::decoder::train_decoder::<burn::backend::Autodiff<B>>(
                    self.recipe,
                    &device,
                    self.stage_dir,
                    self.resume,
                    self.faults,
                )
            },
        )
    }
}
