//! `arp-train build-data` on two synthetic episodes (tools/data/make_episodes.py: the tiny
//! corpus's three voices and one nobody enrolls, with pauses, overlapping turns, an SRT with
//! `NAME:` prefixes and an ASS script with Name fields), then the tiny recipe trained on the
//! manifest it wrote.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{arp_train_env, campplus_weights, repo, text, tiny_run_args};

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
        "--speaker-encoder-weights",
        &campplus_weights().display().to_string(),
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
    let episode_caches = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "enrollment.json")
        .count();
    assert_eq!(episode_caches, 2);
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

/// The bundled sample built once more into `out` from a copy of its episodes in `dir`, each
/// episode's audio replaced by `transform` of it (as 16-bit WAV), subtitles unchanged.
fn build_transformed(dir: &Path, transform: impl Fn(Vec<f32>) -> Vec<f32>) -> std::path::PathBuf {
    let copy = dir.join("episodes");
    std::fs::create_dir_all(&copy).unwrap();
    for (media, subtitles) in [("s02e01.m4a", "s02e01.srt"), ("s02e02.ogg", "s02e02.ass")] {
        let audio = arp_train::audio::read::read_mono(&episodes().join(media), None).unwrap();
        let stem = media.split('.').next().unwrap();
        let scaled = arp_train::audio::Audio {
            samples: transform(audio.samples),
            rate: audio.rate,
        };
        let wav = copy.join(format!("{stem}.wav"));
        arp_train::audio::wav::write_mono_i16(&wav, &scaled).unwrap();
        std::fs::copy(episodes().join(subtitles), copy.join(subtitles)).unwrap();
    }
    let enroll = std::fs::read_to_string(episodes().join("enroll.yaml"))
        .unwrap()
        .replace(
            "../tiny-lab/",
            &format!("{}/", repo().join("data/tiny-lab").display()),
        );
    std::fs::write(dir.join("enroll.yaml"), enroll).unwrap();
    let out = dir.join("built");
    let run = build_from(&copy, &dir.join("enroll.yaml"), &out);
    assert!(run.status.success(), "{}", text(&run.stderr));
    out
}

fn speakers(out: &Path) -> HashMap<String, String> {
    json_lines(&out.join("manifest.jsonl"))
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["speaker"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A quiet mix (speech at -49 dBFS RMS) and a loud one (peaks at 0 dBFS) keep every line the
/// normal mix keeps, with the same speakers: silence is judged against the episode's own level,
/// and clipping means flat runs at full scale, not a peak that touches it.
#[test]
fn quiet_and_loud_mixes_keep_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let normal = build_transformed(&dir.path().join("normal"), |s| s);
    let rms =
        |s: &[f32]| (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
    let quiet = build_transformed(&dir.path().join("quiet"), |s| {
        // The speech's level: RMS over the samples above a tenth of the peak.
        let peak = s.iter().fold(0f32, |m, x| m.max(x.abs()));
        let speech: Vec<f32> = s
            .iter()
            .copied()
            .filter(|x| x.abs() > peak / 10.0)
            .collect();
        let gain = 10f64.powf(-49.0 / 20.0) / rms(&speech);
        s.iter().map(|x| (*x as f64 * gain) as f32).collect()
    });
    let loud = build_transformed(&dir.path().join("loud"), |s| {
        let peak = s.iter().fold(0f32, |m, x| m.max(x.abs()));
        s.iter().map(|x| x / peak).collect()
    });
    let kept = speakers(&normal);
    assert!(kept.len() >= 30, "{kept:?}");
    for (mix, out) in [("quiet", &quiet), ("loud", &loud)] {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["rejected"], serde_json::json!({}), "{mix}: {report}");
        assert_eq!(speakers(out), kept, "{mix}");
    }
}

/// Listen and correct: report.html offers the least certain lines with players and a speaker
/// choice; a corrections file (a line to another character, one to `other`, one rejected) is
/// applied by a rerun from the cache in seconds, and a bad one is refused naming its line.
#[test]
fn corrections_rerun_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("built");
    let first = build(&out);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let players = html.matches("<audio controls").count();
    assert!(players >= 10, "{players} players");
    let clip = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(out.join(clip).is_file(), "{clip}");
    assert!(
        html.contains("<select data-id=\"s02e01-"),
        "a speaker choice per line"
    );
    assert!(!html.contains("<script>alert"), "subtitle text is escaped");

    let before = speakers(&out);
    let (to_bram, to_other, rejected) = ("s02e01-0001", "s02e01-0003", "s02e02-0002");
    assert_eq!(before[to_bram], "ada");
    std::fs::write(
        out.join("corrections.yaml"),
        format!("{to_bram}: Bram\n{to_other}: other\n{rejected}: reject\n"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let rerun = build(&out);
    let seconds = started.elapsed().as_secs_f64();
    let stdout = text(&rerun.stdout);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    println!("corrections rerun: {seconds:.2} s\n{stdout}");
    assert!(seconds < 5.0, "{seconds} s");
    assert!(stdout.contains("corrections applied: 3"), "{stdout}");
    let after = speakers(&out);
    assert_eq!(after[to_bram], "bram");
    assert!(!after.contains_key(to_other) && !after.contains_key(rejected));
    let rejections = json_lines(&out.join("rejected.jsonl"));
    assert!(rejections
        .iter()
        .any(|r| r["id"] == rejected && r["reason"] == "rejected_by_correction"));
    // Everything else stays as it was.
    let unchanged = before
        .iter()
        .filter(|(id, _)| ![to_bram, to_other, rejected].contains(&id.as_str()))
        .all(|(id, speaker)| after.get(id) == Some(speaker));
    assert!(unchanged, "{before:?}\n{after:?}");

    std::fs::write(
        out.join("corrections.yaml"),
        "s02e01-0001: bram\ns02e01-9999: ada\n",
    )
    .unwrap();
    let bad = build(&out);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("corrections.yaml:2: no subtitle line `s02e01-9999`"),
        "{stderr}"
    );
}

/// An MP3 episode decodes from seek points whose bit reservoir lies in the frames before:
/// symphonia warns on each, which is expected; a default run prints none of it.
#[test]
fn an_mp3_episode_prints_no_decoder_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("episodes");
    std::fs::create_dir_all(&copy).unwrap();
    let encoded = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(episodes().join("s02e01.m4a"))
        .args(["-c:a", "libmp3lame", "-b:a", "64k"])
        .arg(copy.join("s02e01.mp3"))
        .status()
        .expect("ffmpeg (installed by .ci/run) encodes the MP3 episode");
    assert!(encoded.success());
    std::fs::copy(episodes().join("s02e01.srt"), copy.join("s02e01.srt")).unwrap();
    let enroll = std::fs::read_to_string(episodes().join("enroll.yaml"))
        .unwrap()
        .replace(
            "../tiny-lab/",
            &format!("{}/", repo().join("data/tiny-lab").display()),
        );
    std::fs::write(dir.path().join("enroll.yaml"), enroll).unwrap();
    let run = build_from(
        &copy,
        &dir.path().join("enroll.yaml"),
        &dir.path().join("built"),
    );
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(!stderr.contains("main_data_begin"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(speakers(&dir.path().join("built")).len() >= 15);
}

/// The speaker encoder's weights are found in the user data directory whatever the working
/// directory; without them the command says how to fetch them (exit 2).
#[test]
fn the_speaker_encoder_is_found_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data-dir");
    let encoders = data.join("speaker-encoders");
    std::fs::create_dir_all(&encoders).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let run = |data_dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_arp-train"))
            .args(["build-data", "--episodes"])
            .arg(episodes())
            .arg("--enroll")
            .arg(episodes().join("enroll.yaml"))
            .arg("--out")
            .arg(dir.path().join("built"))
            .current_dir(&elsewhere)
            .env("ARP_TRAIN_DATA", data_dir)
            .env_remove("ARP_CAMPPLUS")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let missing = run(&data);
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("python3 tools/data/campplus_weights.py")
            && stderr.contains(&encoders.join("campplus.safetensors").display().to_string()),
        "{stderr}"
    );
    std::fs::copy(campplus_weights(), encoders.join("campplus.safetensors")).unwrap();
    let found = run(&data);
    assert!(found.status.success(), "{}", text(&found.stderr));
    assert!(dir.path().join("built/manifest.jsonl").is_file());
}

#[test]
fn subtitles_never_fail_silently() {
    let dir = tempfile::tempdir().unwrap();
    let episodes_dir = dir.path().join("episodes");
    std::fs::create_dir(&episodes_dir).unwrap();
    for name in ["bad", "latin", "noise"] {
        let media = episodes_dir.join(format!("{name}.m4a"));
        std::fs::copy(episodes().join("s02e01.m4a"), media).unwrap();
    }
    // One good cue among cues no line can come from; the negative one used to lose its sign and
    // become an 8.7 s clip.
    std::fs::write(
        episodes_dir.join("bad.srt"),
        "1\n-00:00:01,000 --> 00:00:09,539\nnegative\n\n2\n00:00:05,000 --> 00:00:04,000\nbackwards\n\n\
         3\n00:00:05,000 --> 00:00:05,000\nzero\n\n4\n99:00:00,000 --> 99:00:01,000\nabsurd\n\n\
         5\n00:00:07,144 --> 00:00:09,539\nOnly when it feels appreciated.\n",
    )
    .unwrap();
    let latin1: Vec<u8> =
        "1\n00:00:07,144 --> 00:00:09,539\nOnly when it feels appr\u{e9}ciated.\n"
            .chars()
            .map(|c| c as u32 as u8)
            .collect();
    std::fs::write(episodes_dir.join("latin.srt"), latin1).unwrap();
    let noise: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(episodes_dir.join("noise.srt"), &noise).unwrap();
    let clips = episodes().join("../tiny-lab/wavs");
    let clip = |name: &str| clips.join(name).display().to_string();
    let enroll = dir.path().join("enroll.yaml");
    std::fs::write(
        &enroll,
        format!(
            "characters:\n  ada: [{}]\n  bram: [{}]\n",
            clip("tinylab-solo-ada-01.wav"),
            clip("tinylab-solo-bram-04.wav")
        ),
    )
    .unwrap();
    let out = dir.path().join("built");
    let run = build_from(&episodes_dir, &enroll, &out);
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{stderr}\n{stdout}");
    assert!(
        stderr.contains(
            "noise.srt: no subtitle lines (no cue with a time line found; read as windows-1252)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("latin.srt: not UTF-8; read as windows-1252"),
        "{stderr}"
    );
    let rejected = json_lines(&out.join("rejected.jsonl"));
    let bad: Vec<(String, String)> = rejected
        .iter()
        .filter(|r| r.get("subtitle").is_some())
        .map(|r| {
            (
                r["subtitle"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let place = |line: usize| format!("../episodes/bad.srt:{line}");
    assert_eq!(
        bad,
        [
            (place(2), "bad_time".to_string()),
            (place(6), "no_length".to_string()),
            (place(10), "no_length".to_string()),
            (place(14), "bad_time".to_string()),
        ],
        "{rejected:?}"
    );
    assert!(stdout.contains("bad_time 2"), "{stdout}");
    let manifest = json_lines(&out.join("manifest.jsonl"));
    let texts: Vec<&str> = manifest
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"Only when it feels appr\u{e9}ciated."),
        "{texts:?}"
    );
    assert!(texts.iter().all(|t| !t.contains("negative")), "{texts:?}");

    // Subtitles that yield nothing anywhere: an error, not an empty manifest.
    let nothing = dir.path().join("nothing");
    std::fs::create_dir(&nothing).unwrap();
    std::fs::copy(episodes().join("s02e01.m4a"), nothing.join("e.m4a")).unwrap();
    std::fs::write(nothing.join("e.srt"), "").unwrap();
    let run = build_from(&nothing, &enroll, &dir.path().join("built-nothing"));
    let stderr = text(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("no subtitle lines in any episode's subtitles"),
        "{stderr}"
    );
    assert!(!dir.path().join("built-nothing/manifest.jsonl").exists());
}
