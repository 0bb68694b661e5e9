//! `arp-train build-data` on two synthetic episodes (tools/data/make_episodes.py: the tiny
//! corpus's three voices and one nobody enrolls, with pauses, overlapping turns, an SRT with
//! `NAME:` prefixes and an ASS script with Name fields), then the tiny recipe trained on the
//! manifest it wrote.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{arp_train_env, repo, speaker_encoder_weights, text, tiny_run_args};

fn episodes() -> std::path::PathBuf {
    repo().join("data/tiny-lab-episodes")
}

/// `arp-train build-data` on the bundled episodes.
fn build(out: &Path) -> std::process::Output {
    build_from(&episodes(), &episodes().join("enroll.yaml"), out)
}

fn build_from(episodes: &Path, enroll: &Path, out: &Path) -> std::process::Output {
    let args: Vec<String> = [
        "build-data",
        "--episodes",
        &episodes.display().to_string(),
        "--enroll",
        &enroll.display().to_string(),
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
    let manifests = format!("data.manifests=[{}]", out.join("manifest.jsonl").display());
    let args = tiny_run_args(
        &output,
        &dir.path().join("cache"),
        &[
            &manifests,
            "lm.steps=2",
            "lm.eval_every=100",
            "decoder.flow.steps=2",
            "decoder.flow.eval_every=100",
            "decoder.hift.steps=2",
            "decoder.hift.eval_every=100",
        ],
    );
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

/// A subtitle holding two speakers' turns (`- ...` / `- ...`, the usual way subtitles show a
/// quick exchange) is never trained on: it is rejected as `several_speakers` and stays in the
/// next lines' context.
#[test]
fn a_two_speaker_subtitle_is_context_only() {
    let dir = tempfile::tempdir().unwrap();
    let episodes_dir = dir.path().join("episodes");
    std::fs::create_dir(&episodes_dir).unwrap();
    std::fs::copy(episodes().join("s02e01.m4a"), episodes_dir.join("dash.m4a")).unwrap();
    // s02e01's first two turns (Ada, then Bram) as one cue, then Ada's next line.
    std::fs::write(
        episodes_dir.join("dash.srt"),
        "1\n00:00:01,000 --> 00:00:06,742\n- Good morning. The coffee machine has achieved sentience.\n\
         - Does it still make coffee?\n\n2\n00:00:07,144 --> 00:00:09,539\nOnly when it feels appreciated.\n",
    )
    .unwrap();
    let clips = episodes().join("../tiny-lab/wavs");
    let clip = |name: &str| clips.join(name).display().to_string();
    std::fs::write(
        dir.path().join("enroll.yaml"),
        format!(
            "characters:\n  ada: [{}]\n  bram: [{}]\n",
            clip("tinylab-solo-ada-01.wav"),
            clip("tinylab-solo-bram-04.wav")
        ),
    )
    .unwrap();
    let out = dir.path().join("built");
    let run = build_from(&episodes_dir, &dir.path().join("enroll.yaml"), &out);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{}\n{stdout}", text(&run.stderr));
    assert!(
        stdout.contains("rejected          1 lines (several_speakers 1)"),
        "{stdout}"
    );
    let rejected = json_lines(&out.join("rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["id"], "dash-0001");
    assert_eq!(rejected[0]["reason"], "several_speakers");
    let manifest = json_lines(&out.join("manifest.jsonl"));
    assert_eq!(manifest.len(), 1, "{manifest:?}");
    assert_eq!(
        (&manifest[0]["id"], &manifest[0]["speaker"]),
        (&"dash-0002".into(), &"ada".into())
    );
    let context = manifest[0]["context"].as_array().unwrap();
    assert_eq!(context.len(), 1);
    assert_eq!(context[0]["speaker"], "other");
    assert_eq!(
        context[0]["text"],
        "Good morning. The coffee machine has achieved sentience. - Does it still make coffee?"
    );
}
