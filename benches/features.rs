//! Feature-extraction throughput: both log-mel recipes over the bundled corpus, one core,
//! against the numpy reference (tools/fixtures/mel_reference.py --bench) measured in the same run.
//!
//!     cargo bench --bench features
//!
//! Set ARP_PYTHON to a Python with numpy + scipy (default: python3). Prints seconds of audio
//! per second for each side and the ratio; inputs are resampled beforehand on both sides, so
//! only the mel computation is timed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use arp_train::audio::mel::MelExtractor;
use arp_train::audio::{wav, Audio, DECODER_RATE, TOKENIZER_RATE};

const REPEATS: usize = 3;

fn corpus(repo: &Path) -> Vec<Audio> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo.join("data/tiny-lab/wavs"))
        .expect("bundled corpus")
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.push(repo.join("data/tiny-lab/scene-04.wav"));
    paths.push(repo.join("tests/fixtures/audio/stereo-44k1-24bit.wav"));
    paths
        .iter()
        .map(|p| wav::read_mono(p, None).expect("corpus clip decodes"))
        .collect()
}

/// Best of `REPEATS` wall times for `f` over all inputs, as seconds of audio per second.
fn throughput(inputs: &[Vec<f32>], rate: u32, f: impl Fn(&[f32])) -> f64 {
    let seconds: f64 = inputs.iter().map(|x| x.len() as f64 / rate as f64).sum();
    let best = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            for x in inputs {
                f(x);
            }
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    seconds / best
}

fn numpy_reference(repo: &Path) -> Result<serde_json::Value, String> {
    let python = std::env::var("ARP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(repo.join("tools/fixtures/mel_reference.py"))
        .arg("--bench")
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{python} tools/fixtures/mel_reference.py --bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .map_err(|e| format!("bad reference output: {e}"))
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let clips = corpus(&repo);
    let at16: Vec<Vec<f32>> = clips
        .iter()
        .map(|a| a.at_rate(TOKENIZER_RATE).samples)
        .collect();
    let at22: Vec<Vec<f32>> = clips
        .iter()
        .map(|a| a.at_rate(DECODER_RATE).samples)
        .collect();
    let whisper = MelExtractor::whisper();
    let decoder = MelExtractor::decoder();
    let rust_whisper = throughput(&at16, TOKENIZER_RATE, |x| {
        std::hint::black_box(whisper.whisper_log_mel(x));
    });
    let rust_decoder = throughput(&at22, DECODER_RATE, |x| {
        std::hint::black_box(decoder.decoder_log_mel(x));
    });
    let audio: f64 = at16.iter().map(|x| x.len() as f64 / 16_000.0).sum();
    println!(
        "feature extraction, {audio:.1} s of audio ({} clips), one core, best of {REPEATS}",
        clips.len()
    );
    println!(
        "{:<10} {:>14} {:>14} {:>8}",
        "mel", "arp-train x RT", "numpy x RT", "ratio"
    );
    let reference = numpy_reference(&repo);
    for (name, rust) in [("whisper", rust_whisper), ("decoder", rust_decoder)] {
        match &reference {
            Ok(r) => {
                let numpy = r[name].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{name:<10} {rust:>14.0} {numpy:>14.0} {:>7.2}x",
                    rust / numpy
                );
            }
            Err(_) => println!("{name:<10} {rust:>14.0} {:>14} {:>8}", "n/a", "n/a"),
        }
    }
    if let Err(e) = reference {
        println!("numpy reference not measured: {e}");
    }
}
