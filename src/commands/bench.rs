//! `arp-train bench --recipe R`: training-step throughput of stage one (the recipe's LoRA or
//! full fine-tuning, dtype, sequence length, batch and activation checkpointing) and stage two
//! (flow and vocoder, fp32 as the trainer runs them) on random weights of the recipe's model
//! shapes. Writes a table and, with `--json`, the file tools/bench/bench_reference.py compares with.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::Exit;
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::bench::report::{table, BenchReport};
use crate::bench::{decoder, flops, lm, memory, BenchSettings, Measurement};
use crate::models::decoder::config::DecoderModelConfig;
use crate::models::glm4::config::Glm4Config;
use crate::recipe::{LmConfig, PathCheck, Recipe};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Recipe giving the model shapes and training settings (no data or weights are read).
    #[arg(long, value_name = "FILE")]
    pub recipe: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Stages to time, comma-separated: lm, flow, vocoder.
    #[arg(long, default_value = "lm,flow,vocoder")]
    pub stages: String,
    /// Timed steps per stage.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first (kernel compilation, autotuning).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Stage one: tokens per sequence (default: the recipe's lm.max_seq_len).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Stage one: sequences per step (default: the recipe's lm.batch_size).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Stage one: build only this many transformer layers (when all of them do not fit).
    #[arg(long)]
    pub layers: Option<usize>,
    /// GLM-4 config.json for the stage-one shape (default: the recipe's lm.base_model/config.json).
    #[arg(long, value_name = "FILE")]
    pub lm_config: Option<PathBuf>,
    /// Decoder config.yaml for stage two (default: the recipe's decoder.config).
    #[arg(long, value_name = "FILE")]
    pub decoder_config: Option<PathBuf>,
    /// Dense 16-bit peak of the device in TFLOP/s for MFU (default: from the GPU's name).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Write the results (and the shapes the PyTorch baseline needs) to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Lm,
    Flow,
    Vocoder,
}

fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let stage = match name {
            "lm" => Stage::Lm,
            "flow" => Stage::Flow,
            "vocoder" | "hift" => Stage::Vocoder,
            other => {
                return Err(format!(
                    "--stages: unknown stage {other:?}; choose from lm, flow, vocoder"
                ))
            }
        };
        if !out.contains(&stage) {
            out.push(stage);
        }
    }
    if out.is_empty() {
        return Err("--stages names no stage; choose from lm, flow, vocoder".into());
    }
    Ok(out)
}

pub fn bench_command(args: BenchArgs, device: Option<DeviceSpec>) -> Exit {
    match run(args, device) {
        Ok(()) => Exit::Ok,
        Err(exit) => exit,
    }
}

fn lm_config_path(args: &BenchArgs, recipe: &Recipe) -> Result<PathBuf, Exit> {
    if let Some(path) = &args.lm_config {
        return Ok(path.clone());
    }
    let base = recipe.lm.base_model.as_ref().ok_or_else(|| {
        Exit::Usage(format!(
            "{}: lm.base_model is not set; pass --lm-config FILE (a GLM-4 config.json)",
            recipe.file.display()
        ))
    })?;
    let path = base.join("config.json");
    if !path.is_file() {
        return Err(Exit::Usage(format!(
            "{} does not exist (the recipe's lm.base_model); pass --lm-config {} (the released GLM-4-Voice-9B's, in the checkout) to bench its shape without the weights",
            path.display(),
            crate::models::released::GLM4_VOICE_9B_CONFIG
        )));
    }
    Ok(path)
}

fn decoder_config_path(args: &BenchArgs, recipe: &Recipe) -> Result<PathBuf, Exit> {
    let path = args
        .decoder_config
        .clone()
        .or_else(|| recipe.decoder.config.clone())
        .ok_or_else(|| {
            Exit::Usage(format!(
                "{}: decoder.config is not set; pass --decoder-config FILE (a GLM-4-Voice-Decoder config.yaml)",
                recipe.file.display()
            ))
        })?;
    if !path.is_file() {
        return Err(Exit::Usage(format!(
            "{} does not exist; pass --decoder-config FILE ({} is the released GLM-4-Voice-Decoder's, in the checkout)",
            path.display(),
            crate::models::released::DECODER_CONFIG
        )));
    }
    Ok(path)
}

fn run(args: BenchArgs, device_flag: Option<DeviceSpec>) -> Result<(), Exit> {
    let stages = parse_stages(&args.stages).map_err(Exit::Usage)?;
    if args.steps == 0 {
        return Err(Exit::Usage("--steps must be at least 1".into()));
    }
    let loaded = Recipe::load(&args.recipe, &args.overrides, PathCheck::Lenient)?;
    let recipe = loaded.recipe;
    let lm_config = if stages.contains(&Stage::Lm) {
        let path = lm_config_path(&args, &recipe)?;
        Some(Glm4Config::from_file(&path).map_err(|e| Exit::Usage(e.to_string()))?)
    } else {
        None
    };
    let decoder_config = if stages.iter().any(|s| *s != Stage::Lm) {
        let path = decoder_config_path(&args, &recipe)?;
        Some(DecoderModelConfig::from_file(&path).map_err(Exit::from)?)
    } else {
        None
    };
    let config_layers = lm_config.as_ref().map_or(0, |c| c.num_layers);
    let layers = args.layers.unwrap_or(config_layers);
    if lm_config.is_some() && (layers == 0 || layers > config_layers) {
        return Err(Exit::Usage(format!(
            "--layers {layers}: the config has {config_layers} layers; choose 1 to {config_layers}"
        )));
    }
    let settings = BenchSettings {
        warmup: args.warmup,
        steps: args.steps,
        seq_len: args.seq_len.unwrap_or(recipe.lm.max_seq_len),
        batch_size: args.batch.unwrap_or(recipe.lm.batch_size),
        layers,
        seed: recipe.seed,
    };
    if settings.seq_len < 2 || settings.batch_size == 0 {
        return Err(Exit::Usage(
            "the sequence length must be at least 2 and the batch at least 1".into(),
        ));
    }
    let requested = device_flag.unwrap_or(recipe.device);
    let (device, dtype) =
        backend::resolve(requested, recipe.dtype).map_err(|e| Exit::Usage(e.to_string()))?;
    let gpu = matches!(device, DeviceSpec::Cuda(_));
    let named_peak = if gpu { memory::gpu_peak_tflops() } else { None };
    let peak_tflops = args.peak_tflops.or(named_peak.as_ref().map(|(_, p)| *p));
    println!(
        "bench: {} on {device} (stage one {dtype}, stage two fp32); {} warm-up + {} timed steps per stage",
        args.recipe.display(),
        settings.warmup,
        settings.steps
    );

    let mut measured = Vec::new();
    for stage in &stages {
        let result = match stage {
            Stage::Lm => {
                let c = lm_config.as_ref().expect("read above");
                let flops = flops::lm_step_flops(
                    c,
                    &recipe.lm,
                    layers,
                    settings.batch_size,
                    settings.seq_len,
                );
                println!(
                    "stage one: {} ({} of {} layers), {:?}, batch {} x {} tokens, activation checkpointing {}",
                    c.summary(),
                    layers,
                    c.num_layers,
                    recipe.lm.finetune,
                    settings.batch_size,
                    settings.seq_len,
                    if recipe.lm.activation_checkpointing { "on" } else { "off" }
                );
                let task = LmTask {
                    config: c,
                    lm: &recipe.lm,
                    settings: &settings,
                    flops,
                    peak_tflops,
                    gpu,
                    shape: lm::shape_json(c, &recipe.lm, &settings, &dtype.to_string()),
                };
                backend::run_on(device, dtype, task)
            }
            Stage::Flow | Stage::Vocoder => {
                let task = DecoderTask {
                    config: decoder_config.as_ref().expect("read above"),
                    recipe: &recipe,
                    settings: &settings,
                    vocoder: *stage == Stage::Vocoder,
                    gpu,
                };
                backend::run_on(device, Dtype::Fp32, task)
            }
        };
        match result {
            Ok(Ok(m)) => measured.push(m),
            Ok(Err(e)) => return Err(Exit::Failed(format!("bench {stage:?}: {e}"))),
            Err(e) => return Err(Exit::Usage(e.to_string())),
        }
    }
    let report = BenchReport {
        tool: "arp-train".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        device: device.to_string(),
        device_name: named_peak.map(|(name, _)| name),
        peak_tflops,
        recipe: args.recipe.display().to_string(),
        settings,
        stages: measured,
    };
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        write_json(path, &report).map_err(Exit::Failed)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn write_json(path: &Path, report: &BenchReport) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    crate::atomic::write(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

struct LmTask<'a> {
    config: &'a Glm4Config,
    lm: &'a LmConfig,
    settings: &'a BenchSettings,
    flops: f64,
    peak_tflops: Option<f64>,
    gpu: bool,
    shape: serde_json::Value,
}

impl BackendTask for LmTask<'_> {
    type Output = Result<Measurement, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        use burn::backend::Autodiff;
        backend::catch_crash(
            "the stage-one bench",
            "Pass --layers N to build fewer layers, or lower --seq-len / --batch",
            move || {
                let task = self;
                lm::bench_lm::<Autodiff<B>>(
                    task.config,
                    task.lm,
                    task.settings,
                    task.flops,
                    task.peak_tflops,
                    task.gpu,
                    task.shape,
                    &device,
                )
            },
        )
    }
}

struct DecoderTask<'a> {
    config: &'a DecoderModelConfig,
    recipe: &'a Recipe,
    settings: &'a BenchSettings,
    vocoder: bool,
    gpu: bool,
}

impl BackendTask for DecoderTask<'_> {
    type Output = Result<Measurement, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        use burn::backend::Autodiff;
        backend::catch_crash(
            "the stage-two bench",
            "Lower decoder.flow.max_frames_per_batch / decoder.hift.max_frames_per_batch with --set",
            || {
                if self.vocoder {
                    decoder::bench_vocoder::<Autodiff<B>>(
                        self.config,
                        self.recipe,
                        self.settings,
                        self.gpu,
                        &device,
                    )
                } else {
                    decoder::bench_flow::<Autodiff<B>>(
                        self.config,
                        self.recipe,
                        self.settings,
                        self.gpu,
                        &device,
                    )
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lists() {
        assert_eq!(
            parse_stages("lm, vocoder,lm").unwrap(),
            vec![Stage::Lm, Stage::Vocoder]
        );
        assert!(parse_stages("lm,decoder").unwrap_err().contains("decoder"));
        assert!(parse_stages("").is_err());
    }
}
