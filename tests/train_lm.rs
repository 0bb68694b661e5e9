//! Stage-one training on the tiny recipe: exact resume after SIGKILL and after a crash while a
//! checkpoint is written, the non-finite guard, and refusals that protect earlier runs.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{repo, text};

fn train_args(output: &Path, cache: &Path, extra: &[&str]) -> Vec<String> {
    let mut args =
        crate::common::tiny_run_args(output, cache, &["lm.steps=60", "lm.checkpoint_every=4"]);
    // Stage one only: stage two and the package have their own tests.
    args.extend(["--stages".to_string(), "lm".to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn train(output: &Path, cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    crate::common::arp_train_env(&train_args(output, cache, extra), env)
}

/// (loss, grad_norm) per step, as logged.
fn curve(output: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(output.join("lm/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["loss"].is_number())
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn resumed_runs_are_bit_identical_to_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let straight = dir.path().join("straight");
    let out = train(&straight, &cache, &[], &[]);
    assert!(
        text(&out.stdout).contains("stage one (lm): 60 steps"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let reference = curve(&straight);
    assert_eq!(reference.len(), 60);
    let adapter = std::fs::read(straight.join("lm/adapter/adapter_model.safetensors")).unwrap();

    // SIGKILL at a seeded point after the first checkpoint, then --resume.
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(train_args(&killed, &cache, &[]))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !killed.join("lm/step-000004/complete").exists()
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20 + (0x5DEECE66Du64 % 1500) / 5));
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "the run must be killed mid-way");
    let out = train(&killed, &cache, &["--resume"], &[]);
    assert!(
        text(&out.stderr).contains("resuming stage one"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        curve(&killed),
        reference,
        "loss and gradient norm of every step"
    );
    assert_eq!(
        std::fs::read(killed.join("lm/adapter/adapter_model.safetensors")).unwrap(),
        adapter
    );

    // A crash while step 8's checkpoint is being written: resume falls back to step 4.
    let crashed = dir.path().join("crashed");
    let out = train(
        &crashed,
        &cache,
        &[],
        &[("ARP_FAULT_ABORT_IN_CHECKPOINT", "8")],
    );
    assert!(!out.status.success());
    assert!(!crashed.join("lm/step-000008").exists());
    let out = train(&crashed, &cache, &["--resume"], &[]);
    assert!(
        text(&out.stderr).contains("step-000004"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(curve(&crashed), reference);
    assert_eq!(
        std::fs::read(crashed.join("lm/adapter/adapter_model.safetensors")).unwrap(),
        adapter
    );
    let kept: Vec<String> = std::fs::read_dir(crashed.join("lm"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    assert_eq!(kept.len(), 3, "keep_last_n = 3: {kept:?}");
}

#[test]
fn non_finite_steps_are_skipped_and_too_many_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let once = dir.path().join("once");
    let out = train(
        &once,
        &cache,
        &["--set", "lm.steps=6"],
        &[("ARP_FAULT_NAN_STEPS", "2")],
    );
    assert!(
        text(&out.stdout).contains("; 1 skipped"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("non-finite loss or gradient norm: step skipped"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(curve(&once).len(), 5, "the skipped step logs no loss");

    let stopped = dir.path().join("stopped");
    let out = train(
        &stopped,
        &cache,
        &["--set", "lm.max_nonfinite_steps=3"],
        &[("ARP_FAULT_NAN_STEPS", "2,3,4")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("3 consecutive steps had a non-finite loss")
            && stderr.contains("checkpoint of the last good weights"),
        "{stderr}"
    );
    assert!(
        stopped.join("lm/step-000004/complete").exists(),
        "the last good state is saved"
    );
}

#[test]
fn earlier_runs_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let run = dir.path().join("run");
    // A run cut after its step-4 checkpoint (of 8 steps).
    let out = train(
        &run,
        &cache,
        &["--set", "lm.steps=8"],
        &[("ARP_FAULT_ABORT_IN_CHECKPOINT", "8")],
    );
    assert!(!out.status.success());
    // Different model settings: the checkpoints are not resumed, nor overwritten.
    let out = train(
        &run,
        &cache,
        &["--set", "lm.steps=8", "--set", "lm.lora.rank=4"],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot resume from")
            && stderr.contains("lm.lora.rank: checkpoint 16 / now 4"),
        "{stderr}"
    );
    assert!(run.join("lm/step-000004/complete").exists());
    // The same settings continue it; once finished, a changed recipe is refused by name.
    let out = train(&run, &cache, &["--set", "lm.steps=8"], &[]);
    assert!(
        text(&out.stdout).contains("stage one (lm): 8 steps"),
        "{}",
        text(&out.stderr)
    );
    let out = train(
        &run,
        &cache,
        &["--set", "lm.steps=8", "--set", "lm.lora.rank=4"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("stage one (lm) in")
            && stderr.contains("finished with other model or data settings")
            && stderr.contains("lm.lora.rank: finished with 16 / now 4")
            && !stderr.contains("--continue-finished"),
        "{stderr}"
    );

    // Only the learning rate and length changed: refused with the flag named, then continued
    // from the last checkpoint with it, and recorded in done.json.
    let more = ["--set", "lm.steps=12", "--set", "lm.optimizer.lr=0.005"];
    let out = train(&run, &cache, &more, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`--continue-finished` continues the stage"),
        "{}",
        text(&out.stderr)
    );
    let with_flag: Vec<&str> = more
        .iter()
        .copied()
        .chain(["--continue-finished"])
        .collect();
    let out = train(&run, &cache, &with_flag, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("continues the finished stage to 12 steps")
            && stdout.contains("stage one (lm): 12 steps")
            && stderr.contains("resuming stage one")
            && stderr.contains("step-000008"),
        "{stdout}\n{stderr}"
    );
    let steps: Vec<u64> = curve(&run).iter().map(|(s, _, _)| *s).collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("lm/done.json")).unwrap()).unwrap();
    let continued = record["continued"][0].as_str().unwrap_or_default();
    assert!(
        continued.starts_with("continued after lm 8 steps with:")
            && continued.contains("lm.optimizer.lr: finished with 0.01 / now 0.005")
            && continued.contains("lm.steps: finished with 8 / now 12"),
        "{record}"
    );
    // The same command again: done, skipped; a model change is still refused with the flag.
    let out = train(&run, &cache, &with_flag, &[]);
    assert!(text(&out.stdout).contains("stage one (lm): done, skipped"));
    let changed: Vec<&str> = with_flag
        .iter()
        .copied()
        .chain(["--set", "lm.lora.rank=4"])
        .collect();
    let out = train(&run, &cache, &changed, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
}

#[test]
fn shape_buckets_leave_stage_one_losses_unchanged() {
    // Rows padded to a bucket (16 x {1, 2, 3, 4, 6, ...} tokens) are masked: the causal mask
    // keeps real positions from seeing them and their labels are ignored.
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let run = |name: &str, buckets: &str| {
        let output = dir.path().join(name);
        let out = train(
            &output,
            &cache,
            &[
                "--set",
                "lm.steps=6",
                "--set",
                "lm.eval_every=3",
                "--set",
                buckets,
            ],
            &[],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let metrics = std::fs::read_to_string(output.join("lm/metrics.jsonl")).unwrap();
        let values: Vec<f64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .flat_map(|v| [v["loss"].as_f64(), v["eval_loss"].as_f64()])
            .flatten()
            .collect();
        values
    };
    let plain = run("plain", "shape_buckets=off");
    let padded = run("padded", "shape_buckets=on");
    assert_eq!(plain.len(), padded.len());
    assert_eq!(plain.len(), 6 + 3, "6 losses and 3 eval losses");
    for (a, b) in plain.iter().zip(&padded) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "losses {plain:?} vs {padded:?}"
        );
    }
}
