//! The command line as a user meets it: dry run, device errors, exit codes.

use crate::common::{arp_train, dry_run_tiny, repo, text};

#[test]
fn dry_run_prints_recipe_data_plan_and_parameters() {
    let stdout = dry_run_tiny(&[]);
    for expected in [
        "== resolved recipe",
        "device: cpu (fp32)",
        "utterances: 21 kept",
        "ada                  10         0",
        "<- character",
        "1. lm       train 120 steps",
        "2. flow     train 40 steps",
        "3. hift     train 12 steps",
        "lm: 684.6 k total",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
}

#[test]
fn frozen_stage_shows_in_the_plan() {
    let stdout = dry_run_tiny(&["--set", "freeze=[lm]"]);
    assert!(stdout.contains("1. lm       frozen"), "{stdout}");
    assert!(stdout.contains("0 trainable"), "{stdout}");
}

#[test]
fn unusable_devices_are_clear_errors_not_panics() {
    // This machine (and CI) has no GPU: CUDA must fail cleanly. With --dry-run the plan still
    // prints and names the problem; a real run stops with exit code 2 before any work.
    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--device",
            "cuda:0",
            "--set",
            "dtype=auto",
        ],
    );
    let stderr = text(&out.stderr);
    if std::path::Path::new("/proc/driver/nvidia/version").exists() {
        return; // a CUDA machine: the device is usable, nothing to check here
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("device `cuda:0` is not usable on this machine"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--device",
            "cuda",
            "--set",
            "dtype=auto",
            "--dry-run",
        ],
    );
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("device: cuda:0: NOT USABLE"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn templates_cannot_run_and_usage_errors_exit_2() {
    let out = arp_train(&repo(), &["--recipe", "recipes/base.yaml", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is a template"),
        "{}",
        text(&out.stderr)
    );
    let out = arp_train(
        &repo(),
        &["--recipe", "recipes/tiny.yaml", "--device", "tpu"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown device \"tpu\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_run_prepares_and_trains_both_stages() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    let cache = format!("data.cache_dir={}", dir.path().join("cache").display());
    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--output",
            &output.display().to_string(),
            "--set",
            &cache,
            "--log-format",
            "json",
        ],
    );
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("stage two (decoder): 9 utterances"),
        "{stdout}"
    );
    assert!(
        stdout.contains("prepared 21 utterances") && stdout.contains("stage one (lm): 120 steps"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(output.join("lm/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        121,
        "the step-0 evaluation and 120 steps"
    );
    // The tiny recipe's stage one learns: train loss at least halves, eval loss falls.
    let records: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = records.iter().filter_map(|r| r["loss"].as_f64()).collect();
    let evals: Vec<f64> = records
        .iter()
        .filter_map(|r| r["eval_loss"].as_f64())
        .collect();
    let late = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    println!(
        "tiny stage one: train loss {:.3} -> {late:.3} (mean of the last 10), eval {:.3} -> {:.3}",
        losses[0],
        evals[0],
        evals[evals.len() - 1]
    );
    assert!(
        late <= 0.5 * losses[0],
        "train loss {} -> {late}",
        losses[0]
    );
    assert!(evals[evals.len() - 1] < evals[0], "eval loss {evals:?}");
    assert!(output
        .join("lm/adapter/adapter_model.safetensors")
        .is_file());
    assert!(output
        .join("lm/merged/model.safetensors.index.json")
        .is_file());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"starting run\"")),
        "json logs: {stderr}"
    );
    let resolved = std::fs::read_to_string(output.join("recipe.resolved.yaml")).unwrap();
    assert!(resolved.contains("rank: 16"));
    assert!(
        resolved.contains(&format!("output_dir: {}", output.display())),
        "{resolved}"
    );
    assert!(output.join("reports/data-rejections.jsonl").exists());

    // Stage two on the same run: the flow-matching loss falls by at least 40% and the
    // vocoder's mel L1 falls, on training batches and on the held-out utterance.
    let part = |name: &str| -> (Vec<f64>, Vec<f64>) {
        let text =
            std::fs::read_to_string(output.join(format!("decoder/{name}/metrics.jsonl"))).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            records.iter().filter_map(|r| r["loss"].as_f64()).collect(),
            records
                .iter()
                .filter_map(|r| r["eval_loss"].as_f64())
                .collect(),
        )
    };
    let tail = |v: &[f64]| v[v.len() - 5..].iter().sum::<f64>() / 5.0;
    let (flow, flow_eval) = part("flow");
    let (hift, hift_eval) = part("hift");
    println!(
        "tiny stage two: flow loss {:.3} -> {:.3} (held-out {:.3} -> {:.3}); vocoder mel L1 {:.3} -> {:.3} (held-out {:.3} -> {:.3})",
        flow[0], tail(&flow), flow_eval[0], flow_eval[flow_eval.len() - 1],
        hift[0], tail(&hift), hift_eval[0], hift_eval[hift_eval.len() - 1]
    );
    assert_eq!((flow.len(), hift.len()), (40, 12));
    assert!(tail(&flow) <= 0.6 * flow[0], "flow loss {flow:?}");
    assert!(
        flow_eval[flow_eval.len() - 1] <= 0.6 * flow_eval[0],
        "flow held-out {flow_eval:?}"
    );
    assert!(
        tail(&hift) < hift[0] && hift_eval[hift_eval.len() - 1] < hift_eval[0],
        "vocoder {hift:?} {hift_eval:?}"
    );
    for file in ["config.yaml", "flow.safetensors", "hift.safetensors"] {
        assert!(output.join("decoder/model").join(file).is_file(), "{file}");
    }
}

#[test]
fn wgpu_either_works_or_says_why() {
    // Without a GPU, wgpu finds no adapter (a clear error, exit 2); with a software or real
    // adapter the device is usable and the run goes on to its data check (exit 1 in this build).
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().display().to_string();
    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--device",
            "wgpu",
            "--set",
            "dtype=fp32",
            "--output",
            &output,
        ],
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    match out.status.code() {
        Some(2) => assert!(
            stderr.contains("device `wgpu` is not usable on this machine: no usable wgpu adapter"),
            "{stderr}"
        ),
        Some(1) => assert!(stderr.contains("stage two (decoder)"), "{stderr}"),
        other => panic!("exit code {other:?}: {stderr}"),
    }
}
