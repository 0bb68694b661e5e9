//! Loading GLM-4-Voice-9B from a Hugging Face directory (`config.json` +
//! `model.safetensors.index.json` + shards, or one `model.safetensors`) and PEFT LoRA adapters
//! (`adapter_config.json` + `adapter_model.safetensors`), by exact tensor name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor, TensorData};
use serde::Deserialize;

use super::config::Glm4Config;
use super::model::{
    Block, ChatGlmModel, Embedding, Encoder, Linear, LoraAdapter, Mlp, RmsNorm, SelfAttention,
    Transformer, WordEmbeddings,
};
use crate::checkpoint::tensors::{TensorError, TensorSource, TensorStore};
use crate::models::params::named_param;
use crate::rng::Rng;

/// Tensors a real checkpoint may carry that the model does not use.
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_pos_emb.inv_freq")
}

/// The shard files of a model directory: from `model.safetensors.index.json`, else the single
/// `model.safetensors`.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        #[derive(Deserialize)]
        struct Index {
            weight_map: std::collections::BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(&index)
            .map_err(|e| format!("cannot read {}: {e}", index.display()))?;
        let parsed: Index =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
        let files: BTreeSet<&String> = parsed.weight_map.values().collect();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(format!(
                "shard {} listed in {} is missing",
                missing.display(),
                index.display()
            ));
        }
        return Ok(paths);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(format!(
        "{}: no model.safetensors.index.json or model.safetensors",
        dir.display()
    ))
}

/// Where `build` takes each tensor from.
#[derive(Clone, Copy)]
enum Weights<'a> {
    Checkpoint(&'a dyn TensorSource),
    /// Drawn on the device (norm weights 1, biases 0, matrices uniform with variance 1 / fan-in):
    /// the real shapes without a checkpoint, for benchmarks.
    Random,
    /// Checked against the checkpoint's headers only; every tensor is an empty placeholder, so
    /// the model built is only good for dropping ([`check_checkpoint`]).
    Headers(&'a TensorStore),
}

struct Reader<'a, B: Backend> {
    weights: Weights<'a>,
    device: B::Device,
    /// Parameters created in fp32 whatever the compute dtype: the ones training will update
    /// (master weights), so a checkpoint's fp32 values are not rounded on the way in.
    keep_fp32: &'a dyn Fn(&str) -> bool,
}

impl<B: Backend> Reader<'_, B> {
    fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, TensorError> {
        match self.weights {
            Weights::Checkpoint(source) => {
                let data = TensorData::new(source.f32(name, &shape)?, shape);
                Ok(if (self.keep_fp32)(name) {
                    Tensor::from_data(data, (&self.device, DType::F32))
                } else {
                    Tensor::from_data(data, &self.device)
                })
            }
            Weights::Headers(store) => {
                store.check(name, &shape)?;
                Ok(Tensor::empty([0; D], &self.device))
            }
            Weights::Random if name.ends_with("layernorm.weight") => {
                Ok(Tensor::ones(shape, &self.device))
            }
            Weights::Random if name.ends_with("bias") => Ok(Tensor::zeros(shape, &self.device)),
            Weights::Random => {
                let fan_in = shape[D - 1] as f64;
                let bound = (3.0 / fan_in).sqrt();
                Ok(Tensor::random(
                    shape,
                    Distribution::Uniform(-bound, bound),
                    &self.device,
                ))
            }
        }
    }

    fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<B, D>>, TensorError> {
        Ok(named_param(name, self.tensor(name, shape)?))
    }

    fn linear(
        &self,
        name: &str,
        input: usize,
        output: usize,
        bias: bool,
    ) -> Result<Linear<B>, TensorError> {
        Ok(Linear {
            weight: self.param(&format!("{name}.weight"), [output, input])?,
            bias: if bias {
                Some(self.param(&format!("{name}.bias"), [output])?)
            } else {
                None
            },
            lora: None,
        })
    }

    fn norm(&self, name: &str, c: &Glm4Config) -> Result<RmsNorm<B>, TensorError> {
        Ok(RmsNorm {
            weight: self.param(&format!("{name}.weight"), [c.hidden_size])?,
            eps: c.layernorm_epsilon,
        })
    }
}

/// Builds the model from named tensors of `c`'s shapes; those `keep_fp32` names stay fp32.
pub fn build<B: Backend>(
    source: &dyn TensorSource,
    c: &Glm4Config,
    device: &B::Device,
    keep_fp32: &dyn Fn(&str) -> bool,
) -> Result<ChatGlmModel<B>, TensorError> {
    build_from(Weights::Checkpoint(source), c, device, keep_fp32)
}

/// A model of `c`'s shapes with random weights drawn on the device (seed with `B::seed`).
pub fn build_random<B: Backend>(c: &Glm4Config, device: &B::Device) -> ChatGlmModel<B> {
    build_from(Weights::Random, c, device, &|_| false).expect("random weights are never missing")
}

fn build_from<B: Backend>(
    weights: Weights<'_>,
    c: &Glm4Config,
    device: &B::Device,
    keep_fp32: &dyn Fn(&str) -> bool,
) -> Result<ChatGlmModel<B>, TensorError> {
    let r = Reader::<B> {
        weights,
        device: device.clone(),
        keep_fp32,
    };
    let shape = |name: &str| c.linear_shape(name).expect("known layer");
    let layers = (0..c.num_layers)
        .map(|n| {
            let p = |s: &str| format!("transformer.encoder.layers.{n}.{s}");
            let (qkv_in, qkv_out) = shape("query_key_value");
            let (dense_in, dense_out) = shape("dense");
            let (up_in, up_out) = shape("dense_h_to_4h");
            let (down_in, down_out) = shape("dense_4h_to_h");
            Ok(Block {
                input_layernorm: r.norm(&p("input_layernorm"), c)?,
                self_attention: SelfAttention {
                    query_key_value: r.linear(
                        &p("self_attention.query_key_value"),
                        qkv_in,
                        qkv_out,
                        c.add_qkv_bias,
                    )?,
                    dense: r.linear(
                        &p("self_attention.dense"),
                        dense_in,
                        dense_out,
                        c.add_bias_linear,
                    )?,
                    heads: c.num_attention_heads,
                    groups: c.kv_groups(),
                    head_dim: c.kv_channels,
                    rope_base: 10_000.0 * c.rope_ratio,
                },
                post_attention_layernorm: r.norm(&p("post_attention_layernorm"), c)?,
                mlp: Mlp {
                    dense_h_to_4h: r.linear(
                        &p("mlp.dense_h_to_4h"),
                        up_in,
                        up_out,
                        c.add_bias_linear,
                    )?,
                    dense_4h_to_h: r.linear(
                        &p("mlp.dense_4h_to_h"),
                        down_in,
                        down_out,
                        c.add_bias_linear,
                    )?,
                },
            })
        })
        .collect::<Result<Vec<_>, TensorError>>()?;
    Ok(ChatGlmModel {
        transformer: Transformer {
            embedding: Embedding {
                word_embeddings: WordEmbeddings {
                    weight: r.param(
                        "transformer.embedding.word_embeddings.weight",
                        [c.padded_vocab_size, c.hidden_size],
                    )?,
                },
            },
            encoder: Encoder {
                layers,
                final_layernorm: r.norm("transformer.encoder.final_layernorm", c)?,
            },
            output_layer: r.linear(
                "transformer.output_layer",
                c.hidden_size,
                c.padded_vocab_size,
                false,
            )?,
        },
    })
}

/// Loads GLM-4-Voice-9B (or a model of its architecture) from a Hugging Face directory, in the
/// device's compute dtype.
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(ChatGlmModel<B>, Glm4Config), String> {
    load_model_keeping_fp32(dir, device, &|_| false)
}

/// Like [`load_model`], with the parameters `keep_fp32` names in fp32 (the ones full
/// fine-tuning trains: its master weights).
pub fn load_model_keeping_fp32<B: Backend>(
    dir: &Path,
    device: &B::Device,
    keep_fp32: &dyn Fn(&str) -> bool,
) -> Result<(ChatGlmModel<B>, Glm4Config), String> {
    let config = Glm4Config::from_file(&dir.join("config.json")).map_err(|e| e.to_string())?;
    let store = TensorStore::open(&shard_files(dir)?).map_err(|e| e.to_string())?;
    let model = build::<B>(&store, &config, device, keep_fp32).map_err(|e| e.to_string())?;
    refuse_unused(dir, &config, &store)?;
    Ok((model, config))
}

/// Checks a Hugging Face model directory against its config.json from the headers alone, in
/// seconds at any size: every tensor present with its shape and a float dtype, no shard
/// truncated, nothing the config has no place for.
pub fn check_checkpoint(dir: &Path) -> Result<(), String> {
    let config = Glm4Config::from_file(&dir.join("config.json")).map_err(|e| e.to_string())?;
    let store = TensorStore::open(&shard_files(dir)?).map_err(|e| e.to_string())?;
    type Cpu = burn::backend::NdArray<f32>;
    build_from::<Cpu>(
        Weights::Headers(&store),
        &config,
        &Default::default(),
        &|_| false,
    )
    .map_err(|e| e.to_string())?;
    refuse_unused(dir, &config, &store)
}

/// After a build from `store`: an error naming the tensors the model did not take.
fn refuse_unused(dir: &Path, config: &Glm4Config, store: &TensorStore) -> Result<(), String> {
    let extra: Vec<String> = store
        .unused()
        .into_iter()
        .filter(|n| !ignorable(n))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(unexpected_tensors(dir, config, &extra))
    }
}

/// Why a checkpoint holds tensors the config's model has no place for. Training on would
/// silently drop them (a 2-layer checkpoint trained and exported as 1 layer), so it is an error.
fn unexpected_tensors(dir: &Path, config: &Glm4Config, extra: &[String]) -> String {
    let mut names = extra.to_vec();
    names.sort();
    let shown = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let more = names.len().saturating_sub(3);
    let layers_in_checkpoint = names
        .iter()
        .filter_map(|n| n.strip_prefix("transformer.encoder.layers."))
        .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
        .max()
        .map(|last| last + 1);
    let hint = match layers_in_checkpoint {
        Some(layers) if layers > config.num_layers => format!(
            ": the checkpoint has at least {layers} layers but config.json says num_layers = {}",
            config.num_layers
        ),
        _ => ": config.json does not describe this checkpoint".to_string(),
    };
    format!(
        "{}: {} tensors have no place in the model config.json describes ({shown}{}){hint}",
        dir.display(),
        names.len(),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
    )
}

/// A PEFT `adapter_config.json` (the keys arp-train reads; others are ignored).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub peft_type: Option<String>,
}

/// PEFT's name for a LoRA matrix of the layer `module` (e.g.
/// `transformer.encoder.layers.0.self_attention.query_key_value`).
pub fn peft_name(module: &str, matrix: &str) -> String {
    format!("base_model.model.{module}.{matrix}.weight")
}

/// Visits every linear layer a LoRA target names, with its module path.
pub fn for_each_target<B: Backend>(
    model: &mut ChatGlmModel<B>,
    targets: &[String],
    mut visit: impl FnMut(&str, &mut Linear<B>) -> Result<(), String>,
) -> Result<(), String> {
    for (n, layer) in model.transformer.encoder.layers.iter_mut().enumerate() {
        let attention = &mut layer.self_attention;
        let mlp = &mut layer.mlp;
        let slots: [(&str, &mut Linear<B>); 4] = [
            (
                "self_attention.query_key_value",
                &mut attention.query_key_value,
            ),
            ("self_attention.dense", &mut attention.dense),
            ("mlp.dense_h_to_4h", &mut mlp.dense_h_to_4h),
            ("mlp.dense_4h_to_h", &mut mlp.dense_4h_to_h),
        ];
        for (path, linear) in slots {
            let leaf = path.rsplit('.').next().expect("non-empty path");
            if targets.iter().any(|t| t == leaf) {
                visit(&format!("transformer.encoder.layers.{n}.{path}"), linear)?;
            }
        }
    }
    Ok(())
}

/// Attaches a PEFT adapter directory to `model` (in fp32, as PEFT keeps adapters).
pub fn load_adapter<B: Backend>(
    model: &mut ChatGlmModel<B>,
    dir: &Path,
    device: &B::Device,
) -> Result<AdapterConfig, String> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config: AdapterConfig =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    if config.peft_type.as_deref().is_some_and(|t| t != "LORA") {
        return Err(format!(
            "{}: peft_type {:?} is not supported (LORA only)",
            config_path.display(),
            config.peft_type
        ));
    }
    let store =
        TensorStore::open(&[dir.join("adapter_model.safetensors")]).map_err(|e| e.to_string())?;
    let r = config.r;
    for_each_target(model, &config.target_modules, |module, linear| {
        let (input, output) = linear.shape();
        let read = |matrix: &str, shape: [usize; 2]| -> Result<Tensor<B, 2>, String> {
            let values = store
                .f32(&peft_name(module, matrix), &shape)
                .map_err(|e| e.to_string())?;
            Ok(Tensor::from_data(
                TensorData::new(values, shape),
                (device, DType::F32),
            ))
        };
        linear.lora = Some(LoraAdapter::new(
            module,
            read("lora_A", [r, input])?,
            read("lora_B", [output, r])?,
            config.lora_alpha,
            config.lora_dropout,
        ));
        Ok(())
    })?;
    let extra = store.unused();
    if !extra.is_empty() {
        return Err(format!(
            "{}: tensors for layers the adapter config does not target: {}",
            dir.display(),
            extra.join(", ")
        ));
    }
    Ok(config)
}

/// Adds fresh LoRA adapters (PEFT's initialization: A Kaiming-uniform, B zero, so training
/// starts from the base model) on `targets`, in fp32. A is drawn on the host from `seed`, so
/// every backend (CPU, wgpu, CUDA) starts from the same adapter; device RNGs differ per backend.
pub fn add_lora<B: Backend>(
    model: &mut ChatGlmModel<B>,
    targets: &[String],
    rank: usize,
    alpha: f64,
    dropout: f64,
    seed: u64,
    device: &B::Device,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    for_each_target(model, targets, |module, linear| {
        let (input, output) = linear.shape();
        let bound = 1.0 / (input as f64).sqrt();
        let values: Vec<f32> = (0..rank * input)
            .map(|_| rng.symmetric(bound) as f32)
            .collect();
        let a = Tensor::from_data(TensorData::new(values, [rank, input]), (device, DType::F32));
        let b = Tensor::zeros([output, rank], (device, DType::F32));
        linear.lora = Some(LoraAdapter::new(module, a, b, alpha, dropout));
        Ok(())
    })
}
