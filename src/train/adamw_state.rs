//! Stage one's AdamW state in a checkpoint: `optimizer.safetensors`, fp32, keyed by parameter
//! name (`{name}.exp_avg`, `{name}.exp_avg_sq`, `{name}.step`, as PyTorch's Adam calls them).
//!
//! burn's own recorder converts every float it loads to the backend's default dtype, so fp32
//! moments saved by a bf16/f16 run would come back rounded (squared gradients below f16's
//! smallest subnormal, 6e-8, would come back as zero). Writing them as named safetensors and
//! creating them in fp32 on load keeps a resumed half-precision run on the uninterrupted run's
//! path, and makes the state readable by anything that reads safetensors.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::record::{AdaptorRecord, AdaptorRecordV1};
use burn::optim::{AdamW, AdamWState, AdaptiveMomentumState, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::tensor::Dtype;

use crate::checkpoint::named::serialize;
use crate::checkpoint::tensors::TensorStore;
use crate::models::params::NamedParam;

/// The file in a checkpoint directory.
pub const FILE: &str = "optimizer.safetensors";
/// What checkpoints written before the fp32 state held: burn's recorder file (`optimizer.bin`).
const LEGACY_STEM: &str = "optimizer";

/// One parameter's AdamW state on the host.
struct Moments {
    step: usize,
    shape: Vec<usize>,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    /// AMSGrad's running maximum, when enabled.
    max_exp_avg_sq: Option<Vec<f32>>,
}

fn moments_of<B: Backend, const D: usize>(state: AdamWState<B, D>) -> Moments {
    let m = state.momentum;
    Moments {
        step: m.time,
        shape: m.moment_1.dims().to_vec(),
        exp_avg: crate::models::to_host_f32(m.moment_1),
        exp_avg_sq: crate::models::to_host_f32(m.moment_2),
        max_exp_avg_sq: m.max_moment_2.map(crate::models::to_host_f32),
    }
}

fn record_moments<B: AutodiffBackend>(record: AdaptorRecord<AdamW, B>) -> Moments {
    let AdaptorRecord::V1(record) = record;
    match record {
        AdaptorRecordV1::Rank0(s) => moments_of(s),
        AdaptorRecordV1::Rank1(s) => moments_of(s),
        AdaptorRecordV1::Rank2(s) => moments_of(s),
        AdaptorRecordV1::Rank3(s) => moments_of(s),
        AdaptorRecordV1::Rank4(s) => moments_of(s),
        AdaptorRecordV1::Rank5(s) => moments_of(s),
        AdaptorRecordV1::Rank6(s) => moments_of(s),
        AdaptorRecordV1::Rank7(s) => moments_of(s),
        AdaptorRecordV1::Rank8(s) => moments_of(s),
    }
}

fn state_of<B: Backend, const D: usize>(m: Moments, device: &B::Device) -> AdamWState<B, D> {
    let shape = m.shape.clone();
    let fp32 = |values: Vec<f32>| {
        Tensor::<B, D>::from_data(TensorData::new(values, shape.clone()), (device, DType::F32))
    };
    AdamWState {
        momentum: AdaptiveMomentumState {
            time: m.step,
            moment_1: fp32(m.exp_avg),
            moment_2: fp32(m.exp_avg_sq),
            max_moment_2: m.max_exp_avg_sq.map(fp32),
        },
    }
}

/// The optimizer record of `m`, its tensors created in fp32 on `device`.
fn record_of<B: AutodiffBackend>(
    m: Moments,
    device: &B::Device,
) -> Result<AdaptorRecord<AdamW, B>, String> {
    type Inner<B> = <B as AutodiffBackend>::InnerBackend;
    Ok(match m.shape.len() {
        1 => AdaptorRecord::from_state::<1>(state_of::<Inner<B>, 1>(m, device)),
        2 => AdaptorRecord::from_state::<2>(state_of::<Inner<B>, 2>(m, device)),
        3 => AdaptorRecord::from_state::<3>(state_of::<Inner<B>, 3>(m, device)),
        4 => AdaptorRecord::from_state::<4>(state_of::<Inner<B>, 4>(m, device)),
        rank => return Err(format!("optimizer state of rank {rank} is not supported")),
    })
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes the AdamW state of `params` (trainable ones with a state) to `path` (not atomic: the
/// checkpoint directory it goes into is).
pub fn save<B, M>(
    optimizer: &OptimizerAdaptor<AdamW, M, B>,
    params: &[NamedParam],
    path: &Path,
) -> std::io::Result<()>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut records = optimizer.to_record();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for p in params {
        let Some(record) = records.remove(&p.id) else {
            continue;
        };
        let m = record_moments(record);
        tensors.push((
            format!("{}.step", p.name),
            vec![],
            f32_bytes(&[m.step as f32]),
        ));
        tensors.push((
            format!("{}.exp_avg", p.name),
            m.shape.clone(),
            f32_bytes(&m.exp_avg),
        ));
        tensors.push((
            format!("{}.exp_avg_sq", p.name),
            m.shape.clone(),
            f32_bytes(&m.exp_avg_sq),
        ));
        if let Some(max) = &m.max_exp_avg_sq {
            tensors.push((
                format!("{}.max_exp_avg_sq", p.name),
                m.shape.clone(),
                f32_bytes(max),
            ));
        }
    }
    if !records.is_empty() {
        return Err(std::io::Error::other(format!(
            "the optimizer holds state for {} parameters the model does not name",
            records.len()
        )));
    }
    std::fs::write(path, serialize(&tensors, Dtype::F32, "arp-train adamw")?)
}

/// Loads the AdamW state saved in checkpoint `dir` into `optimizer`, in fp32. Every trainable
/// parameter must have a state, or none (a checkpoint saved before any step was applied); a
/// state for a parameter this run does not train is an error. Checkpoints written by earlier
/// versions (burn's `optimizer.bin`) load too, their moments converted to fp32.
pub fn load<B, M>(
    optimizer: OptimizerAdaptor<AdamW, M, B>,
    params: &[NamedParam],
    dir: &Path,
    device: &B::Device,
) -> Result<OptimizerAdaptor<AdamW, M, B>, String>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let path = dir.join(FILE);
    if !path.is_file() && dir.join(format!("{LEGACY_STEM}.bin")).is_file() {
        return load_legacy(optimizer, dir, device);
    }
    let store = TensorStore::open(std::slice::from_ref(&path)).map_err(|e| e.to_string())?;
    let trainable: Vec<&NamedParam> = params.iter().filter(|p| p.trainable).collect();
    let with_state = trainable
        .iter()
        .filter(|p| store.contains(&format!("{}.step", p.name)))
        .count();
    if with_state != 0 && with_state != trainable.len() {
        let missing: Vec<&str> = trainable
            .iter()
            .filter(|p| !store.contains(&format!("{}.step", p.name)))
            .map(|p| p.name.as_str())
            .take(3)
            .collect();
        return Err(format!(
            "{}: no optimizer state for {} of the {} trained parameters (first: {}); was the checkpoint written by another recipe?",
            path.display(),
            trainable.len() - with_state,
            trainable.len(),
            missing.join(", ")
        ));
    }
    // burn's record map (a hashbrown map), emptied.
    let mut records = optimizer.to_record();
    records.clear();
    for p in trainable.iter().filter(|_| with_state > 0) {
        let read = |suffix: &str, shape: &[usize]| {
            store
                .f32(&format!("{}.{suffix}", p.name), shape)
                .map_err(|e| e.to_string())
        };
        let name = format!("{}.exp_avg", p.name);
        let shape = store
            .shape(&name)
            .ok_or_else(|| format!("{}: tensor `{name}` is missing", path.display()))?
            .to_vec();
        if shape.iter().product::<usize>() != p.numel {
            return Err(format!(
                "{}: `{name}` has shape {shape:?}, which does not fit the parameter's {} values",
                path.display(),
                p.numel
            ));
        }
        let step = read("step", &[])?[0];
        let max_name = format!("{}.max_exp_avg_sq", p.name);
        let moments = Moments {
            step: step as usize,
            exp_avg: read("exp_avg", &shape)?,
            exp_avg_sq: read("exp_avg_sq", &shape)?,
            max_exp_avg_sq: if store.contains(&max_name) {
                Some(read("max_exp_avg_sq", &shape)?)
            } else {
                None
            },
            shape,
        };
        records.insert(p.id, record_of::<B>(moments, device)?);
    }
    let extra = store.unused();
    if !extra.is_empty() {
        return Err(format!(
            "{}: optimizer state for parameters this run does not train (first: {})",
            path.display(),
            extra[0]
        ));
    }
    Ok(optimizer.load_record(records))
}

/// burn's recorder file, as checkpoints before `optimizer.safetensors` held it.
fn load_legacy<B, M>(
    optimizer: OptimizerAdaptor<AdamW, M, B>,
    dir: &Path,
    device: &B::Device,
) -> Result<OptimizerAdaptor<AdamW, M, B>, String>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let record: <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record =
        BinFileRecorder::<FullPrecisionSettings>::new()
            .load(dir.join(LEGACY_STEM), device)
            .map_err(|e| format!("{}: optimizer state: {e}", dir.display()))?;
    let mut fp32 = optimizer.to_record();
    fp32.clear();
    for (id, r) in record {
        fp32.insert(id, record_of::<B>(record_moments(r), device)?);
    }
    Ok(optimizer.load_record(fp32))
}
