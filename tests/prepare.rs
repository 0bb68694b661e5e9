//! `arp-train prepare`: a complete dataset cache, reused on rerun, recomputed where audio
//! changed, identical after being killed (SIGKILL) five times and rerun.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arp_train::audio::mel::MelExtractor;
use arp_train::audio::{read, DECODER_RATE, TOKENIZER_RATE};
use arp_train::data::cache::{read_index, read_segment, segment_path};
use arp_train::models::whisper_vq::SpeechTokenizer;
use burn::backend::NdArray;

use crate::common::{repo, text};
use crate::speech_tokenizer::tiny_tokenizer_dir;

fn prepare(cache: &Path, extra: &[&str]) -> std::process::Output {
    let set = format!("data.cache_dir={}", cache.display());
    let mut args = vec![
        "prepare",
        "--recipe",
        "recipes/tiny.yaml",
        "--set",
        set.as_str(),
    ];
    args.extend_from_slice(extra);
    crate::common::arp_train(&repo(), &args)
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn prepare_fills_the_cache_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = prepare(&cache, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("prepared 21 utterances"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("(21 computed, 0 reused, 0 undecodable)"),
        "{}",
        text(&out.stdout)
    );

    let index = read_index(&cache).unwrap();
    assert_eq!(index.len(), 21);
    assert!(
        index
            .iter()
            .any(|e| e.context.iter().any(|t| t.segment.is_some())),
        "context turns point at their audio"
    );
    // Tokens and mel of one 16 kHz clip equal the tokenizer's and the mel extractor's own output.
    let entry = index
        .iter()
        .find(|e| e.id == "tinylab-solo-ada-01")
        .unwrap();
    let segment = read_segment(&segment_path(&cache, &entry.segment)).unwrap();
    let audio = read::read_mono(
        &repo().join("data/tiny-lab/wavs/tinylab-solo-ada-01.wav"),
        None,
    )
    .unwrap();
    let tokenizer =
        SpeechTokenizer::<NdArray<f32>>::load(&tiny_tokenizer_dir(), &Default::default()).unwrap();
    assert_eq!(
        segment.speech_tokens,
        tokenizer.tokenize(&[&audio.at_rate(TOKENIZER_RATE).samples])[0]
    );
    assert_eq!(segment.speech_tokens.len(), entry.speech_tokens);
    assert_eq!(
        segment.speech_tokens.len(),
        audio.samples.len().div_ceil(1280),
        "12.5 tokens per second"
    );
    let mel = MelExtractor::decoder().decoder_log_mel(&audio.at_rate(DECODER_RATE).samples);
    assert_eq!((segment.mel_frames, &segment.mel), (mel.frames, &mel.data));
    // A segment cut from a longer file (start/end in the manifest).
    let cut = index
        .iter()
        .find(|e| e.id == "tinylab-s01e03-sc04-02")
        .unwrap();
    assert!(
        (cut.seconds - 1.0).abs() < 1.5
            && cut.speech_tokens == (cut.seconds * 12.5).ceil() as usize,
        "{cut:?}"
    );

    let again = prepare(&cache, &[]);
    assert!(
        text(&again.stdout).contains("(0 computed, 21 reused, 0 undecodable)"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn changed_audio_and_given_tokens_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("wavs")).unwrap();
    let source = repo().join("data/tiny-lab");
    // Three lines: one with tokens given in the manifest, one whose context turn has broken audio.
    for clip in [
        "tinylab-solo-ada-01",
        "tinylab-solo-ada-02",
        "tinylab-solo-bram-04",
    ] {
        std::fs::copy(
            source.join(format!("wavs/{clip}.wav")),
            data.join(format!("wavs/{clip}.wav")),
        )
        .unwrap();
    }
    std::fs::write(data.join("wavs/broken.wav"), b"RIFF....WAVEjunk").unwrap();
    let manifest = [
        r#"{"id": "a1", "audio": "wavs/tinylab-solo-ada-01.wav", "text": "one", "speaker": "ada", "speech_tokens": [7, 8, 9]}"#,
        r#"{"id": "a2", "audio": "wavs/tinylab-solo-ada-02.wav", "text": "two", "speaker": "ada", "context": [{"speaker": "bram", "text": "hm", "audio": "wavs/broken.wav"}]}"#,
        r#"{"id": "b1", "audio": "wavs/tinylab-solo-bram-04.wav", "text": "three", "speaker": "bram"}"#,
    ];
    std::fs::write(data.join("manifest.jsonl"), manifest.join("\n")).unwrap();
    let cache = dir.path().join("cache");
    let manifests = format!("data.manifests=[{}]", data.join("manifest.jsonl").display());
    let out = prepare(&cache, &["--set", &manifests]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("prepared 3 utterances")
            && stdout.contains("(3 computed, 0 reused, 1 undecodable)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("context turns whose audio could not be decoded (kept as text): 1"),
        "{stdout}"
    );
    let index = read_index(&cache).unwrap();
    let a1 = read_segment(&segment_path(&cache, &index[0].segment)).unwrap();
    assert_eq!(
        (a1.speech_tokens.as_slice(), a1.meta.tokens_from.as_str()),
        ([7, 8, 9].as_slice(), "manifest")
    );
    assert_eq!(index[1].context[0].segment, None);

    // Rewrite one clip with other audio: only it is computed again.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(
        source.join("wavs/tinylab-solo-ada-03.wav"),
        data.join("wavs/tinylab-solo-bram-04.wav"),
    )
    .unwrap();
    let out = prepare(&cache, &["--set", &manifests]);
    assert!(
        text(&out.stdout).contains("(1 computed, 2 reused, 1 undecodable)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn killed_five_times_then_rerun_gives_the_same_cache() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    assert!(prepare(&reference, &[]).status.success());

    let cache = dir.path().join("killed");
    let set = format!("data.cache_dir={}", cache.display());
    let total = tree(&reference)
        .keys()
        .filter(|p| p.starts_with("segments"))
        .count();
    let segments_done = || {
        let dir = cache.join("segments");
        if !dir.exists() {
            return 0;
        }
        tree(&dir)
            .keys()
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .count()
    };
    // Kill points from a fixed seed: the first run after a short delay, the others once a random
    // number of further segments is on disk, or after a delay when (almost) all are.
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut kills = 0;
    for run in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let done = segments_done();
        // 0 = kill after a delay (start-up, data scan, or the index writing when all is done).
        let target = if run == 0 || done + 1 >= total {
            0
        } else {
            done + 1 + (seed as usize) % (total - 1 - done)
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_arp-train"))
            .args(["prepare", "--recipe", "recipes/tiny.yaml", "--set", &set])
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let reached = if target == 0 {
                started.elapsed() > Duration::from_millis(30 + seed % 200)
            } else {
                segments_done() >= target.min(total)
            };
            if reached || started.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
                println!(
                    "run {run}: killed with {} of {total} segments on disk",
                    segments_done()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 3,
        "most runs must be killed mid-way (killed {kills} of 5)"
    );
    let out = prepare(&cache, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (a, b) = (tree(&reference), tree(&cache));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files"
    );
    for (path, bytes) in &a {
        assert!(bytes == &b[path], "{} differs", path.display());
    }
}
