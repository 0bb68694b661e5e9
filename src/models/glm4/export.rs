//! Writing stage-one results in the layouts the Python stack loads:
//! - a PEFT adapter (`adapter_model.safetensors` with PEFT's tensor names, `adapter_config.json`),
//!   so `peft.PeftModel.from_pretrained(base, dir)` loads it;
//! - a merged model in the original layout: `model-0000k-of-0000N.safetensors` shards of at most
//!   `max_shard_bytes`, `model.safetensors.index.json`, bf16 by default, with every other file of
//!   the source directory (config, tokenizer, remote code) copied beside it.
//! Both are written into a temporary directory that is renamed into place when complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use safetensors::tensor::Dtype;

use super::load::{for_each_target, peft_name};
use super::model::ChatGlmModel;
use crate::models::padded_matmul::padded_matmul;
use crate::models::params::PathStack;

/// Hugging Face's default shard limit.
pub const DEFAULT_MAX_SHARD_BYTES: usize = 5_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExportDtype {
    Bf16,
    F32,
}

/// Folds every LoRA adapter into its base weight: W + (alpha / r) B A.
pub fn merge_lora<B: Backend>(mut model: ChatGlmModel<B>) -> ChatGlmModel<B> {
    let all: Vec<String> = crate::recipe::LORA_TARGETS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for_each_target(&mut model, &all, |_, linear| {
        if let Some(lora) = linear.lora.take() {
            // The adapter is fp32: add in fp32, store in the base weight's dtype.
            let delta = padded_matmul(lora.lora_b.val(), lora.lora_a.val()) * lora.scale;
            let weight = linear.weight.val();
            let dtype = weight.dtype();
            let merged = (weight.cast(DType::F32) + delta.cast(DType::F32)).cast(dtype);
            linear.weight = Param::from_tensor(merged.detach());
        }
        Ok(())
    })
    .expect("merging cannot fail");
    model
}

fn to_bytes(values: &[f32], dtype: ExportDtype) -> Vec<u8> {
    match dtype {
        ExportDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ExportDtype::Bf16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

fn st_dtype(dtype: ExportDtype) -> Dtype {
    match dtype {
        ExportDtype::F32 => Dtype::F32,
        ExportDtype::Bf16 => Dtype::BF16,
    }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes `tensors` (name, shape, bytes) as one safetensors file.
fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    dtype: Dtype,
) -> std::io::Result<()> {
    std::fs::write(
        path,
        crate::checkpoint::named::serialize(tensors, dtype, "pt")?,
    )
}

/// Streams parameters in field order (= checkpoint order) into shards.
struct ShardWriter {
    path: PathStack,
    dtype: ExportDtype,
    max_bytes: usize,
    current: Vec<(String, Vec<usize>, Vec<u8>)>,
    current_bytes: usize,
    shards: Vec<Vec<(String, Vec<usize>, Vec<u8>)>>,
    skip: fn(&str) -> bool,
}

impl<B: Backend> ModuleVisitor<B> for ShardWriter {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = self.path.name();
        let tensor = param.val();
        if (self.skip)(&name) {
            return;
        }
        let values = crate::models::to_host_f32(tensor.clone());
        let bytes = to_bytes(&values, self.dtype);
        if !self.current.is_empty() && self.current_bytes + bytes.len() > self.max_bytes {
            self.shards.push(std::mem::take(&mut self.current));
            self.current_bytes = 0;
        }
        self.current_bytes += bytes.len();
        self.current.push((name, tensor.dims().to_vec(), bytes));
    }
}

/// Writes the merged model (LoRA folded in) in the original sharded layout, copying the source
/// directory's other files (config, tokenizer, remote code) beside it.
pub fn save_merged<B: Backend>(
    model: ChatGlmModel<B>,
    source_dir: &Path,
    out: &Path,
    dtype: ExportDtype,
    max_shard_bytes: usize,
) -> std::io::Result<()> {
    save_weights(&merge_lora(model), source_dir, out, dtype, max_shard_bytes)
}

/// Writes the model's base weights (LoRA adapters left out) in the original sharded layout.
pub fn save_weights<B: Backend>(
    model: &ChatGlmModel<B>,
    source_dir: &Path,
    out: &Path,
    dtype: ExportDtype,
    max_shard_bytes: usize,
) -> std::io::Result<()> {
    crate::atomic::write_dir(out, |tmp| {
        write_shards(model, source_dir, tmp, dtype, max_shard_bytes)
    })
}

/// The shards, the index and the side files of `model`, into the directory `dir`.
fn write_shards<B: Backend>(
    model: &ChatGlmModel<B>,
    source_dir: &Path,
    dir: &Path,
    dtype: ExportDtype,
    max_shard_bytes: usize,
) -> std::io::Result<()> {
    let mut writer = ShardWriter {
        path: PathStack::default(),
        dtype,
        max_bytes: max_shard_bytes,
        current: Vec::new(),
        current_bytes: 0,
        shards: Vec::new(),
        skip: |name| name.contains(".lora."),
    };
    model.visit(&mut writer);
    if !writer.current.is_empty() {
        let last = std::mem::take(&mut writer.current);
        writer.shards.push(last);
    }
    let count = writer.shards.len();
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for (k, shard) in writer.shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, count);
        for (name, _, bytes) in shard {
            weight_map.insert(name.clone(), file.clone());
            total += bytes.len();
        }
        write_safetensors(&dir.join(&file), shard, st_dtype(dtype))?;
    }
    let index =
        serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index)?,
    )?;
    copy_side_files(source_dir, dir, dtype)
}

/// Copies everything but weights from the source model directory; config.json's `torch_dtype`
/// follows the export dtype.
fn copy_side_files(source: &Path, dest: &Path, dtype: ExportDtype) -> std::io::Result<()> {
    for entry in std::fs::read_dir(source)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_file()
            || name.ends_with(".safetensors")
            || name == "model.safetensors.index.json"
            || name.ends_with(".bin")
        {
            continue;
        }
        if name == "config.json" {
            let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            config["torch_dtype"] = serde_json::json!(match dtype {
                ExportDtype::Bf16 => "bfloat16",
                ExportDtype::F32 => "float32",
            });
            std::fs::write(dest.join(&name), serde_json::to_vec_pretty(&config)?)?;
        } else {
            std::fs::copy(&path, dest.join(&name))?;
        }
    }
    Ok(())
}

/// What `save_adapter` needs to describe the adapter.
pub struct AdapterInfo {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
    pub base_model: PathBuf,
}

/// Writes the model's LoRA adapters as a PEFT adapter directory.
pub fn save_adapter<B: Backend>(
    model: &ChatGlmModel<B>,
    info: &AdapterInfo,
    out: &Path,
) -> std::io::Result<()> {
    let mut tensors = Vec::new();
    for (n, layer) in model.transformer.encoder.layers.iter().enumerate() {
        let slots = [
            (
                "self_attention.query_key_value",
                &layer.self_attention.query_key_value,
            ),
            ("self_attention.dense", &layer.self_attention.dense),
            ("mlp.dense_h_to_4h", &layer.mlp.dense_h_to_4h),
            ("mlp.dense_4h_to_h", &layer.mlp.dense_4h_to_h),
        ];
        for (path, linear) in slots {
            let Some(lora) = &linear.lora else { continue };
            let module = format!("transformer.encoder.layers.{n}.{path}");
            for (matrix, tensor) in [("lora_A", lora.lora_a.val()), ("lora_B", lora.lora_b.val())] {
                let values = crate::models::to_host_f32(tensor.clone());
                tensors.push((
                    peft_name(&module, matrix),
                    tensor.dims().to_vec(),
                    to_bytes(&values, ExportDtype::F32),
                ));
            }
        }
    }
    if tensors.is_empty() {
        return Err(io_error("the model has no LoRA adapters to save"));
    }
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": info.base_model.display().to_string(),
        "r": info.rank,
        "lora_alpha": info.alpha,
        "lora_dropout": info.dropout,
        "target_modules": info.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "use_rslora": false,
        "use_dora": false,
        "revision": null
    });
    crate::atomic::write_dir(out, |tmp| {
        write_safetensors(&tmp.join("adapter_model.safetensors"), &tensors, Dtype::F32)?;
        std::fs::write(
            tmp.join("adapter_config.json"),
            serde_json::to_vec_pretty(&config)?,
        )
    })
}
