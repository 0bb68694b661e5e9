//! Hostile inputs and interruptions (issue 18): each must fail fast with a clear message, in
//! bounded memory, without damaging what earlier runs produced.

use crate::common::*;

const GIB: u64 = 1 << 30;

/// A "billion laughs" YAML document: nine levels of nine aliases each, 9^10 strings expanded.
fn alias_bomb() -> String {
    let mut text = String::from("character: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let prior = format!("*l{}", level - 1);
        let items = vec![prior.as_str(); 9].join(", ");
        text.push_str(&format!("x{level}: &l{level} [{items}]\n"));
    }
    text
}

#[test]
fn an_alias_bomb_recipe_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bomb.yaml"), alias_bomb()).unwrap();
    let run = arp_train_measured(dir.path(), &["validate", "--strict", "bomb.yaml"]);
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("bomb.yaml:"), "{all}");
    assert!(all.contains("expands to more than"), "{all}");
    assert!(run.peak_bytes < GIB, "peak {} bytes", run.peak_bytes);
    eprintln!(
        "validate on an alias bomb: peak {:.1} MiB",
        run.peak_bytes as f64 / (1 << 20) as f64
    );

    // The same document as a sweep file (read by serde_yaml) is refused as well.
    std::fs::write(
        dir.path().join("sweep.yaml"),
        alias_bomb().replace("character", "grid"),
    )
    .unwrap();
    let sweep = arp_train_measured(dir.path(), &["sweep", "sweep.yaml", "--dry-run"]);
    assert_eq!(sweep.code, Some(2), "{}{}", sweep.stdout, sweep.stderr);
    assert!(sweep.peak_bytes < GIB, "peak {} bytes", sweep.peak_bytes);

    // A file too large to be a recipe is refused before it is read.
    let huge = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(64 << 20).unwrap();
    let out = arp_train(dir.path(), &["validate", "huge.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("too large") || text(&out.stderr).contains("too large"));
}

/// The tiny decoder with two tensors of different shapes under each other's names.
fn decoder_with_swapped_tensors(dir: &std::path::Path) -> (String, String) {
    copy_dir(&repo().join("models/tiny/glm-4-voice-decoder"), dir);
    let path = dir.join("hift.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let first = 0;
    let second = (1..tensors.len())
        .find(|&i| tensors[i].1.shape() != tensors[first].1.shape())
        .unwrap();
    let (a, b) = (tensors[first].0.clone(), tensors[second].0.clone());
    tensors[first].0 = b.clone();
    tensors[second].0 = a.clone();
    safetensors::serialize_to_file(tensors, None, &path).unwrap();
    (a, b)
}

#[test]
fn checkpoints_that_do_not_fit_their_config_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let set = |key: &str, path: &std::path::Path| format!("{key}={}", path.display());

    // A 2-layer checkpoint whose config.json says 1 layer: once trained and exported as 1 layer.
    let lm = dir.path().join("one-layer-config");
    copy_dir(&repo().join("models/tiny/glm-4-voice-9b"), &lm);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lm.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_layers"], 2);
    config["num_layers"] = 1.into();
    std::fs::write(lm.join("config.json"), config.to_string()).unwrap();
    let lm_set = set("lm.base_model", &lm);
    let out = arp_train(
        &repo(),
        &[
            "validate",
            "--strict",
            "recipes/tiny.yaml",
            "--set",
            &lm_set,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("`lm.base_model`: unusable checkpoint"),
        "{err}"
    );
    assert!(
        err.contains("at least 2 layers but config.json says num_layers = 1"),
        "{err}"
    );
    let run = dir.path().join("run");
    let run_arg = run.display().to_string();
    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--output",
            &run_arg,
            "--set",
            &lm_set,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!run.join("lm").exists() && !run.join("arp-model").exists());

    // A truncated shard fails `validate --strict` from its header, naming the file.
    let truncated = dir.path().join("truncated");
    copy_dir(&repo().join("models/tiny/glm-4-voice-9b"), &truncated);
    let shard = truncated.join("model.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 64]).unwrap();
    let truncated_set = set("lm.base_model", &truncated);
    let out = arp_train(
        &repo(),
        &[
            "validate",
            "--strict",
            "recipes/tiny.yaml",
            "--set",
            &truncated_set,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("model.safetensors is not a valid safetensors file"),
        "{err}"
    );
    // Without --strict, weights that are not there yet are only a warning.
    std::fs::remove_file(&shard).unwrap();
    let out = arp_train(
        &repo(),
        &["validate", "recipes/tiny.yaml", "--set", &truncated_set],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(needed to run)"),
        "{}",
        text(&out.stderr)
    );

    // A frozen decoder is packaged as it is: one whose tensors do not fit is refused up front.
    let swapped = dir.path().join("swapped");
    let (a, b) = decoder_with_swapped_tensors(&swapped);
    let decoder_set = set("decoder.init", &swapped);
    let out = arp_train(
        &repo(),
        &[
            "--recipe",
            "recipes/tiny.yaml",
            "--output",
            &run_arg,
            "--set",
            &decoder_set,
            "--set",
            "freeze=[decoder]",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("`decoder.init`: unusable decoder"), "{err}");
    assert!(
        err.contains(&format!("`{a}`")) || err.contains(&format!("`{b}`")),
        "{err}"
    );
    assert!(!run.join("lm").exists() && !run.join("arp-model").exists());
}

#[test]
fn rejections_name_the_real_cause_and_standalone_prepare_reports_them() {
    use arp_train::audio::wav::write_mono_i16;
    use arp_train::audio::Audio;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tone = Audio {
        samples: (0..16_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect(),
        rate: 16_000,
    };
    write_mono_i16(&d.join("good.wav"), &tone).unwrap();
    std::os::unix::fs::symlink("loop.wav", d.join("loop.wav")).unwrap();
    std::fs::write(
        d.join("song.wav"),
        b"ID3\x03\x00\x00\x00\x00\x00\x00 mp3 frames",
    )
    .unwrap();
    // A WAV header whose data chunk claims 2 GiB in a 1 KiB file.
    let mut forged = std::fs::read(d.join("good.wav")).unwrap()[..44].to_vec();
    forged[40..44].copy_from_slice(&(1u32 << 31).to_le_bytes());
    forged.resize(1024, 0);
    std::fs::write(d.join("forged.wav"), forged).unwrap();
    let line = |id: &str, audio: &str, extra: &str| {
        format!(r#"{{"id": "{id}", "audio": "{audio}", "text": "x", "speaker": "ada"{extra}}}"#)
    };
    let manifest = d.join("manifest.jsonl");
    let lines = [
        line("good", "good.wav", ""),
        line("loop", "loop.wav", ""),
        line("song", "song.wav", ""),
        line("forged", "forged.wav", ""),
        line("good", "good.wav", ""),
        line("far", "good.wav", r#", "start": 0.5, "end": 1e308"#),
    ];
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    let output = d.join("run");
    let out = arp_train_env(
        &tiny_prepare_args(&manifest, &output, &d.join("cache")),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = std::fs::read_to_string(output.join("reports/data-rejections.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let detail = |line: u64| {
        let row = rows
            .iter()
            .find(|r| r["line"] == line)
            .unwrap_or_else(|| panic!("{report}"));
        (
            row["reason"].as_str().unwrap().to_string(),
            row["detail"].as_str().unwrap().to_string(),
            row["id"].clone(),
        )
    };
    let (reason, text_2, _) = detail(2);
    assert_eq!(reason, "undecodable");
    assert!(text_2.contains("symbolic links"), "{text_2}");
    // Junk after an ID3 tag: neither symphonia nor ffmpeg (used when it is on PATH) reads it.
    let (reason, text_3, _) = detail(3);
    assert_eq!(reason, "undecodable");
    assert!(text_3.contains("ffmpeg"), "{text_3}");
    let (reason, text_4, _) = detail(4);
    assert_eq!(reason, "truncated");
    assert!(
        text_4.contains("declares 2147483648 bytes but the whole file has 1024"),
        "{text_4}"
    );
    let (_, text_5, id) = detail(5);
    assert!(text_5.contains("duplicate id"), "{text_5}");
    assert_eq!(id, "good");
    let (reason, text_6, _) = detail(6);
    assert_eq!(reason, "bad_segment");
    assert!(
        text_6.contains("1.000e308") && text_6.len() < 200,
        "{text_6}"
    );

    // synth with a decoder that is not there speaks of the flag, not of a recipe; bad input is 2.
    let out = arp_train(
        &repo(),
        &[
            "synth",
            "--decoder",
            "/nonexistent",
            "--tokens",
            "1 2 3",
            "--out",
            "x.wav",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--decoder /nonexistent: no such directory") && !err.contains("recipe"),
        "{err}"
    );
}

#[test]
fn synth_refuses_codes_beyond_its_limit_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let decoder = repo().join("models/tiny/glm-4-voice-decoder");
    let decoder_arg = decoder.display().to_string();
    let config = arp_train::models::decoder::read_config(&decoder.join("config.yaml")).unwrap();
    let limit = arp_train::models::decoder::synthesis::max_codes(&config);
    assert!(
        limit >= 500,
        "a limit of {limit} codes would refuse ordinary replies"
    );

    let codes = |n: usize| -> String {
        let list: Vec<String> = (0..n).map(|i| (i % 7).to_string()).collect();
        let file = dir.path().join(format!("codes-{n}.txt"));
        std::fs::write(&file, list.join(" ")).unwrap();
        file.display().to_string()
    };
    let out_wav = dir.path().join("out.wav").display().to_string();
    let long = codes(200_000);
    let run = arp_train_measured(
        dir.path(),
        &[
            "synth",
            "--decoder",
            &decoder_arg,
            "--codes",
            &long,
            "--out",
            &out_wav,
            "--device",
            "cpu",
        ],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("200000 speech codes (266.7 minutes of speech) are more than one synthesis takes: at most {limit}")),
        "{}",
        run.stderr
    );
    assert!(run.peak_bytes < GIB, "peak {} bytes", run.peak_bytes);
    eprintln!(
        "synth on 200,000 codes: peak {:.1} MiB",
        run.peak_bytes as f64 / (1 << 20) as f64
    );

    // At the limit it synthesizes, within the memory the limit is meant to bound.
    let at_limit = codes(limit);
    let run = arp_train_measured(
        dir.path(),
        &[
            "synth",
            "--decoder",
            &decoder_arg,
            "--codes",
            &at_limit,
            "--out",
            &out_wav,
            "--device",
            "cpu",
            "--steps",
            "1",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.peak_bytes < 2 * GIB, "peak {} bytes", run.peak_bytes);
    eprintln!(
        "synth on {limit} codes: peak {:.1} MiB",
        run.peak_bytes as f64 / (1 << 20) as f64
    );
}

/// The flow's `--steps` of `synth` and `eval` has a documented range (1 to 1000): a billion
/// steps is refused by the parser, before any decoder is read.
#[test]
fn flow_steps_are_bounded() {
    for (command, steps) in [
        (
            &[
                "synth",
                "--decoder",
                "none",
                "--tokens",
                "1",
                "--out",
                "x.wav",
            ][..],
            "1000000000",
        ),
        (
            &[
                "synth",
                "--decoder",
                "none",
                "--tokens",
                "1",
                "--out",
                "x.wav",
            ][..],
            "0",
        ),
        (&["eval", "--wavs", "none"][..], "1001"),
    ] {
        let mut args = command.to_vec();
        args.extend(["--steps", steps]);
        let out = arp_train(&repo(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("{steps} is not in 1..=1000")),
            "{args:?}: {stderr}"
        );
    }
}

/// A prompt longer than the model's context (the tiny model's seq_length is 512) is refused
/// with its token count before the model is loaded; a reply that would run past the context is
/// cut there, with a note.
#[test]
fn prompts_past_the_models_context_are_refused() {
    let long = "word ".repeat(20_000);
    let run = arp_train_measured(
        &repo(),
        &[
            "generate",
            "--model",
            "models/tiny/glm-4-voice-9b",
            "--prompt",
            &long,
            "--device",
            "cpu",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "tokens (system prompt, persona and your turn), and the model's context is 512"
        ),
        "{}",
        run.stderr
    );
    assert!(run.peak_bytes < GIB, "peak {} bytes", run.peak_bytes);

    let out = arp_train(
        &repo(),
        &[
            "generate",
            "--model",
            "models/tiny/glm-4-voice-9b",
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "100000",
            "--device",
            "cpu",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the reply is cut at"), "{stderr}");
}
