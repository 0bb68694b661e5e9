//! A GLM-4-Voice-Decoder directory: `config.yaml` (HyperPyYAML, the flow and HiFT sizes), and
//! the weights by their reference state-dict names, `flow.safetensors` and `hift.safetensors`
//! (`tools/data/decoder_convert.py` converts to and from the `flow.pt` / `hift.pt` users download).

pub mod config;
pub mod flow;
pub mod hift;
pub mod synthesis;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::checkpoint::named::save_named;
use crate::checkpoint::tensors::TensorStore;
use crate::models::decoder::config::DecoderModelConfig;
use crate::models::decoder::flow::Flow;
use crate::models::decoder::hift::Hift;
use crate::models::layers::Builder;

pub const FLOW_FILE: &str = "flow.safetensors";
pub const HIFT_FILE: &str = "hift.safetensors";
pub const CONFIG_FILE: &str = "config.yaml";

/// A model with the names it was built with (its save names).
pub struct Named<M> {
    pub model: M,
    pub names: Vec<String>,
}

pub fn read_config(path: &Path) -> Result<DecoderModelConfig, String> {
    DecoderModelConfig::from_file(path).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
        lines.join("\n")
    })
}

fn weights_file(dir: &Path, file: &str) -> Result<PathBuf, String> {
    let path = dir.join(file);
    if path.is_file() {
        return Ok(path);
    }
    let pt = dir.join(file.replace(".safetensors", ".pt"));
    if pt.is_file() {
        return Err(format!(
            "{} holds {} but no {file}: convert it once with `python tools/data/decoder_convert.py to-safetensors {}` (arp-train does not read pickled PyTorch files)",
            dir.display(),
            pt.file_name().unwrap_or_default().to_string_lossy(),
            dir.display()
        ));
    }
    Err(format!("{} is missing from {}", file, dir.display()))
}

pub fn load_flow<B: Backend>(
    dir: &Path,
    config: &DecoderModelConfig,
    device: &B::Device,
) -> Result<Named<Flow<B>>, String> {
    let path = weights_file(dir, FLOW_FILE)?;
    let store = TensorStore::open(std::slice::from_ref(&path)).map_err(|e| e.to_string())?;
    let builder = Builder::load(&store, device);
    let model =
        Flow::new(&builder, &config.flow).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Named {
        model,
        names: builder.into_names(),
    })
}

pub fn load_hift<B: Backend>(
    dir: &Path,
    config: &DecoderModelConfig,
    device: &B::Device,
) -> Result<Named<Hift<B>>, String> {
    let path = weights_file(dir, HIFT_FILE)?;
    let store = TensorStore::open(std::slice::from_ref(&path)).map_err(|e| e.to_string())?;
    let builder = Builder::load(&store, device);
    let model =
        Hift::new(&builder, &config.hift).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Named {
        model,
        names: builder.into_names(),
    })
}

/// Checks a decoder directory against `config` from the weight files' headers alone: both
/// files present, every tensor there with its shape and a float dtype, none truncated. What
/// loading would reject, found in milliseconds (a frozen decoder is packaged without loading).
pub fn check_dir(dir: &Path, config: &DecoderModelConfig) -> Result<(), String> {
    type Cpu = burn::backend::NdArray<f32>;
    let device = Default::default();
    for file in [FLOW_FILE, HIFT_FILE] {
        let path = weights_file(dir, file)?;
        let store = TensorStore::open(std::slice::from_ref(&path)).map_err(|e| e.to_string())?;
        let builder = Builder::<Cpu>::headers(&store, &device);
        let built = if file == FLOW_FILE {
            Flow::new(&builder, &config.flow).map(drop)
        } else {
            Hift::new(&builder, &config.hift).map(drop)
        };
        built.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Fresh weights with the reference's initializations, drawn from `seed`.
pub fn fresh_flow<B: Backend>(
    config: &DecoderModelConfig,
    seed: u64,
    device: &B::Device,
) -> Named<Flow<B>> {
    let builder = Builder::random(seed, device);
    let model = Flow::new(&builder, &config.flow).expect("random weights cannot be missing");
    Named {
        model,
        names: builder.into_names(),
    }
}

pub fn fresh_hift<B: Backend>(
    config: &DecoderModelConfig,
    seed: u64,
    device: &B::Device,
) -> Named<Hift<B>> {
    let builder = Builder::random(seed, device);
    let model = Hift::new(&builder, &config.hift).expect("random weights cannot be missing");
    Named {
        model,
        names: builder.into_names(),
    }
}

/// Writes a complete decoder directory atomically: the config file copied as is, and both
/// weight files.
pub fn save_decoder<B: Backend>(
    dir: &Path,
    config_file: &Path,
    flow: &Named<Flow<B>>,
    hift: &Named<Hift<B>>,
) -> std::io::Result<()> {
    crate::atomic::write_dir(dir, |tmp| {
        std::fs::copy(config_file, tmp.join(CONFIG_FILE))?;
        save_named(&flow.model, &flow.names, &tmp.join(FLOW_FILE))?;
        save_named(&hift.model, &hift.names, &tmp.join(HIFT_FILE))
    })
}
