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

/// A character recipe before its weights and data are downloaded (as on a fresh clone): the
/// dry run plans it from the released models' configs shipped in the checkout and lists what
/// is missing with where to get it; `validate --strict` and a real run still refuse it.
#[test]
fn a_dry_run_plans_a_character_before_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let absent = |name: &str| dir.path().join(name).display().to_string();
    let sets = [
        format!("lm.base_model={}", absent("glm-4-voice-9b")),
        format!(
            "decoder.config={}",
            absent("glm-4-voice-decoder/config.yaml")
        ),
        format!("data.speech_tokenizer={}", absent("glm-4-voice-tokenizer")),
        format!("data.manifests=[{}]", absent("manifest.jsonl")),
        format!("output_dir={}", absent("run")),
    ];
    let with = |first: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = first.iter().map(|s| s.to_string()).collect();
        for set in &sets {
            args.extend(["--set".to_string(), set.clone()]);
        }
        args
    };
    let args = with(&[
        "--recipe",
        "recipes/sheldon.yaml",
        "--dry-run",
        "--device",
        "cpu",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = arp_train(&repo(), &args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    for expected in [
        "lm: 9.54 B total",
        "lm memory estimate per step:",
        "decoder parameters: flow 111.17 M, hift 20.46 M",
        "sized from the released GLM-4-Voice-9B's config (models/released/glm-4-voice-9b/config.json)",
        "1. lm       train 3 epochs (the steps follow from the data: none yet)",
        "== not there yet: a run refuses to start without these (4) ==",
        "`lm.base_model`: GLM-4-Voice-9B model directory not found",
        "download THUDM/glm-4-voice-9b there",
        "`data.manifests`: manifest not found",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }

    for first in [
        &["validate", "--strict", "recipes/sheldon.yaml"][..],
        &["--recipe", "recipes/sheldon.yaml", "--device", "cpu"][..],
    ] {
        let args = with(first);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = arp_train(&repo(), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{first:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr)
                .contains("error: `lm.base_model`: GLM-4-Voice-9B model directory not found"),
            "{first:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        !dir.path().join("run").exists(),
        "nothing is written for a refused run"
    );
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

    // The recipe is checked for the device `--device` names: bf16 is fine for CUDA though the
    // tiny recipe says `device: cpu`, and the memory estimate is bf16's.
    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--device",
            "cuda",
            "--set",
            "dtype=bf16",
            "--dry-run",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("frozen at 2 bytes/param"), "{stdout}");
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
fn wgpu_without_an_adapter_says_why() {
    // Vulkan (wgpu's API on Linux) pointed at a driver manifest that does not exist: no
    // adapter, a clear error and exit 2 before any work, never a panic. (Working adapters,
    // lavapipe included, are tested in tests/wgpu_backend.rs.)
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--recipe",
        "recipes/tiny.yaml",
        "--device",
        "wgpu",
        "--output",
        &dir.path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let missing = dir.path().join("no-such-icd.json").display().to_string();
    let out = crate::common::arp_train_env(
        &args,
        &[
            ("VK_ICD_FILENAMES", missing.as_str()),
            ("VK_DRIVER_FILES", missing.as_str()),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("device `wgpu` is not usable on this machine: no usable wgpu adapter"),
        "{stderr}"
    );
    assert!(!dir.path().join("lm").exists());
}
