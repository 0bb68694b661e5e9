//! `arp-train bench`: the harness on the tiny recipe's shapes (CPU), its JSON (the PyTorch
//! baseline's input), and its errors. tools/bench/bench_reference.py runs on that JSON in .ci/run.

use crate::common::{arp_train, repo, text};

#[test]
fn bench_times_all_three_stages_and_writes_the_baseline_input() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out/arp.json");
    let out = arp_train(
        &repo(),
        &[
            "bench",
            "--recipe",
            "recipes/tiny.yaml",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--seq-len",
            "64",
            "--batch",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for expected in ["stage one: 2 layers", "lm ", "flow ", "vocoder ", "wrote "] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["tool"], "arp-train");
    assert_eq!(report["device"], "cpu");
    let stages = report["stages"].as_array().unwrap();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lm", "flow", "vocoder"]);
    for s in stages {
        assert_eq!(s["step_seconds"].as_array().unwrap().len(), 2, "{s}");
        assert_eq!(s["losses"].as_array().unwrap().len(), 3, "{s}");
        assert!(s["losses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l.as_f64().unwrap().is_finite()));
        let median = s["median_step_seconds"].as_f64().unwrap();
        let throughput = s["throughput"].as_f64().unwrap();
        let per_step = s["per_step"].as_f64().unwrap();
        assert!(median > 0.0 && (throughput * median - per_step).abs() < 1e-6 * per_step);
        assert!(s["peak_memory_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
    }
    // Stage one: 2 x 64 tokens of the tiny GLM, LoRA rank 16 on four targets.
    let lm = &stages[0];
    assert_eq!(lm["per_step"], 128);
    assert_eq!(lm["shape"]["seq_len"], 64);
    assert_eq!(lm["shape"]["lora"]["rank"], 16);
    assert_eq!(lm["shape"]["activation_checkpointing"], true);
    let c = &lm["shape"]["config"];
    let vocab = c["padded_vocab_size"].as_f64().unwrap();
    // The first loss of random weights on random tokens is near ln(vocab).
    let first = lm["losses"][0].as_f64().unwrap();
    assert!((first - vocab.ln()).abs() < 1.0, "{first} vs ln {vocab}");
    assert!(lm["flops_per_step"].as_f64().unwrap() > 0.0);
    assert!(lm["mfu"].is_null(), "no MFU without a known peak");
    // Stage two: the flow fills max_frames_per_batch (600) with one 400-frame utterance; the
    // vocoder takes 64 / 32 = 2 crops of 32 frames.
    assert_eq!(stages[1]["per_step"], 400);
    assert_eq!(stages[1]["shape"]["config"]["vocab_size"], 16384);
    assert_eq!(stages[2]["per_step"], 64);
    assert_eq!(stages[2]["shape"]["crops"], 2);
}

/// `arp-train bench --recipe recipes/tiny.yaml --stages STAGE` for one step (no warm-up), with
/// `extra` flags: the JSON report it writes.
fn one_step_report(stage: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut args = vec![
        "bench",
        "--recipe",
        "recipes/tiny.yaml",
        "--stages",
        stage,
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = arp_train(&repo(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

#[test]
fn bench_stage_selection_and_bad_flags_are_clear() {
    let report = one_step_report("flow", &[]);
    assert_eq!(report["stages"].as_array().unwrap().len(), 1);

    let bad = |args: &[&str], expected: &str| {
        let mut all = vec!["bench", "--recipe", "recipes/tiny.yaml"];
        all.extend_from_slice(args);
        let out = arp_train(&repo(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{expected:?} missing:\n{stderr}");
    };
    bad(&["--stages", "lm,decoder"], "unknown stage \"decoder\"");
    bad(&["--layers", "9"], "--layers 9: the config has 2 layers");
    bad(
        &["--lm-config", "no/such/config.json"],
        "no/such/config.json",
    );
    bad(&["--device", "cuda"], "cuda");
    // A character recipe points at weights this machine does not have: the message says how
    // to bench the shape anyway.
    let out = arp_train(&repo(), &["bench", "--recipe", "recipes/sheldon.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--lm-config"),
        "{}",
        text(&out.stderr)
    );
}

/// Stage one's memory per layer with `lm.activation_checkpointing` on (per-block recomputation):
/// on a mid-size GLM-4 (hidden 1024, seq 1024, LoRA r32 on four targets, fp32), the peak grows
/// per layer by about the layer's weights, its LoRA state and its kept input, not by its
/// activations. (burn's `BalancedCheckpointing`, used before, grew 0.245 GiB per layer here:
/// 4.6x this bound.)
#[test]
fn stage_one_memory_per_layer_is_its_weights_and_its_input() {
    let peak = |layers: usize| -> f64 {
        let layers = layers.to_string();
        let report = one_step_report(
            "lm",
            &[
                "--lm-config",
                "tests/fixtures/glm4-mid/config.json",
                "--seq-len",
                "1024",
                "--batch",
                "1",
                "--layers",
                &layers,
                "--set",
                "lm.lora.rank=32",
            ],
        );
        report["stages"][0]["peak_memory_bytes"].as_u64().unwrap() as f64
    };
    let per_layer = (peak(4) - peak(2)) / 2.0;
    // hidden 1024, 8 heads + 2 KV groups of 128, ffn 2816 (fused gate and up: 5632).
    let weights = 1024 * 1536 + 1536 + 1024 * 1024 + 1024 * 5632 + 2816 * 1024 + 2 * 1024;
    // LoRA r32: A [32, in] and B [out, 32] on each target; fp32 values, gradients, 2 moments.
    let lora = 32 * ((1024 + 1536) + (1024 + 1024) + (1024 + 5632) + (2816 + 1024));
    let input = 1024 * 1024;
    let expected = 4.0 * (weights + 4 * lora + input) as f64;
    println!(
        "per layer: {:.1} MiB measured, {:.1} MiB of weights, LoRA state and input",
        per_layer / (1 << 20) as f64,
        expected / (1 << 20) as f64
    );
    assert!(
        per_layer < 1.5 * expected,
        "stage one keeps {:.1} MiB per layer, expected about {:.1} MiB",
        per_layer / (1 << 20) as f64,
        expected / (1 << 20) as f64
    );
}
