//! `arp-train build-data` on two synthetic episodes (tools/data/make_episodes.py: the tiny
//! corpus's three voices and one nobody enrolls, with pauses, overlapping turns, an SRT with
//! `NAME:` prefixes and an ASS script with Name fields), then the tiny recipe trained on the
//! manifest it wrote.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{arp_train_env, repo, speaker_encoder_weights, text};

fn episodes() -> std::path::PathBuf {
    repo().join("data/tiny-lab-episodes")
}

fn build(out: &Path) -> std::process::Output {
    let args: Vec<String> = [
        "build-data",
        "--episodes",
        &episodes().display().to_string(),
        "--enroll",
        &episodes().join("enroll.yaml").display().to_string(),
        "--out",
        &out.display().to_string(),
        "--speaker-encoder",
        &speaker_encoder_weights().display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    arp_train_env(&args, &[])
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn episodes_become_a_manifest_the_tiny_recipe_trains_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("built");
    let run = build(&out);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{}\n{stdout}", text(&run.stderr));
    println!("{stdout}");

    // Every line of an enrolled voice assigned to the right character (at least 95%), the
    // unenrolled voice's lines left to `other`, and both counted in the report.
    let truth = json_lines(&episodes().join("truth.jsonl"));
    let manifest = json_lines(&out.join("manifest.jsonl"));
    let assigned: HashMap<String, &str> = manifest
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["speaker"].as_str().unwrap(),
            )
        })
        .collect();
    let id = |t: &serde_json::Value| {
        format!(
            "{}-{:04}",
            t["episode"].as_str().unwrap(),
            t["line"].as_u64().unwrap()
        )
    };
    let enrolled: Vec<&serde_json::Value> =
        truth.iter().filter(|t| t["speaker"] != "dora").collect();
    let right = enrolled
        .iter()
        .filter(|t| assigned.get(&id(t)).copied() == t["speaker"].as_str())
        .count();
    let share = right as f64 / enrolled.len() as f64;
    println!(
        "{right} of {} lines of enrolled voices assigned right ({:.1}%)",
        enrolled.len(),
        100.0 * share
    );
    assert!(share >= 0.95, "{right} of {}", enrolled.len());
    let others = truth.iter().filter(|t| t["speaker"] == "dora");
    for t in others {
        assert!(
            !assigned.contains_key(&id(t)),
            "{} is nobody enrolled: {:?}",
            id(t),
            assigned.get(&id(t))
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let unassigned = report["other"]["lines"].as_u64().unwrap()
        + report["rejected"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>();
    assert_eq!(
        unassigned as usize,
        truth.len() - manifest.len(),
        "{report}"
    );
    assert!(
        report["subtitle_names"]["named"].as_u64().unwrap() >= 8,
        "{report}"
    );
    assert!(
        stdout.contains("subtitle speaker names: 10 lines named"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("Least certain"));

    // Context: the scene's earlier lines, `other` included; nothing from another scene.
    let line = |id: &str| manifest.iter().find(|l| l["id"] == id).unwrap();
    let after_dora = line("s02e01-0010");
    let context = after_dora["context"].as_array().unwrap();
    assert_eq!(context.len(), 3, "{after_dora}");
    assert_eq!(context[2]["speaker"], "other");
    assert_eq!(line("s02e01-0007")["context"].as_array().unwrap().len(), 0);
    // The episode by reference (relative to the manifest), its line by start/end.
    assert!(after_dora["audio"]
        .as_str()
        .unwrap()
        .ends_with("s02e01.m4a"));
    assert!(after_dora["start"].as_f64().unwrap() < after_dora["end"].as_f64().unwrap());

    // A rerun reads the cached embeddings and writes the same manifest.
    let before = std::fs::read(out.join("manifest.jsonl")).unwrap();
    assert!(std::fs::read_dir(out.join("cache")).unwrap().count() == 2);
    let rerun = build(&out);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    assert_eq!(std::fs::read(out.join("manifest.jsonl")).unwrap(), before);

    // The tiny recipe trains on it (Ada's lines), both stages, a few steps each.
    let output = dir.path().join("run");
    let mut args: Vec<String> = ["--recipe", "recipes/tiny.yaml", "--output"]
        .map(String::from)
        .to_vec();
    args.push(output.display().to_string());
    for set in [
        format!("data.manifests=[{}]", out.join("manifest.jsonl").display()),
        format!("data.cache_dir={}", dir.path().join("cache").display()),
        "lm.steps=2".into(),
        "lm.eval_every=100".into(),
        "decoder.flow.steps=2".into(),
        "decoder.flow.eval_every=100".into(),
        "decoder.hift.steps=2".into(),
        "decoder.hift.eval_every=100".into(),
    ] {
        args.extend(["--set".to_string(), set]);
    }
    let trained = arp_train_env(&args, &[]);
    let stdout = text(&trained.stdout);
    assert!(
        trained.status.success(),
        "{}\n{stdout}",
        text(&trained.stderr)
    );
    let kept_ada = manifest.iter().filter(|l| l["speaker"] == "ada").count();
    assert!(stdout.contains(&format!("{kept_ada}")), "{stdout}");
    assert!(output
        .join("lm/adapter/adapter_model.safetensors")
        .is_file());
    assert!(output.join("decoder/model/hift.safetensors").is_file());
}
