//! Every audio format arp-train reads, against ffmpeg's decode of the same file
//! (`tools/fixtures/audio_formats_reference.py` wrote both into tests/fixtures/audio/formats/).

use std::path::PathBuf;

use arp_train::audio::error::AudioError;
use arp_train::audio::{ffmpeg, read, Audio};

use crate::common::{arp_train_env, repo, text, tiny_prepare_args};

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/audio/formats")
}

/// (name, encoded file, ffmpeg's decode) of every fixture.
fn listed() -> Vec<(String, PathBuf, PathBuf)> {
    let text = std::fs::read_to_string(fixtures().join("formats.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap().to_string();
            (
                field("name"),
                fixtures().join(field("file")),
                fixtures().join(field("reference")),
            )
        })
        .collect()
}

/// The reference decode, mixed down to mono here (every channel's average).
fn reference(path: &PathBuf) -> Audio {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.sample_format, hound::SampleFormat::Float);
    let interleaved: Vec<f32> = reader.samples::<f32>().map(|s| s.unwrap()).collect();
    let channels = spec.channels as usize;
    Audio {
        samples: interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect(),
        rate: spec.sample_rate,
    }
}

/// Largest sample difference over the common length.
fn gap(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Decoded by arp-train without ffmpeg (AC-3 is the one fixture symphonia does not decode).
/// `aac-apple-delay` and `aac-no-edit-list` are the stereo AAC file with another MP4 edit list:
/// Apple's 2112 frames of encoder delay (it starts 1088 frames later than ffmpeg's 1024), and
/// none (nothing skipped). `two-tracks` holds two voices: the first track is read.
const NATIVE: [&str; 9] = [
    "flac",
    "mp3",
    "vorbis",
    "alac",
    "aac-stereo",
    "aac",
    "aac-apple-delay",
    "aac-no-edit-list",
    "two-tracks",
];
/// Largest difference from ffmpeg's samples. Measured: FLAC and ALAC 0, MP3 8.1e-7,
/// Vorbis 1.8e-7, AAC 1.5e-6 (float rounding in the two decoders).
const SAMPLE_TOLERANCE: f32 = 1e-5;
/// Frames the two decoders may disagree on at the end: ffmpeg's Vorbis decoder drops the last
/// 256 frames (the file's granule position says 16,000: arp-train gives 16,000), and ffmpeg
/// keeps AAC's padding to a whole 1024-frame packet.
const LENGTH_TOLERANCE: usize = 1024;

/// Checks `got` against ffmpeg's decode; the failure, if any.
fn compare(name: &str, got: &Audio, want: &Audio) -> Option<String> {
    let worst = gap(&got.samples, &want.samples);
    println!(
        "{name}: {} Hz, {} samples (ffmpeg: {} at {} Hz), largest difference {worst:e}",
        got.rate,
        got.samples.len(),
        want.samples.len(),
        want.rate
    );
    let lengths = got.samples.len().abs_diff(want.samples.len());
    (got.rate != want.rate || lengths > LENGTH_TOLERANCE || worst > SAMPLE_TOLERANCE)
        .then(|| format!("{name}: difference {worst:e}, lengths differ by {lengths}"))
}

#[test]
fn every_format_decodes_like_ffmpeg() {
    let mut failures = Vec::new();
    for (name, file, reference_file) in listed() {
        if !NATIVE.contains(&name.as_str()) {
            continue;
        }
        let got = read::read_mono(&file, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        failures.extend(compare(&name, &got, &reference(&reference_file)));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The languages of a file's audio tracks, which build-data names when there are several.
#[test]
fn audio_track_languages_are_listed_in_file_order() {
    use arp_train::audio::compressed::audio_track_languages;
    let languages = audio_track_languages(&fixtures().join("two-tracks.mka"));
    assert_eq!(languages, [Some("eng".into()), Some("jpn".into())]);
    assert_eq!(
        audio_track_languages(&fixtures().join("flac.flac")).len(),
        1
    );
}

/// A `start`/`end` segment (read by seeking) is the same span of the whole decode.
#[test]
fn segments_seek_to_the_same_samples() {
    let (start, end) = (0.4, 0.7);
    for (name, file, _) in listed() {
        if !NATIVE.contains(&name.as_str()) {
            continue;
        }
        let whole = read::read_mono(&file, None).unwrap();
        let part = read::read_mono(&file, Some((start, Some(end)))).unwrap();
        let first = (start * whole.rate as f64).round() as usize;
        let last = (end * whole.rate as f64).round() as usize;
        let want = &whole.samples[first..last];
        let worst = gap(&part.samples, want);
        println!(
            "{name}: segment of {} samples, largest difference {worst:e}",
            part.samples.len()
        );
        assert_eq!(part.samples.len(), want.len(), "{name}");
        // Measured: 0 for every file but the AAC one with noise substitution (7.5e-3: its noise
        // bands come from a generator whose state depends on where decoding began).
        let tolerance = if name == "aac" { 1e-2 } else { 1e-6 };
        assert!(worst <= tolerance, "{name}: {worst:e}");
    }
    // A segment past the end is refused, naming the file's length.
    let (_, flac, _) = listed().into_iter().find(|(n, ..)| n == "flac").unwrap();
    let err = read::read_mono(&flac, Some((0.5, Some(3.0)))).unwrap_err();
    assert!(matches!(err, AudioError::BadSegment { .. }), "{err}");
    assert!(err.to_string().contains("1.000 s"), "{err}");
}

/// AC-3 in Matroska, which symphonia does not decode: through ffmpeg when it is on PATH, else
/// a rejection that names the fix. Both seen through `arp-train prepare`, as a user would.
#[test]
fn other_codecs_go_through_ffmpeg_or_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ac3 = fixtures().join("ac3.mka");
    let manifest = dir.path().join("manifest.jsonl");
    let line = |id: &str, audio: &PathBuf| {
        format!(
            r#"{{"id": "{id}", "audio": "{}", "text": "I never guess.", "speaker": "ada"}}"#,
            audio.display()
        )
    };
    let flac = fixtures().join("flac.flac");
    std::fs::write(
        &manifest,
        format!("{}\n{}\n", line("ac3", &ac3), line("flac", &flac)),
    )
    .unwrap();
    let prepare = |output: &str, env: &[(&str, &str)]| {
        let output = dir.path().join(output);
        let args = tiny_prepare_args(&manifest, &output, &dir.path().join("cache"));
        let out = arp_train_env(&args, env);
        let rejections = std::fs::read_to_string(output.join("reports/data-rejections.jsonl"))
            .unwrap_or_default();
        (out, rejections)
    };
    // No ffmpeg on PATH: the line is rejected with the way out.
    let (out, rejections) = prepare("without", &[("PATH", "/nonexistent")]);
    let stderr = text(&out.stderr);
    assert!(
        rejections.contains(r#""id":"ac3""#),
        "{rejections}\n{stderr}"
    );
    assert!(rejections.contains("install ffmpeg"), "{rejections}");
    assert!(!rejections.contains(r#""id":"flac""#), "{rejections}");

    if !ffmpeg::available() {
        eprintln!("ffmpeg is not on PATH: its decode of AC-3 not checked");
        return;
    }
    let (out, rejections) = prepare("with", &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!rejections.contains(r#""id":"ac3""#), "{rejections}");
    assert!(stderr.contains("with ffmpeg"), "says so once: {stderr}");
    let got = read::read_mono(&ac3, None).unwrap();
    let failure = compare(
        "ac3 (ffmpeg)",
        &got,
        &reference(&fixtures().join("ac3.ref.wav")),
    );
    assert!(failure.is_none(), "{failure:?}");
}
