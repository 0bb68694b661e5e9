//! Peak memory of a benchmark stage. On the CPU: the process's peak resident set (VmHWM), reset
//! before each stage through /proc/self/clear_refs. On CUDA: the most device memory the driver
//! reports for this process (`nvidia-smi`, sampled every 100 ms), the same way
//! tools/bench/bench_reference.py measures PyTorch, so allocator caches and the CUDA context count
//! for both.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A measured peak and how it was measured (`bytes` is None when it could not be).
#[derive(Clone, Debug)]
pub struct Peak {
    pub bytes: Option<u64>,
    pub source: String,
}

/// Watches memory from `start` until `finish`.
pub enum Watch {
    Host,
    Gpu {
        stop: Arc<AtomicBool>,
        peak: Arc<AtomicU64>,
        thread: JoinHandle<()>,
    },
}

impl Watch {
    /// `gpu`: sample this process's GPU memory; otherwise the host's resident set.
    pub fn start(gpu: bool) -> Self {
        if !gpu {
            // "5" resets the peak resident set size (Linux 4.0+); elsewhere the peak is the
            // process's so far.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            return Watch::Host;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(bytes) = gpu_bytes_of(std::process::id()) {
                        peak.fetch_max(bytes, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Watch::Gpu { stop, peak, thread }
    }

    pub fn finish(self) -> Peak {
        match self {
            Watch::Host => Peak {
                bytes: host_peak_bytes(),
                source: "host peak resident set (VmHWM)".into(),
            },
            Watch::Gpu { stop, peak, thread } => {
                stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                let bytes = peak.load(Ordering::Relaxed);
                Peak {
                    bytes: (bytes > 0).then_some(bytes),
                    source: if bytes > 0 {
                        "GPU memory of this process (nvidia-smi)".into()
                    } else {
                        "GPU memory unknown (nvidia-smi did not report this process)".into()
                    },
                }
            }
        }
    }
}

/// VmHWM of this process.
pub fn host_peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib_field(&status, "VmHWM:")
}

fn parse_kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Device memory the driver attributes to process `pid`, summed over GPUs.
fn gpu_bytes_of(pid: u32) -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    parse_compute_apps(&String::from_utf8_lossy(&out.stdout), pid)
}

/// `pid, MiB` lines -> bytes used by `pid`.
fn parse_compute_apps(text: &str, pid: u32) -> Option<u64> {
    let mib: u64 = text
        .lines()
        .filter_map(|l| {
            let (p, m) = l.split_once(',')?;
            (p.trim().parse::<u32>().ok()? == pid).then(|| m.trim().parse::<u64>().ok())?
        })
        .sum();
    (mib > 0).then_some(mib * 1024 * 1024)
}

/// The device's dense bf16/fp16 peak in TFLOP/s from its name (`nvidia-smi`), for MFU.
pub fn gpu_peak_tflops() -> Option<(String, f64)> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let name = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    peak_for_name(&name).map(|p| (name, p))
}

/// Published dense 16-bit tensor-core peaks (SXM parts; PCIe H100 989 -> 756).
fn peak_for_name(name: &str) -> Option<f64> {
    let n = name.to_uppercase();
    let table = [
        ("H200", 989.0),
        ("H100 PCIE", 756.0),
        ("H100", 989.0),
        ("A100", 312.0),
        ("L40S", 362.0),
        ("A10G", 125.0),
        ("RTX 4090", 165.0),
    ];
    table
        .iter()
        .find(|(key, _)| n.contains(key))
        .map(|&(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_nvidia_smi_lines() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM:"), Some(2048 * 1024));
        let apps = "1234, 5000\n99, 10\n1234, 24\n";
        assert_eq!(parse_compute_apps(apps, 1234), Some(5024 * 1024 * 1024));
        assert_eq!(parse_compute_apps(apps, 7), None);
        assert_eq!(peak_for_name("NVIDIA H100 80GB HBM3"), Some(989.0));
        assert_eq!(peak_for_name("NVIDIA H100 PCIe"), Some(756.0));
        assert_eq!(peak_for_name("Some GPU"), None);
        assert!(host_peak_bytes().is_some());
    }
}
