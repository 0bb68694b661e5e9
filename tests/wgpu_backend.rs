//! The wgpu backend against the same references as the CPU backend, on whatever adapter this
//! machine has; in CI that is Mesa's lavapipe (Vulkan on the CPU, `.ci/run` installs
//! `mesa-vulkan-drivers`), which runs the cubecl kernels, fusion, autotune and f16 compute that
//! GPUs run. Without any adapter these tests fail and say how to get one; set
//! `ARP_SKIP_WGPU=1` to skip them on purpose.
//!
//! - parity: GLM-4 (logits, loss, greedy with KV cache, PEFT adapter), the speech tokenizer,
//!   flow, HiFT and the speaker encoder in fp32 within the CPU tests' tolerances; GLM-4 and the
//!   flow in f16 within the tolerances below;
//! - LoRA gradients when only LoRA parameters require grad (burn #5162): finite, equal to CPU's;
//! - training: stage one's steps on wgpu track the CPU run's, in fp32 and in f16 (fp32 adapter
//!   and AdamW state: one step at lr 1e-5 survives, a reloaded optimizer takes the same step);
//!   an f16 run killed while writing a checkpoint resumes to the same adapter bit for bit; no
//!   autotune line at the default level;
//!   the flow's steps track the CPU run's. The vocoder's comparison is opt-in
//!   (`ARP_WGPU_TRAINING=1`): compiling its kernels on lavapipe takes about an hour (measured:
//!   losses within 9.2e-8 of the CPU's).

use std::path::Path;

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::backend::{Autodiff, NdArray};

use arp_train::models::padded_matmul::padded_matmul;

use crate::common::{arp_train_env, copy_dir, prepared_tiny_cache, text, tiny_run_args};

type W32 = Wgpu<f32>;
type W16 = Wgpu<half::f16>;

/// One test at a time on the device: lavapipe already uses every core, and each thread that
/// touches a cubecl device keeps its own stream and memory pool (burn #4792).
static DEVICE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The wgpu device and the lock on it (`None`: skipped on purpose with `ARP_SKIP_WGPU=1`).
fn device() -> Option<(WgpuDevice, std::sync::MutexGuard<'static, ()>)> {
    if std::env::var_os("ARP_SKIP_WGPU").is_some() {
        eprintln!("ARP_SKIP_WGPU is set: wgpu test skipped");
        return None;
    }
    let lock = DEVICE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match arp_train::backend::wgpu_adapter(None) {
        Ok(_) => Some((WgpuDevice::DefaultDevice, lock)),
        Err(e) => panic!(
            "no wgpu adapter: {e}\nInstall one (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`, Vulkan on the CPU) or set ARP_SKIP_WGPU=1 to skip the wgpu tests"
        ),
    }
}

/// Whether a check not yet in CI was asked for with `var=1` (says so on stderr when not).
fn opted_in(var: &str, what: &str) -> bool {
    let asked = std::env::var_os(var).is_some();
    if !asked {
        eprintln!("{what} skipped: set {var}=1 to run it");
    }
    asked
}

/// GLM-4 in f16: logits within 1% of the largest logit, loss within 0.005, greedy tokens
/// equal. Measured on lavapipe: logits 2.2e-3 / 3.3e-3 (base / adapter), loss 7.3e-4 / 4.7e-4.
const GLM4_F16: crate::glm4::Tolerance = crate::glm4::Tolerance {
    logits: 1e-2,
    loss: 5e-3,
};
/// Stage one's recomputed gradients in f16 against the plain backward's, relative to each
/// gradient's largest entry (the two orders of summation round differently in f16).
const RECOMPUTE_F16: f64 = 1e-2;
/// Stage one's loss over repeated f16 steps (fp32 LoRA and AdamW state) against the fp32 CPU
/// run's, relative.
const F16_TRAINING_LOSS: f64 = 5e-3;
/// The flow in f16: every output within 1% (relative to its largest value). Measured on
/// lavapipe: 5.6e-3 at most (the estimator), Euler solve 1.9e-3.
const FLOW_F16: f64 = 1e-2;

#[test]
fn glm4_matches_the_reference_on_wgpu() {
    let Some((device, _lock)) = device() else {
        return;
    };
    let fp32 = crate::glm4::parity_on::<W32>(crate::glm4::FP32, &device);
    println!("wgpu GLM-4 fp32 (logits rel. error, loss error) [base, lora]: {fp32:?}");
}

#[test]
fn glm4_and_the_flow_match_the_reference_on_wgpu_in_f16() {
    // burn 0.21 keeps one default float dtype per device and process, set by the first tensor
    // created on it: after fp32 work in this process a Wgpu<f16> model would quietly compute in
    // fp32. So the f16 checks run in a test process of their own (and assert their dtype).
    // The lock is held so that the child has the device to itself.
    let Some(_lock) = device() else {
        return;
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "wgpu_backend::f16_checks",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("ARP_WGPU_F16_CHILD", "1")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "run in a process of its own by glm4_and_the_flow_match_the_reference_on_wgpu_in_f16"]
fn f16_checks() {
    assert!(
        std::env::var_os("ARP_WGPU_F16_CHILD").is_some(),
        "run by the f16 test"
    );
    let Some((device, _lock)) = device() else {
        return;
    };
    let glm4 = crate::glm4::parity_on::<W16>(GLM4_F16, &device);
    let flow = crate::decoder::flow_parity_on::<W16>(FLOW_F16, &device);
    println!("wgpu GLM-4 f16 (logits rel. error, loss error) [base, lora]: {glm4:?}\nwgpu flow f16 {flow:?}");
    // Stage one's recomputed LoRA gradients in f16 (fp32 loss) against its plain backward.
    let recompute = {
        use arp_train::models::glm4::load::{load_adapter, load_model};
        use arp_train::models::params::set_trainable;
        let dir = crate::glm4::fixture();
        let (mut model, _) = load_model::<Autodiff<W16>>(&dir.join("model"), &device).unwrap();
        load_adapter(&mut model, &dir.join("adapter"), &device).unwrap();
        let model = set_trainable(model, |name| name.contains(".lora."));
        crate::glm4_recompute::compare_on(&model, 5, RECOMPUTE_F16, &device)
    };
    println!("wgpu f16 stage one (plain loss, recomputed loss, worst gradient difference): {recompute:?}");
    f16_mixed_precision_checks(&device);
}

/// Stage one in f16 with fp32 trained parameters, gradients and AdamW state: an AdamW step far
/// below f16's resolution still moves every weight (LoRA, and full fine-tuning's master
/// weights), a step after reloading the optimizer from a checkpoint is the same step, and the
/// loss of repeated steps follows the CPU's fp32 curve.
fn f16_mixed_precision_checks(device: &WgpuDevice) {
    use crate::glm4_precision::{loss_curve_on, resumed_step_matches_on, small_updates_survive_on};
    for lora in [true, false] {
        let s = small_updates_survive_on::<Autodiff<W16>>(lora, 1e-5, device);
        println!("wgpu f16 AdamW step at lr 1e-5 (lora {lora}): {s:?}");
        assert!(s.checked >= 1000 && s.worst_update_error <= 0.01, "{s:?}");
        // The check means something: in f16 weights most of these updates would round away.
        assert!(s.lost_in_half >= 0.5, "{s:?}");
    }
    let worst = resumed_step_matches_on::<Autodiff<W16>>(false, device);
    println!("wgpu f16 step after reloading the optimizer: largest difference {worst:e}");
    assert_eq!(worst, 0.0);
    // Why optimizer.safetensors exists: burn 0.21's recorder loads the moments in the compute
    // dtype, so a step after reloading its file is another step.
    let legacy = resumed_step_matches_on::<Autodiff<W16>>(true, device);
    println!("wgpu f16 step after reloading burn's optimizer.bin: largest difference {legacy:e}");
    assert!(
        legacy > 0.0,
        "burn's recorder kept fp32 moments: optimizer.bin would do"
    );
    let (steps, lr) = (8, 1e-3);
    let cpu = loss_curve_on::<Autodiff<NdArray<f32>>>(true, steps, lr, &Default::default());
    let f16 = loss_curve_on::<Autodiff<W16>>(true, steps, lr, device);
    let gap = cpu
        .iter()
        .zip(&f16)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0.0f64, f64::max);
    let (fell_cpu, fell_f16) = (cpu[0] - cpu[steps - 1], f16[0] - f16[steps - 1]);
    println!("LoRA loss over {steps} steps at lr {lr}: cpu fp32 {cpu:?}\nwgpu f16 {f16:?}\nworst relative gap {gap:e}; fell {fell_cpu} (fp32) vs {fell_f16} (f16)");
    assert!(
        gap <= F16_TRAINING_LOSS,
        "f16 losses leave the fp32 curve by {gap:e}"
    );
    assert!(fell_cpu > 0.0 && (fell_f16 - fell_cpu).abs() <= 0.1 * fell_cpu);
}

#[test]
fn speech_tokenizer_matches_the_reference_on_wgpu() {
    let Some((device, _lock)) = device() else {
        return;
    };
    // Three clips: every new clip length is a new set of kernel shapes to tune on lavapipe.
    let (worst, share) = crate::speech_tokenizer::parity_on::<W32>(&device, 3);
    println!("wgpu speech tokenizer: features max abs error {worst:e}, tokens identical {share}");
}

#[test]
fn decoder_matches_the_reference_on_wgpu() {
    let Some((device, _lock)) = device() else {
        return;
    };
    let flow = crate::decoder::flow_parity_on::<W32>(1e-4, &device);
    let hift = crate::decoder::hift_parity_on::<W32>(1e-4, &device);
    println!("wgpu flow fp32 {flow:?}\nwgpu HiFT fp32 {hift:?}");
}

#[test]
fn speaker_encoder_matches_resemblyzer_on_wgpu() {
    // Its first LSTM layer multiplies by k = 40 mel channels: cubek's double-buffered matmul
    // is wrong there (cosine 0.36) whenever autotune picks it, hence the padding in the model.
    let Some((device, _lock)) = device() else {
        return;
    };
    let cosine = crate::eval_parity::speaker_parity_on::<W32>(&device);
    println!("wgpu speaker encoder: lowest cosine {cosine:.6}");
}

#[test]
fn lora_only_gradients_are_finite_and_match_the_cpu_on_wgpu() {
    // burn #5162 reports all-NaN gradients on wgpu when only LoRA parameters require grad.
    let Some((device, _lock)) = device() else {
        return;
    };
    let cpu = crate::glm4::lora_gradients_on::<Autodiff<NdArray<f32>>>(&Default::default());
    let gpu = crate::glm4::lora_gradients_on::<Autodiff<W32>>(&device);
    assert_eq!(cpu.len(), gpu.len());
    assert_eq!(cpu.len(), 2 * 4 * 2, "A and B of 4 targets in 2 layers");
    let mut worst = 0.0f32;
    for ((name, want), (gpu_name, got)) in cpu.iter().zip(&gpu) {
        assert_eq!(name, gpu_name);
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{name}: non-finite gradient on wgpu"
        );
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: zero gradient on the CPU");
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
            / scale;
        worst = worst.max(err);
    }
    println!(
        "wgpu LoRA gradients: {} tensors finite, worst relative error {worst:e}",
        gpu.len()
    );
    assert!(
        worst <= 1e-4,
        "LoRA gradients differ from the CPU's: {worst:e}"
    );
}

/// Two steps of every part, one utterance per flow batch, a checkpoint after every LM step:
/// few distinct problem shapes, since lavapipe spends seconds autotuning and compiling each.
const SHORT_RUN: [&str; 10] = [
    "lm.steps=2",
    "lm.checkpoint_every=1",
    "lm.eval_every=100",
    "decoder.flow.steps=2",
    "decoder.flow.max_frames_per_batch=300",
    "decoder.flow.checkpoint_every=2",
    "decoder.flow.eval_every=100",
    "decoder.hift.steps=2",
    "decoder.hift.checkpoint_every=2",
    "decoder.hift.eval_every=100",
];

/// The `loss` of every logged step of `part` (lm, decoder/flow, decoder/hift).
fn losses(output: &Path, part: &str) -> Vec<f64> {
    std::fs::read_to_string(output.join(part).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["loss"].as_f64())
        .collect()
}

/// The short run of `stages` on `device` (shape buckets on for both backends, so the CPU run
/// sees the wgpu run's padded shapes).
fn run(
    output: &Path,
    cache: &Path,
    device: &str,
    stages: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut sets: Vec<&str> = SHORT_RUN.to_vec();
    sets.push("shape_buckets=on");
    let mut args = tiny_run_args(output, cache, &sets);
    args.extend(["--device", device, "--stages", stages].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    arp_train_env(&args, env)
}

/// Stage `part`'s logged losses on wgpu against the CPU's, within `tolerance` relative.
fn assert_tracks(cpu: &Path, gpu: &Path, part: &str, tolerance: f64) {
    let (want, got) = (losses(cpu, part), losses(gpu, part));
    assert_eq!(want.len(), got.len(), "{part}: steps logged");
    let worst = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1e-6))
        .fold(0.0f64, f64::max);
    println!("{part}: cpu {want:?}\n{part}: wgpu {got:?}\n{part}: worst relative gap {worst:e}");
    assert!(
        worst <= tolerance,
        "{part}: wgpu losses leave the CPU's by {worst:e} (> {tolerance:e})"
    );
}

#[test]
fn stage_one_on_wgpu_tracks_the_cpu_and_resumes_exactly() {
    let Some(_) = device() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = prepared_tiny_cache(dir.path());

    let cpu = dir.path().join("cpu");
    let out = run(&cpu, &cache, "cpu", "lm", &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gpu = dir.path().join("wgpu");
    let out = run(&gpu, &cache, "wgpu", "lm", &[], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The default log level keeps cubecl's per-kernel lines out, and the CPU emulation is
    // named once.
    assert!(
        !stderr.contains("Tuning"),
        "autotune lines at the default level:\n{stderr}"
    );
    assert!(!stderr.contains("compute server"), "{stderr}");
    assert_eq!(stderr.matches("is a CPU emulation").count(), 1, "{stderr}");
    // The LoRA A matrices are drawn on the host, so both runs start from the same adapter.
    assert_tracks(&cpu, &gpu, "lm", 1e-4);

    // In f16 (fp32 adapter and AdamW state), within f16's rounding of the loss.
    let f16 = ["--set", "device=wgpu", "--set", "dtype=fp16"];
    let half = dir.path().join("f16");
    let out = run(&half, &cache, "wgpu", "lm", &f16, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_tracks(&cpu, &half, "lm", F16_TRAINING_LOSS);

    // A crash while step 2's checkpoint is written (step 1's is complete), then a rerun:
    // stage one resumes from step 1 and ends with the uninterrupted run's adapter, in f16.
    let gpu = half;
    let crashed = dir.path().join("crashed");
    let crash = [("ARP_FAULT_ABORT_IN_CHECKPOINT", "2")];
    let out = run(&crashed, &cache, "wgpu", "lm", &f16, &crash);
    assert!(!out.status.success());
    assert!(crashed.join("lm/step-000001/complete").exists());
    assert!(crashed
        .join("lm/step-000001/optimizer.safetensors")
        .exists());
    let resume = [f16.as_slice(), &["--resume"]].concat();
    let out = run(&crashed, &cache, "wgpu", "lm", &resume, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("step-000001"),
        "resumes from step 1: {stderr}"
    );
    assert_eq!(
        losses(&crashed, "lm"),
        losses(&gpu, "lm"),
        "loss of every step"
    );
    let adapter =
        |dir: &Path| std::fs::read(dir.join("lm/adapter/adapter_model.safetensors")).unwrap();
    assert!(
        adapter(&crashed) == adapter(&gpu),
        "the resumed adapter differs from the uninterrupted run's"
    );
}

/// Stage two on the CPU, then on wgpu with one part's finished checkpoints copied from the CPU
/// run: the wgpu run trains only `part` (flow or hift) and loads the other, as a rerun loads a
/// finished part. Returns the two output directories.
fn stage_two_part_on_wgpu(dir: &Path, part: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cache = prepared_tiny_cache(dir);
    let cpu = dir.join("cpu");
    let out = run(&cpu, &cache, "cpu", "decoder", &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gpu = dir.join("wgpu");
    let other = if part == "flow" { "hift" } else { "flow" };
    copy_dir(
        &cpu.join("decoder").join(other),
        &gpu.join("decoder").join(other),
    );
    let out = run(&gpu, &cache, "wgpu", "decoder", &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        stdout.contains("already trained"),
        "the copied {other} is loaded, not retrained:\n{stdout}"
    );
    (cpu, gpu)
}

/// The flow's two steps on wgpu track the CPU's. The vocoder is the CPU run's, loaded on wgpu
/// and written back into the decoder: the same bytes, so a part moves between backends intact.
#[test]
fn flow_on_wgpu_tracks_the_cpu() {
    let Some(_) = device() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = stage_two_part_on_wgpu(dir.path(), "flow");
    assert_tracks(&cpu, &gpu, "decoder/flow", 1e-4);
    let hift = |dir: &Path| std::fs::read(dir.join("decoder/model/hift.safetensors")).unwrap();
    assert!(
        hift(&cpu) == hift(&gpu),
        "the vocoder loaded on wgpu was written back changed"
    );
}

/// The vocoder's two GAN steps on wgpu track the CPU's. Not in CI: on lavapipe the first GAN
/// step compiles every kernel of HiFT and of the eight discriminators, forward and backward.
/// Measured (2026-12-03): 246 problem shapes autotuned, the two steps took 3258 s,
/// and the losses matched within 9.2e-8 relative. `ARP_WGPU_TRAINING=1 cargo test
/// wgpu_backend::vocoder` runs it.
#[test]
fn vocoder_on_wgpu_tracks_the_cpu() {
    if !opted_in("ARP_WGPU_TRAINING", "wgpu vocoder training test") {
        return;
    }
    let Some(_) = device() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = stage_two_part_on_wgpu(dir.path(), "hift");
    assert_tracks(&cpu, &gpu, "decoder/hift", 1e-3);
}

/// The minimal reproduction of a cubek 0.2 bug (benches/perf-notes.md, "double-buffered
/// matmul"): `x [1, 160, k] @ W^T (+ b)` and attention's `probs [2, q, k] @ v [2, k, 64]` on
/// wgpu against the CPU for several k. It passes with
/// whatever autotune picked; forced to the double-buffered kernels, it fails for every k that
/// is not a multiple of 16, while `padded_matmul` (the workaround) stays right:
/// run it once, `python3 tools/bench/autotune_force.py double`, run it again.
#[test]
#[ignore = "a bug reproduction, run by hand with a forced autotune cache (see the doc comment)"]
fn double_buffered_matmul_reproduction() {
    use burn::tensor::{Distribution, Tensor};
    let Some((device, _lock)) = device() else {
        return;
    };
    let cpu = Default::default();
    let err = |got: Tensor<W32, 3>, want: Tensor<NdArray<f32>, 3>| {
        let got = got.into_data().to_vec::<f32>().unwrap();
        let want = want.into_data().to_vec::<f32>().unwrap();
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs());
        diff.fold(0.0f32, f32::max) / scale
    };
    let normal = Distribution::Normal(0.0, 1.0);
    // Attention's `softmax(QK^T) V`, whose k is the key length: `probs [2, queries, k] @ v
    // [2, k, 64]`, plain and through `padded_matmul` (relative errors).
    let attention = |queries: usize, k: usize| {
        let probs = Tensor::<NdArray<f32>, 3>::random([2, queries, k], normal, &cpu);
        let v = Tensor::<NdArray<f32>, 3>::random([2, k, 64], normal, &cpu);
        let want = probs.clone().matmul(v.clone());
        let gp = Tensor::<W32, 3>::from_data(probs.to_data(), &device);
        let gv = Tensor::<W32, 3>::from_data(v.to_data(), &device);
        let padded = err(padded_matmul(gp.clone(), gv.clone()), want.clone());
        (err(gp.matmul(gv), want), padded)
    };
    let mut worst: Vec<(usize, f32, f32)> = Vec::new();
    let mut worst_padded = 0.0f32;
    for k in [40usize, 48, 56, 64, 72, 80, 96, 320] {
        let x = Tensor::<NdArray<f32>, 3>::random([1, 160, k], normal, &cpu);
        let w = Tensor::<NdArray<f32>, 2>::random([1024, k], normal, &cpu);
        let b = Tensor::<NdArray<f32>, 1>::random([1024], normal, &cpu);
        let want_plain = x.clone().matmul(w.clone().transpose().unsqueeze());
        let want_biased = want_plain.clone() + b.clone().unsqueeze::<3>();
        let gx = Tensor::<W32, 3>::from_data(x.to_data(), &device);
        let gw = Tensor::<W32, 2>::from_data(w.to_data(), &device);
        let gb = Tensor::<W32, 1>::from_data(b.to_data(), &device);
        let plain = gx.clone().matmul(gw.clone().transpose().unsqueeze());
        // Fused by burn into one matmul kernel with the bias add.
        let biased = gx.clone().matmul(gw.clone().transpose().unsqueeze()) + gb.unsqueeze::<3>();
        // The workaround every model layer uses.
        let padded = padded_matmul(gx, gw.transpose().unsqueeze());
        let (p, f) = (err(plain, want_plain.clone()), err(biased, want_biased));
        worst_padded = worst_padded.max(err(padded, want_plain));
        // One query against the cache (decoding), and every query (prefill, the flow).
        let (decode, decode_padded) = attention(1, k);
        let (prefill, prefill_padded) = attention(k, k);
        worst_padded = worst_padded.max(decode_padded).max(prefill_padded);
        println!(
            "k {k}: plain {p:e}, with bias (fused) {f:e}, attention decode {decode:e}, prefill {prefill:e}"
        );
        worst.push((k, p.max(decode).max(prefill), f));
    }
    // Long prompts: only from about this size does autotune offer the double-buffered kernels
    // for attention's product.
    for k in [2040usize, 2048] {
        let (e, padded) = attention(k, k);
        worst_padded = worst_padded.max(padded);
        println!("k {k}: attention prefill {e:e}");
        worst.push((k, e, 0.0));
    }
    println!("padded_matmul (the workaround): worst relative error {worst_padded:e}");
    assert!(
        worst_padded <= 1e-4,
        "padded_matmul is wrong too: {worst_padded:e}"
    );
    let wrong: Vec<_> = worst
        .iter()
        .filter(|(_, p, f)| *p > 1e-4 || *f > 1e-4)
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong products (k, worst unfused, fused): {wrong:?}"
    );
}
