//! Choosing where tensors live: `cpu` (burn-ndarray), `wgpu`, `cuda[:N]`, chosen at run time.
//! Each is a cargo feature; asking for one that was not compiled in, or that has no hardware
//! here, is a clear error rather than a panic.

use std::fmt;
use std::str::FromStr;

use crate::recipe::node::Node;
use crate::recipe::reader::FromNode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA if compiled in and usable, else a wgpu adapter that is a real GPU, else CPU (a
    /// CPU-emulated wgpu adapter such as Mesa's lavapipe is never chosen over burn-ndarray).
    Auto,
    Cpu,
    Wgpu(Option<usize>),
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu(None) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let index: usize = index
                    .parse()
                    .map_err(|_| format!("device index in {s:?} must be a non-negative integer"))?;
                (kind, Some(index))
            }
            None => (s, None),
        };
        match (kind, index) {
            ("auto", None) => Ok(DeviceSpec::Auto),
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("wgpu", index) => Ok(DeviceSpec::Wgpu(index)),
            ("cuda", index) => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
            ("auto" | "cpu", Some(_)) => Err(format!("`{kind}` takes no device index")),
            _ => Err(format!(
                "unknown device {s:?}; choose auto, cpu, wgpu[:N] or cuda[:N]"
            )),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl serde::Serialize for Dtype {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromNode for DeviceSpec {
    fn from_node(node: &Node) -> Result<Self, String> {
        node.as_str()
            .ok_or_else(|| format!("expected a device name, found {}", node.kind()))?
            .parse()
    }
}

/// Floating-point type for model weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// bf16 on GPUs, fp32 on the CPU backend.
    Auto,
    Fp32,
    Bf16,
    Fp16,
}

crate::yaml_enum!(Dtype { "auto" => Dtype::Auto, "fp32" => Dtype::Fp32, "bf16" => Dtype::Bf16, "fp16" => Dtype::Fp16 });

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Dtype::Auto),
            "fp32" => Ok(Dtype::Fp32),
            "bf16" => Ok(Dtype::Bf16),
            "fp16" => Ok(Dtype::Fp16),
            other => Err(format!(
                "unknown dtype {other:?}; choose auto, fp32, bf16 or fp16"
            )),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::Auto => "auto",
            Dtype::Fp32 => "fp32",
            Dtype::Bf16 => "bf16",
            Dtype::Fp16 => "fp16",
        })
    }
}

impl Dtype {
    /// The dtype actually used on `device` (already resolved from `auto`).
    pub fn resolve(self, device: DeviceSpec) -> Dtype {
        match (self, device) {
            // WGSL has no bf16: wgpu computes in fp32.
            (Dtype::Auto, DeviceSpec::Cpu | DeviceSpec::Wgpu(_)) => Dtype::Fp32,
            (Dtype::Auto, _) => Dtype::Bf16,
            (other, _) => other,
        }
    }
}

/// Which backends this binary was built with.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "cpu") {
        out.push("cpu");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("device `{device}` needs the `{feature}` cargo feature, which this binary was built without (built with: {built}); rebuild with `cargo build --release --features {feature}`")]
    NotCompiled {
        device: DeviceSpec,
        feature: &'static str,
        built: String,
    },
    #[error("device `{device}` is not usable on this machine: {reason}")]
    Unavailable { device: DeviceSpec, reason: String },
    #[error("dtype {dtype} is not supported on device `{device}`: {reason}")]
    Dtype {
        dtype: Dtype,
        device: DeviceSpec,
        reason: &'static str,
    },
}

#[cfg_attr(
    all(feature = "cpu", feature = "wgpu", feature = "cuda"),
    allow(dead_code)
)]
fn not_compiled(device: DeviceSpec, feature: &'static str) -> BackendError {
    BackendError::NotCompiled {
        device,
        feature,
        built: compiled_backends().join(", "),
    }
}

/// Runs `probe` and turns a panic inside it (burn's backends panic when a driver or adapter is
/// missing) into an error message, without printing the panic.
#[allow(dead_code)]
fn catch_probe(probe: impl FnOnce() + std::panic::UnwindSafe) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(probe);
    std::panic::set_hook(hook);
    result.map_err(|payload| panic_message(payload.as_ref(), "the backend panicked while starting"))
}

/// The text of a caught panic (`fallback` when it carried none).
pub fn panic_message(payload: &(dyn std::any::Any + Send), fallback: &str) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| fallback.into())
}

/// Runs training work, turning a backend panic into an error: out-of-memory panics get
/// `oom_advice`, anything else says that `what` crashed.
pub fn catch_crash<T>(
    what: &str,
    oom_advice: &str,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let message = panic_message(payload.as_ref(), "the backend panicked");
        let lower = message.to_lowercase();
        if lower.contains("out of memory") || lower.contains("outofmemory") || lower.contains("oom")
        {
            Err(format!(
                "the device ran out of memory ({message}). {oom_advice}"
            ))
        } else {
            Err(format!("{what} crashed: {message}"))
        }
    })
}

/// Checks that `device` can run here: compiled in, hardware present (a tiny tensor round trip),
/// dtype supported. `Auto` resolves to CUDA when usable, else to wgpu on a real GPU, else CPU.
pub fn resolve(device: DeviceSpec, dtype: Dtype) -> Result<(DeviceSpec, Dtype), BackendError> {
    let device = match device {
        DeviceSpec::Auto if probe(DeviceSpec::Cuda(0)).is_ok() => DeviceSpec::Cuda(0),
        DeviceSpec::Auto if auto_wgpu_is_a_gpu() => DeviceSpec::Wgpu(None),
        DeviceSpec::Auto => DeviceSpec::Cpu,
        other => other,
    };
    probe(device)?;
    let dtype = dtype.resolve(device);
    if device == DeviceSpec::Cpu && dtype != Dtype::Fp32 {
        return Err(BackendError::Dtype {
            dtype,
            device,
            reason: "the CPU backend (burn-ndarray) computes in fp32 only",
        });
    }
    Ok((device, dtype))
}

fn probe(device: DeviceSpec) -> Result<(), BackendError> {
    match device {
        DeviceSpec::Auto => Ok(()),
        DeviceSpec::Cpu => probe_cpu(),
        DeviceSpec::Wgpu(index) => probe_wgpu(index),
        DeviceSpec::Cuda(index) => probe_cuda(index),
    }
}

#[cfg(feature = "cpu")]
fn probe_cpu() -> Result<(), BackendError> {
    Ok(())
}

#[cfg(not(feature = "cpu"))]
fn probe_cpu() -> Result<(), BackendError> {
    Err(not_compiled(DeviceSpec::Cpu, "cpu"))
}

/// The adapter behind a wgpu device.
#[derive(Clone, Debug)]
pub struct WgpuAdapter {
    pub name: String,
    pub driver: String,
    /// The graphics API wgpu drives it through (Vulkan, Metal, Dx12, Gl).
    pub api: String,
    /// A software rasterizer on the CPU (Mesa's lavapipe/llvmpipe, WARP, SwiftShader).
    pub cpu_emulated: bool,
}

/// Sets up the wgpu device `index` (`None`: wgpu's default adapter) once per process and
/// describes its adapter. The setup must come before any tensor touches the device (cubecl
/// registers one server per device).
#[cfg(feature = "wgpu")]
pub fn wgpu_adapter(index: Option<usize>) -> Result<WgpuAdapter, String> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static ADAPTERS: Mutex<BTreeMap<Option<usize>, Result<WgpuAdapter, String>>> =
        Mutex::new(BTreeMap::new());
    let mut adapters = ADAPTERS.lock().unwrap_or_else(|e| e.into_inner());
    adapters
        .entry(index)
        .or_insert_with(|| set_up_wgpu(index))
        .clone()
}

#[cfg(not(feature = "wgpu"))]
pub fn wgpu_adapter(index: Option<usize>) -> Result<WgpuAdapter, String> {
    Err(not_compiled(DeviceSpec::Wgpu(index), "wgpu").to_string())
}

/// A tiny fp32 tensor whose dtype is given explicitly: burn 0.21 keeps one default float dtype
/// per device and process, set by the first tensor created with the default, so a probe
/// created with the default would pin fp32 and turn a later fp16/bf16 model into fp32.
#[allow(dead_code)]
fn probe_tensor<B: burn::tensor::backend::Backend>(
    device: &B::Device,
) -> burn::tensor::Tensor<B, 1> {
    burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::from([1.0f32; 4]),
        (device, burn::tensor::DType::F32),
    )
}

#[cfg(feature = "wgpu")]
fn set_up_wgpu(index: Option<usize>) -> Result<WgpuAdapter, String> {
    use burn::backend::wgpu::graphics::AutoGraphicsApi;
    use burn::backend::wgpu::{init_setup, Wgpu, WgpuDevice};
    let device = index.map_or(WgpuDevice::DefaultDevice, WgpuDevice::DiscreteGpu);
    let mut found = None;
    catch_probe(std::panic::AssertUnwindSafe(|| {
        let setup = init_setup::<AutoGraphicsApi>(&device, Default::default());
        let info = setup.adapter.get_info();
        found = Some(WgpuAdapter {
            name: info.name.clone(),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            api: format!("{:?}", info.backend),
            cpu_emulated: info.device_type == wgpu::DeviceType::Cpu,
        });
        let _ = probe_tensor::<Wgpu>(&device).sum().into_scalar();
    }))?;
    found.ok_or_else(|| "the wgpu setup returned no adapter".into())
}

/// Checks a wgpu device chosen by the user; says once per process when its adapter is a CPU
/// emulation.
#[cfg(feature = "wgpu")]
fn probe_wgpu(index: Option<usize>) -> Result<(), BackendError> {
    static SAID: std::sync::Once = std::sync::Once::new();
    wgpu_adapter(index)
        .map(|adapter| {
            if adapter.cpu_emulated {
                SAID.call_once(|| {
                    tracing::warn!(
                        "wgpu adapter `{}` ({}, {}) is a CPU emulation, not a GPU: it runs the GPU kernels on the CPU, much slower than `--device cpu`; it is meant for testing GPU code paths",
                        adapter.name,
                        adapter.api,
                        adapter.driver
                    )
                });
            }
        })
        .map_err(|reason| BackendError::Unavailable {
            device: DeviceSpec::Wgpu(index),
            reason: format!(
                "no usable wgpu adapter (Vulkan, Metal, DX12 or GL) was found (backend said: {reason})"
            ),
        })
}

/// Whether `device: auto` may use wgpu: its default adapter works and is a real GPU.
fn auto_wgpu_is_a_gpu() -> bool {
    cfg!(feature = "wgpu") && wgpu_adapter(None).is_ok_and(|a| !a.cpu_emulated)
}

#[cfg(not(feature = "wgpu"))]
fn probe_wgpu(index: Option<usize>) -> Result<(), BackendError> {
    Err(not_compiled(DeviceSpec::Wgpu(index), "wgpu"))
}

#[cfg(feature = "cuda")]
fn probe_cuda(index: usize) -> Result<(), BackendError> {
    use burn::backend::cuda::{Cuda, CudaDevice};
    if cfg!(target_os = "linux") && !std::path::Path::new("/proc/driver/nvidia/version").exists() {
        return Err(BackendError::Unavailable {
            device: DeviceSpec::Cuda(index),
            reason: "no NVIDIA driver is loaded (/proc/driver/nvidia/version is absent); check `nvidia-smi`".into(),
        });
    }
    catch_probe(move || {
        let device = CudaDevice::new(index);
        let _ = probe_tensor::<Cuda>(&device).sum().into_scalar();
    })
    .map_err(|reason| BackendError::Unavailable {
        device: DeviceSpec::Cuda(index),
        reason: format!("CUDA device {index} could not run a test kernel (backend said: {reason})"),
    })
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda(index: usize) -> Result<(), BackendError> {
    Err(not_compiled(DeviceSpec::Cuda(index), "cuda"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(
            "wgpu".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Wgpu(None)
        );
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
    }
}

/// Work generic over the backend: `run_on` picks the concrete burn backend for a resolved
/// device (fp32; the frozen speech tokenizer and feature work run in fp32 everywhere).
pub trait BackendTask {
    type Output;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `task` on `device` with floats of `dtype` (both already checked by [`resolve`]):
/// NdArray<f32> on the CPU, Wgpu<f32 | f16>, Cuda<f32 | bf16 | f16>.
pub fn run_on<T: BackendTask>(
    device: DeviceSpec,
    dtype: Dtype,
    task: T,
) -> Result<T::Output, BackendError> {
    match (device, dtype) {
        #[cfg(feature = "cpu")]
        (DeviceSpec::Cpu | DeviceSpec::Auto, _) => {
            Ok(task.run::<burn::backend::NdArray<f32>>(Default::default()))
        }
        #[cfg(feature = "wgpu")]
        (DeviceSpec::Wgpu(index), dtype) => {
            use burn::backend::wgpu::{Wgpu, WgpuDevice};
            let device = index.map_or(WgpuDevice::DefaultDevice, WgpuDevice::DiscreteGpu);
            Ok(match dtype {
                Dtype::Fp16 => task.run::<Wgpu<half::f16>>(device),
                _ => task.run::<Wgpu<f32>>(device),
            })
        }
        #[cfg(feature = "cuda")]
        (DeviceSpec::Cuda(index), dtype) => {
            use burn::backend::cuda::{Cuda, CudaDevice};
            let device = CudaDevice::new(index);
            Ok(match dtype {
                Dtype::Bf16 | Dtype::Auto => task.run::<Cuda<half::bf16>>(device),
                Dtype::Fp16 => task.run::<Cuda<half::f16>>(device),
                Dtype::Fp32 => task.run::<Cuda<f32>>(device),
            })
        }
        #[allow(unreachable_patterns)]
        (other, _) => Err(not_compiled(
            other,
            match other {
                DeviceSpec::Wgpu(_) => "wgpu",
                DeviceSpec::Cuda(_) => "cuda",
                _ => "cpu",
            },
        )),
    }
}
