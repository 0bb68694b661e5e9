//! The data scan on broken input: every bad clip or manifest line is rejected with its reason,
//! nothing panics, and the good clips are kept.

use std::path::Path;

use arp_train::audio::wav::write_mono_i16;
use arp_train::audio::Audio;
use arp_train::data::scan::scan;
use arp_train::recipe::QualityFilters;

use crate::common::{arp_train, repo, text, tiny_recipe};

fn filters() -> QualityFilters {
    QualityFilters {
        min_seconds: 0.5,
        max_seconds: 5.0,
        min_rms_dbfs: -50.0,
        max_clipped_fraction: 0.001,
        clip_level: 0.999,
        require_text: true,
    }
}

fn tone(seconds: f64, amplitude: f32) -> Audio {
    let rate = 16_000;
    let n = (seconds * rate as f64) as usize;
    Audio {
        samples: (0..n)
            .map(|i| amplitude * (i as f32 * 0.07).sin())
            .collect(),
        rate,
    }
}

fn write_float(path: &Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Writes a directory of good and broken clips with a manifest; returns the manifest path.
fn broken_corpus(dir: &Path) -> std::path::PathBuf {
    write_mono_i16(&dir.join("good.wav"), &tone(1.0, 0.3)).unwrap();
    write_mono_i16(&dir.join("good2.wav"), &tone(1.2, 0.3)).unwrap();
    // Truncated: a valid 1 s file cut in half.
    write_mono_i16(&dir.join("full.wav"), &tone(1.0, 0.3)).unwrap();
    let bytes = std::fs::read(dir.join("full.wav")).unwrap();
    std::fs::write(dir.join("truncated.wav"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join("empty.wav"), b"").unwrap();
    std::fs::write(
        dir.join("random.wav"),
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let mut nan = tone(1.0, 0.3).samples;
    nan[100] = f32::NAN;
    write_float(&dir.join("nan.wav"), &nan);
    write_float(&dir.join("zero-seconds.wav"), &[]);
    write_mono_i16(
        &dir.join("silent.wav"),
        &Audio {
            samples: vec![0.0; 16_000],
            rate: 16_000,
        },
    )
    .unwrap();
    write_mono_i16(
        &dir.join("clipped.wav"),
        &Audio {
            samples: (0..16_000)
                .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect(),
            rate: 16_000,
        },
    )
    .unwrap();
    write_mono_i16(&dir.join("long.wav"), &tone(6.0, 0.3)).unwrap();
    let line = |id: &str, file: &str, text: &str| {
        format!(r#"{{"id": "{id}", "audio": "{file}", "text": "{text}", "speaker": "ada"}}"#)
    };
    let lines = [
        line("good", "good.wav", "hello"),
        line("truncated", "truncated.wav", "x"),
        line("empty-file", "empty.wav", "x"),
        line("random", "random.wav", "x"),
        line("nan", "nan.wav", "x"),
        line("zero-seconds", "zero-seconds.wav", "x"),
        line("silent", "silent.wav", "x"),
        line("clipped", "clipped.wav", "x"),
        line("long", "long.wav", "x"),
        line("missing", "nowhere.wav", "x"),
        line("no-text", "good2.wav", " "),
        "{not json".to_string(),
        r#"{"id": "no-speaker", "audio": "good.wav", "text": "x"}"#.to_string(),
        r#"{"id": "backwards", "audio": "good.wav", "text": "x", "speaker": "ada", "start": 0.8, "end": 0.2}"#.to_string(),
        line("good", "good2.wav", "duplicate id"),
        r#"{"id": "past-end", "audio": "good.wav", "text": "x", "speaker": "ada", "start": 0.5, "end": 9.0}"#.to_string(),
        line("good2", "good2.wav", "fine"),
    ];
    let mut bytes = (lines.join("\n") + "\n").into_bytes();
    // Line 18: one byte that is not UTF-8 (a Latin-1 "é"); line 19: a 10 MB transcript;
    // line 20: a context turn of 20,000 characters. Each is rejected alone.
    let mut latin1 = line("latin1", "good.wav", "caf#").into_bytes();
    let at = latin1.iter().position(|&b| b == b'#').unwrap();
    latin1[at] = 0xE9;
    bytes.extend(latin1);
    bytes.push(b'\n');
    bytes.extend(line("huge", "good.wav", &"la ".repeat(3_500_000)).as_bytes());
    bytes.push(b'\n');
    let long_turn = format!(
        r#"{{"id": "long-context", "audio": "good.wav", "text": "x", "speaker": "ada", "context": [{{"speaker": "bob", "text": "{}"}}]}}"#,
        "y".repeat(20_000)
    );
    bytes.extend(long_turn.as_bytes());
    bytes.push(b'\n');
    let manifest = dir.join("manifest.jsonl");
    std::fs::write(&manifest, bytes).unwrap();
    manifest
}

#[test]
fn broken_clips_and_lines_are_rejected_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = broken_corpus(dir.path());
    let result = scan(&[manifest], &filters()).unwrap();
    let kept: Vec<&str> = result
        .kept
        .iter()
        .map(|k| k.utterance.id.as_str())
        .collect();
    assert_eq!(kept, ["good", "good2"]);
    let reason = |id: &str| {
        result
            .rejected
            .iter()
            .find(|r| r.id.as_deref() == Some(id))
            .map(|r| r.reason)
            .unwrap_or("none")
    };
    assert_eq!(reason("truncated"), "truncated");
    assert_eq!(reason("empty-file"), "undecodable");
    assert_eq!(reason("random"), "undecodable");
    assert_eq!(reason("nan"), "non_finite_samples");
    assert_eq!(reason("zero-seconds"), "too_short");
    assert_eq!(reason("silent"), "silent");
    assert_eq!(reason("clipped"), "clipped");
    assert_eq!(reason("long"), "too_long");
    assert_eq!(reason("missing"), "missing_file");
    assert_eq!(reason("no-text"), "empty_text");
    assert_eq!(reason("past-end"), "bad_segment");
    let malformed: Vec<usize> = result
        .rejected
        .iter()
        .filter(|r| r.reason == "malformed_line")
        .map(|r| r.line)
        .collect();
    assert_eq!(
        malformed,
        [12, 13, 14, 15, 18, 19, 20],
        "bad JSON, missing field, end before start, duplicate id, not UTF-8, 10 MB line, long context"
    );
    let detail = |line: usize| {
        let found = result.rejected.iter().find(|r| r.line == line).unwrap();
        found.detail.clone()
    };
    assert!(
        detail(18).contains("not valid UTF-8 (byte"),
        "{}",
        detail(18)
    );
    assert!(detail(19).contains("10500"), "{}", detail(19));
    assert!(
        detail(20).contains("`context[0].text` is 20000 characters"),
        "{}",
        detail(20)
    );
    let by_reason = result.rejected_by_reason();
    assert_eq!(by_reason.values().sum::<usize>(), 18);
}

#[test]
fn rejection_report_is_written_and_dry_run_lists_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = broken_corpus(dir.path());
    let result = scan(&[manifest.clone()], &filters()).unwrap();
    let report = dir.path().join("reports/data-rejections.jsonl");
    result.write_rejections(&report).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 18);
    assert!(lines
        .iter()
        .all(|l| l["reason"].is_string() && l["line"].is_u64() && l["manifest"].is_string()));

    let recipe = tiny_recipe(
        dir.path(),
        "r.yaml",
        &format!(
            "data:\n  manifests: [{}]\n  filters: {{max_seconds: 5.0}}\n",
            manifest.display()
        ),
    );
    let out = arp_train(
        dir.path(),
        &["--recipe", &recipe.display().to_string(), "--dry-run"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
    for expected in [
        "rejected truncated: 1",
        "rejected malformed_line: 7",
        "rejected non_finite_samples: 1",
        "2 kept",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "{}:13: line 13: malformed_line: invalid manifest line: missing field `speaker`",
            manifest.display()
        )),
        "{stdout}"
    );
}

#[test]
fn the_bundled_corpus_is_clean() {
    let manifest = repo().join("data/tiny-lab/manifest.jsonl");
    let result = scan(
        &[manifest],
        &QualityFilters {
            max_seconds: 30.0,
            ..filters()
        },
    )
    .unwrap();
    assert!(result.rejected.is_empty(), "{:?}", result.rejected);
    let speakers = result.per_speaker();
    assert_eq!(
        speakers.keys().collect::<Vec<_>>(),
        ["ada", "bram", "cyrus"]
    );
    assert!(
        result.kept.iter().any(|k| !k.utterance.context.is_empty()),
        "scenes give context"
    );
    assert!(
        result.kept.iter().any(|k| k.utterance.start.is_some()),
        "one scene uses start/end"
    );
}

/// `Ada` and `ada` are one speaker, with a note naming both places; the character `ada` gets the
/// lines of both spellings; `prepare` prints the per-reason counts and the report's path at the
/// default log level.
#[test]
fn speaker_names_match_without_case_and_prepare_counts_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = repo().join("data/tiny-lab/wavs");
    let line = |id: &str, speaker: &str, clip: &str| {
        format!(
            r#"{{"id": "{id}", "audio": "{}", "text": "I never guess. I compute.", "speaker": "{speaker}", "context": [{{"speaker": "BRAM", "text": "Hello."}}]}}"#,
            corpus.join(clip).display()
        )
    };
    let manifest = d.join("m.jsonl");
    let lines = [
        line("a1", "Ada", "tinylab-solo-ada-01.wav"),
        line("a2", "ada", "tinylab-solo-ada-02.wav"),
        line("a3", "ADA", "tinylab-solo-ada-03.wav"),
        line("b1", "bram", "tinylab-solo-bram-04.wav"),
        line("gone", "ada", "missing.wav"),
    ];
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    let result = scan(&[manifest.clone()], &filters()).unwrap();
    let speakers = result.per_speaker();
    assert_eq!(speakers.keys().collect::<Vec<_>>(), ["Ada", "BRAM"]);
    assert_eq!((speakers["Ada"].kept, speakers["Ada"].rejected), (3, 1));

    let recipe = tiny_recipe(
        d,
        "r.yaml",
        &format!("data:\n  manifests: [{}]\n", manifest.display()),
    );
    let output = d.join("out");
    let out = arp_train(
        d,
        &[
            "prepare",
            "--recipe",
            &recipe.display().to_string(),
            "--set",
            &format!("output_dir={}", output.display()),
            "--set",
            &format!("data.cache_dir={}", d.join("cache").display()),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let m = manifest.display();
    for expected in [
        format!("speaker `ada` ({m}:2) is taken as `Ada` (first at {m}:1)"),
        "speaker `ADA`".to_string(),
        "speaker `bram`".to_string(),
        "data checked: 4 kept, 1 rejected (missing_file 1); every rejection with its reason:"
            .into(),
        output
            .join("reports/data-rejections.jsonl")
            .display()
            .to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "{expected:?} missing:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.matches("is taken as").count(),
        3,
        "one note per spelling:\n{stderr}"
    );
}
