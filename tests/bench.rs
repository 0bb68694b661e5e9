//! `arp-train bench`: the harness on the tiny recipe's shapes (CPU), its JSON (the PyTorch
//! baseline's input), and its errors. tools/bench_reference.py runs on that JSON in .ci/run.

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

#[test]
fn bench_stage_selection_and_bad_flags_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("flow.json");
    let out = arp_train(
        &repo(),
        &[
            "bench",
            "--recipe",
            "recipes/tiny.yaml",
            "--stages",
            "flow",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
