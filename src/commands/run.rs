//! The main form: `arp-train --recipe FILE [--set k=v ...] [--dry-run] [--output DIR]`.
//! Loads and checks the recipe, resolves the device, scans the data, and plans the stages.

use std::path::{Path, PathBuf};

use super::prepare::prepare_recipe;
use super::{load_runnable, Exit};
use crate::backend::{self, BackendTask, DeviceSpec};
use crate::data::scan;
use crate::plan::{self, Plan};
use crate::recipe::Stage;
use crate::train::lm::Resume;

pub struct RunArgs {
    pub recipe: PathBuf,
    pub overrides: Vec<String>,
    pub dry_run: bool,
    pub output: Option<PathBuf>,
    pub device: Option<DeviceSpec>,
    pub resume: Resume,
}

pub fn run(args: RunArgs) -> Exit {
    // --output is an override of `output_dir` like any --set, so defaults derived from it
    // (data.cache_dir) follow. A JSON string is a valid YAML scalar for any path.
    let mut overrides = args.overrides.clone();
    if let Some(dir) = &args.output {
        overrides.push(format!(
            "output_dir={}",
            serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default()
        ));
    }
    let recipe = match load_runnable(&args.recipe, &overrides) {
        Ok(recipe) => recipe,
        Err(exit) => return exit,
    };
    let requested = args.device.unwrap_or(recipe.device);
    let device = backend::resolve(requested, recipe.dtype);
    // A real run stops on an unusable device before any work; a dry run reports it in the plan.
    if let (Err(e), false) = (&device, args.dry_run) {
        return Exit::Usage(e.to_string());
    }

    let scan = match scan::scan(&recipe.data.manifests, &recipe.data.filters) {
        Ok(scan) => scan,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let plan = Plan::new(&recipe, &scan);

    if args.dry_run {
        println!(
            "== resolved recipe ({}) ==\n{}",
            recipe.file.display(),
            recipe.resolved_yaml()
        );
        match &device {
            Ok((d, dtype)) => println!("device: {d} ({dtype})"),
            Err(e) => println!("device: {requested}: NOT USABLE: {e}"),
        }
        println!("output: {}\n", recipe.output_dir.display());
        print!("{}", plan::render(&recipe, &scan, &plan));
        if !scan.rejected.is_empty() {
            println!(
                "\nrejections (a run writes them to {}):",
                rejections_path(&recipe.output_dir).display()
            );
            for r in &scan.rejected {
                let what = r.id.clone().unwrap_or_else(|| format!("line {}", r.line));
                println!(
                    "  {}:{}: {what}: {}: {}",
                    r.manifest.display(),
                    r.line,
                    r.reason,
                    r.detail
                );
            }
        }
        return Exit::Ok;
    }

    let (device, dtype) = match device {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    tracing::info!(%device, %dtype, output = %recipe.output_dir.display(), "starting run");
    if let Err(e) = crate::atomic::write(
        &recipe.output_dir.join("recipe.resolved.yaml"),
        recipe.resolved_yaml().as_bytes(),
    ) {
        return Exit::Failed(format!(
            "cannot write to {}: {e}",
            recipe.output_dir.display()
        ));
    }
    let report = rejections_path(&recipe.output_dir);
    if let Err(e) = scan.write_rejections(&report) {
        return Exit::Failed(format!("cannot write {}: {e}", report.display()));
    }
    println!("{}", plan::render(&recipe, &scan, &plan));
    tracing::info!(rejected = scan.rejected.len(), report = %report.display(), "data checked");

    match prepare_recipe(&recipe, &scan, device) {
        Exit::Ok => {}
        other => return other,
    }
    if recipe.freeze.contains(&Stage::Lm) {
        println!("stage one (lm): frozen, the base model is kept");
    } else {
        let stage_dir = recipe.output_dir.join("lm");
        match backend::run_on(
            device,
            dtype,
            TrainLm {
                recipe: &recipe,
                stage_dir: &stage_dir,
                resume: &args.resume,
            },
        ) {
            Ok(Ok(r)) => {
                let first = r.losses.first().copied().unwrap_or(f64::NAN);
                let last = r.losses.last().copied().unwrap_or(f64::NAN);
                println!(
                    "stage one (lm): {} steps in {:.1} s on {} samples ({} held out); train loss {first:.4} -> {last:.4}{}; {} skipped",
                    r.steps,
                    r.wall_seconds,
                    r.train_samples,
                    r.validation_samples,
                    r.eval_losses.last().map(|(s, l)| format!(", eval loss {l:.4} at step {s}")).unwrap_or_default(),
                    r.skipped_steps
                );
                println!(
                    "  samples: {:.1}% padding in batches, {} shortened by dropping old turns, {} too long (left out)",
                    100.0 * r.padding_share,
                    r.truncated_samples,
                    r.dropped_too_long
                );
                if let Some(adapter) = &r.adapter_dir {
                    println!("  PEFT adapter: {}", adapter.display());
                }
                println!("  merged model: {}", r.merged_dir.display());
            }
            Ok(Err(e)) => return Exit::Failed(format!("stage one failed: {e}")),
            Err(e) => return Exit::Usage(e.to_string()),
        }
    }
    if recipe.freeze.contains(&Stage::Decoder) {
        println!(
            "stage two (decoder): frozen, the decoder in {} is kept",
            recipe
                .decoder
                .init
                .as_deref()
                .unwrap_or(Path::new("-"))
                .display()
        );
    } else {
        let stage_dir = recipe.output_dir.join("decoder");
        // The decoder trains in fp32 (as CosyVoice does); a lower-precision LM stage does not change that.
        let resume = match &args.resume {
            Resume::No => Resume::No,
            _ => Resume::Latest,
        };
        match backend::run_on(
            device,
            crate::backend::Dtype::Fp32,
            TrainDecoder {
                recipe: &recipe,
                stage_dir: &stage_dir,
                resume: &resume,
            },
        ) {
            Ok(Ok(r)) => {
                let curve = |p: &crate::train::part::PartReport| {
                    let first = p.losses.first().copied().unwrap_or(f64::NAN);
                    let tail = &p.losses[p.losses.len().saturating_sub(5)..];
                    let last = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
                    let eval = p
                        .eval_losses
                        .first()
                        .zip(p.eval_losses.last())
                        .map(|((_, a), (s, b))| format!(", held-out {a:.4} -> {b:.4} at step {s}"))
                        .unwrap_or_default();
                    if p.already_done {
                        format!("already trained ({} steps)", p.steps)
                    } else {
                        format!("{} steps in {:.1} s; train {first:.4} -> {last:.4} (mean of the last 5){eval}; {} skipped", p.steps, p.wall_seconds, p.skipped_steps)
                    }
                };
                println!(
                    "stage two (decoder): {} utterances ({:.1} s of audio, {} held out)",
                    r.train_utterances, r.seconds_of_audio, r.validation_utterances
                );
                println!("  flow (flow-matching loss): {}", curve(&r.flow));
                println!("  vocoder (mel L1): {}", curve(&r.vocoder));
                println!("  decoder: {}", r.model_dir.display());
            }
            Ok(Err(e)) => return Exit::Failed(format!("stage two failed: {e}")),
            Err(e) => return Exit::Usage(e.to_string()),
        }
    }
    println!(
        "the ARP-Model package is not assembled by this build yet (issue 7): the stages' outputs are in {}",
        recipe.output_dir.display()
    );
    Exit::Ok
}

/// Stage two on the resolved backend, with autodiff.
struct TrainDecoder<'a> {
    recipe: &'a crate::recipe::Recipe,
    stage_dir: &'a Path,
    resume: &'a Resume,
}

impl BackendTask for TrainDecoder<'_> {
    type Output = Result<crate::train::decoder::DecoderReport, String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::train::decoder::train_decoder::<burn::backend::Autodiff<B>>(
                self.recipe,
                &device,
                self.stage_dir,
                self.resume,
            )
        }));
        result.unwrap_or_else(|payload| {
            let message = backend::panic_message(payload.as_ref(), "the backend panicked");
            if message.to_lowercase().contains("out of memory") {
                Err(format!(
                    "the device ran out of memory ({message}). Lower decoder.flow.max_frames_per_batch or decoder.hift.max_frames_per_batch"
                ))
            } else {
                Err(format!("stage two crashed: {message}"))
            }
        })
    }
}

/// Stage one on the resolved backend, with autodiff.
struct TrainLm<'a> {
    recipe: &'a crate::recipe::Recipe,
    stage_dir: &'a Path,
    resume: &'a Resume,
}

impl BackendTask for TrainLm<'_> {
    type Output = Result<crate::train::lm::LmReport, String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        // Backends panic when the device runs out of memory: turn that into advice.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.train::<B>(device)));
        result.unwrap_or_else(|payload| {
            let message = backend::panic_message(payload.as_ref(), "the backend panicked");
            let lower = message.to_lowercase();
            if lower.contains("out of memory") || lower.contains("outofmemory") || lower.contains("oom") {
                Err(format!(
                    "the device ran out of memory ({message}). Lower lm.batch_size (and raise lm.gradient_accumulation \
                     to keep the effective batch), lower lm.max_seq_len, keep lm.activation_checkpointing on, or use \
                     LoRA with a smaller rank; `--dry-run` prints the memory estimate"
                ))
            } else {
                Err(format!("stage one crashed: {message}"))
            }
        })
    }
}

impl TrainLm<'_> {
    fn train<B: burn::tensor::backend::Backend>(
        &self,
        device: B::Device,
    ) -> Result<crate::train::lm::LmReport, String> {
        use crate::train::lm::train_lm;
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        use burn::backend::Autodiff;
        // burn recomputes cheap (memory-bound) activations in the backward pass instead of keeping them.
        if self.recipe.lm.activation_checkpointing {
            train_lm::<Autodiff<B, BalancedCheckpointing>>(
                self.recipe,
                &device,
                self.stage_dir,
                self.resume,
            )
        } else {
            train_lm::<Autodiff<B>>(self.recipe, &device, self.stage_dir, self.resume)
        }
    }
}

fn rejections_path(output_dir: &Path) -> PathBuf {
    output_dir.join("reports").join("data-rejections.jsonl")
}
