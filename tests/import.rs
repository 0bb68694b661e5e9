//! `arp-train import` on a small fixture of each format, built here from the tiny corpus's
//! clips; the manifests it writes pass the data scan with every line kept.

use std::path::Path;

use arp_train::data::scan::scan;
use arp_train::recipe::QualityFilters;

use crate::common::{arp_train, repo, text};

fn clip(name: &str) -> std::path::PathBuf {
    repo()
        .join("data/tiny-lab/wavs")
        .join(format!("{name}.wav"))
}

/// Runs the import and returns its manifest's lines (and the command's stderr).
fn import(dir: &Path, args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = dir.join("out/manifest.jsonl");
    let mut all = vec!["import", "--out", out.to_str().unwrap()];
    all.extend(args);
    let run = arp_train(dir, &all);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}\n{}", text(&run.stdout));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checked = scan(&[out], &QualityFilters::base()).unwrap();
    assert_eq!(checked.kept.len(), lines.len(), "{:?}", checked.rejected);
    (lines, stderr)
}

#[test]
fn glm4_voice_sft_turns_become_lines_with_the_conversation_as_context() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("audio")).unwrap();
    for name in [
        "tinylab-s01e01-sc01-01",
        "tinylab-s01e01-sc01-02",
        "tinylab-s01e01-sc01-03",
        "tinylab-s01e01-sc01-04",
    ] {
        std::fs::copy(clip(name), d.join(format!("audio/{name}.wav"))).unwrap();
    }
    let conversation = r#"{"id": 7, "turns": 2, "data": [
        {"user": {"wav_path": "audio/tinylab-s01e01-sc01-01.wav"}, "agent": {"wav_path": "audio/tinylab-s01e01-sc01-02.wav", "text": "That is not a fire. That is an experiment."}},
        {"user": {"wav_path": "audio/tinylab-s01e01-sc01-03.wav"}, "agent": {"wav_path": "audio/tinylab-s01e01-sc01-04.wav", "text": "Smoke is data. Write it down."}}]}"#;
    let sft = d.join("sft.jsonl");
    // A 2000-turn conversation: each line keeps the newest MAX_CONTEXT_TURNS earlier turns, so
    // the manifest grows linearly (it was 427 MB, every turn carrying all the earlier ones).
    let turn = r#"{"user": {"wav_path": "audio/tinylab-s01e01-sc01-01.wav", "text": "And?"}, "agent": {"wav_path": "audio/tinylab-s01e01-sc01-02.wav", "text": "That is not a fire."}}"#;
    let long = format!(
        r#"{{"id": "long", "data": [{}]}}"#,
        vec![turn; 2000].join(",")
    );
    let mut bytes = (conversation.replace('\n', "") + "\n{\"broken\": 1}\n").into_bytes();
    bytes.extend(b"{\"id\": \"caf\xe9\", \"data\": []}\n");
    bytes.extend(long.as_bytes());
    std::fs::write(&sft, bytes).unwrap();
    let (lines, stderr) = import(
        d,
        &[
            "--format",
            "glm4-voice-sft",
            "--input",
            sft.to_str().unwrap(),
            "--speaker",
            "ada",
        ],
    );
    assert_eq!(lines.len(), 2002);
    let last = &lines[2001];
    assert_eq!(last["id"], "long-1999");
    let context = last["context"].as_array().unwrap();
    assert_eq!(context.len(), arp_train::data::manifest::MAX_CONTEXT_TURNS);
    assert_eq!(context.last().unwrap()["text"], "And?");
    let size = std::fs::metadata(dir.path().join("out/manifest.jsonl"))
        .unwrap()
        .len();
    assert!(size < 40 << 20, "{size} bytes");
    assert!(
        stderr.contains("sft.jsonl:3: not UTF-8 (byte 12 of the line)"),
        "{stderr}"
    );
    assert_eq!(lines[1]["id"], "7-001");
    assert_eq!(lines[1]["speaker"], "ada");
    // Not beneath the manifest's directory: absolute.
    let audio = lines[1]["audio"].as_str().unwrap();
    assert!(
        audio.starts_with('/') && audio.ends_with("/audio/tinylab-s01e01-sc01-04.wav"),
        "{audio}"
    );
    let context = lines[1]["context"].as_array().unwrap();
    assert_eq!(context.len(), 3, "user, ada, user");
    assert_eq!(
        (
            context[0]["speaker"].as_str(),
            context[1]["speaker"].as_str()
        ),
        (Some("user"), Some("ada"))
    );
    assert!(
        stderr.contains("sft.jsonl:2: not a GLM-4-Voice SFT conversation"),
        "{stderr}"
    );

    // Without --speaker: a usage error that says what to pass.
    let run = arp_train(
        d,
        &[
            "import",
            "--format",
            "glm4-voice-sft",
            "--input",
            sft.to_str().unwrap(),
            "--out",
            "x.jsonl",
        ],
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(
        text(&run.stderr).contains("--speaker NAME"),
        "{}",
        text(&run.stderr)
    );
}

#[test]
fn ljspeech_metadata_becomes_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("LJSpeech-1.1");
    std::fs::create_dir_all(d.join("wavs")).unwrap();
    std::fs::copy(clip("tinylab-solo-ada-01"), d.join("wavs/LJ001-0001.wav")).unwrap();
    std::fs::copy(clip("tinylab-solo-ada-02"), d.join("wavs/LJ001-0002.wav")).unwrap();
    std::fs::write(
        d.join("metadata.csv"),
        b"LJ001-0001|I never guess; I compute.|I never guess. I compute.\nLJ001-0002|Please stand behind the yellow line.\nLJ001-0003|caf\xe9\nLJ001-0004|pipe|in|too|many|fields\n",
    )
    .unwrap();
    let (lines, stderr) = import(
        dir.path(),
        &[
            "--format",
            "ljspeech",
            "--input",
            d.to_str().unwrap(),
            "--speaker",
            "ada",
        ],
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["text"], "I never guess. I compute.",
        "the normalized text"
    );
    assert_eq!(lines[1]["text"], "Please stand behind the yellow line.");
    assert!(
        stderr.contains("metadata.csv:3: not UTF-8 (byte 15 of the line)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("metadata.csv:4: 6 fields; rows are `id|text|normalized text`"),
        "{stderr}"
    );
}

#[test]
fn speaker_folders_with_transcripts_become_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("voices");
    for (speaker, name, ext, transcript) in [
        (
            "ada",
            "tinylab-solo-ada-01",
            "txt",
            "I never guess.\nI compute.\n",
        ),
        (
            "bram",
            "tinylab-solo-bram-04",
            "lab",
            "I only wanted a sandwich.",
        ),
    ] {
        std::fs::create_dir_all(root.join(speaker)).unwrap();
        std::fs::copy(clip(name), root.join(format!("{speaker}/{name}.wav"))).unwrap();
        std::fs::write(root.join(format!("{speaker}/{name}.{ext}")), transcript).unwrap();
    }
    std::fs::copy(
        clip("tinylab-solo-ada-02"),
        root.join("ada/untranscribed.wav"),
    )
    .unwrap();
    std::fs::write(root.join("bram/no-clip.txt"), "Where is my audio?").unwrap();
    std::fs::copy(clip("tinylab-solo-bram-05"), root.join("bram/latin.wav")).unwrap();
    std::fs::write(root.join("bram/latin.txt"), b"caf\xe9").unwrap();
    let (lines, stderr) = import(
        dir.path(),
        &["--format", "folders", "--input", root.to_str().unwrap()],
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["speaker"].as_str(), lines[0]["text"].as_str()),
        (Some("ada"), Some("I never guess. I compute."))
    );
    assert_eq!(lines[1]["id"], "bram-tinylab-solo-bram-04");
    assert!(
        stderr.contains("untranscribed.wav: no .txt or .lab transcript"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no-clip.txt: a transcript with no audio clip of the same name"),
        "{stderr}"
    );
    assert!(stderr.contains("latin.txt: not UTF-8 (byte 4)"), "{stderr}");
}
