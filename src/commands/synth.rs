//! `arp-train synth`: speech codes -> 22.05 kHz WAV through a GLM-4-Voice-Decoder directory
//! (flow: Euler steps on the cosine schedule with the configured CFG rate, zero speaker
//! embedding; then HiFT).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::Exit;
use crate::audio::{wav, Audio};
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::models::decoder::{load_flow, load_hift, read_config, CONFIG_FILE};
use crate::models::decoder_config::DecoderModelConfig;
use crate::models::flow::Flow;
use crate::models::hift::Hift;
use crate::rng::Rng;
use crate::train::vocoder::vocode;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// A GLM-4-Voice-Decoder directory (config.yaml, flow.safetensors, hift.safetensors), or
    /// an ARP-Model package (its decoder is used).
    #[arg(long, value_name = "DIR")]
    pub decoder: PathBuf,
    /// Speech codes: `generate --codes-out` JSON, or whitespace/comma-separated integers or
    /// `<|audio_N|>` tokens.
    #[arg(long, value_name = "FILE", conflicts_with = "tokens")]
    pub codes: Option<PathBuf>,
    /// Speech codes given inline (same forms as the file).
    #[arg(long)]
    pub tokens: Option<String>,
    #[arg(long, value_name = "WAV")]
    pub out: PathBuf,
    /// Euler steps of the flow (GLM-4-Voice uses 10).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Seed of the flow's starting noise and the source's noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Parses codes from any of the accepted forms.
pub fn parse_codes(text: &str) -> Result<Vec<u32>, String> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let list = value.get("codes").cloned().unwrap_or(value);
        if let Some(items) = list.as_array() {
            return items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("not a speech code: {v}"))
                })
                .collect();
        }
    }
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|s| !s.is_empty())
        .flat_map(|s| {
            // `<|audio_12|><|audio_7|>` may come without separators.
            s.split("<|")
                .filter(|p| !p.is_empty())
                .map(|p| p.trim_end_matches("|>").to_string())
                .collect::<Vec<_>>()
        })
        .map(|s| {
            let n = s.strip_prefix("audio_").unwrap_or(&s);
            n.parse::<u32>()
                .map_err(|_| format!("not a speech code: {s:?}"))
        })
        .collect()
}

/// The bytes one attention score matrix (every head, fp32) may take in one synthesis.
const MAX_ATTENTION_BYTES: f64 = 512.0 * 1024.0 * 1024.0;

/// The most speech codes one synthesis takes. The flow attends over every mel frame at once,
/// so its memory grows with the square of the length; this keeps one attention matrix (heads x
/// frames^2 fp32 scores) within 512 MiB: 1,188 codes (95 s of speech at 12.5 codes/s) with the
/// tiny decoder's 2 heads, 594 (47 s) with GLM-4-Voice-Decoder's 8. GLM-4-Voice itself decodes
/// a reply in blocks of tens of codes.
pub fn max_codes(config: &DecoderModelConfig) -> usize {
    let flow = &config.flow;
    let heads = flow
        .encoder
        .attention_heads
        .max(flow.estimator.num_heads)
        .max(1) as f64;
    let max_frames = (MAX_ATTENTION_BYTES / (4.0 * heads)).sqrt();
    crate::models::flow::tokens_for_mel_frames(max_frames, flow.input_frame_rate)
}

/// Refuses more codes than [`max_codes`], saying how long that is and what to do.
pub fn check_length(codes: usize, config: &DecoderModelConfig) -> Result<(), String> {
    let limit = max_codes(config);
    let minutes = |n: usize| n as f64 / config.flow.input_frame_rate / 60.0;
    if codes > limit {
        return Err(format!(
            "{codes} speech codes ({:.1} minutes of speech) are more than one synthesis takes: at most {limit} ({:.1} minutes), since the flow's attention memory grows with the square of the length; split the codes into parts and synthesize each",
            minutes(codes),
            minutes(limit)
        ));
    }
    Ok(())
}

/// A GLM-4-Voice-Decoder loaded for synthesis.
pub struct Decoder<B: Backend> {
    config: DecoderModelConfig,
    flow: Flow<B>,
    hift: Hift<B>,
}

impl<B: Backend> Decoder<B> {
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, String> {
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let flow = load_flow::<B>(dir, &config, device)?.model;
        let hift = load_hift::<B>(dir, &config, device)?.model;
        Ok(Decoder { config, flow, hift })
    }

    /// Speech codes -> 22.05 kHz samples (`steps` Euler steps; `seed` draws the flow's starting
    /// noise and the source's noise).
    pub fn synthesize(
        &self,
        codes: &[u32],
        steps: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<Vec<f32>, String> {
        if let Some(&bad) = codes
            .iter()
            .find(|&&c| c as usize >= self.config.flow.vocab_size)
        {
            return Err(format!(
                "speech code {bad} is outside the decoder's vocabulary of {}",
                self.config.flow.vocab_size
            ));
        }
        check_length(codes.len(), &self.config)?;
        let mel = self.flow.synthesize(codes, steps, seed, device);
        let mut rng = Rng::new(seed ^ 0x50_55_52_43_45);
        let (wave, _) = vocode(&self.hift, &self.config.hift, mel, &mut rng);
        Ok(crate::models::to_host_f32(wave))
    }
}

/// The decoder directory of `path`: the package's decoder when `path` is an ARP-Model package.
pub fn decoder_dir(path: &Path) -> Result<PathBuf, String> {
    if !path.is_dir() {
        return Err(format!(
            "--decoder {}: {}",
            path.display(),
            if path.exists() {
                "not a directory (give a GLM-4-Voice-Decoder directory or an ARP-Model package)"
            } else {
                "no such directory"
            }
        ));
    }
    let dir = match crate::package::open(path)? {
        Some(manifest) => path.join(&manifest.decoder.dir),
        None => path.to_path_buf(),
    };
    if !dir.join(CONFIG_FILE).is_file() {
        return Err(format!(
            "--decoder {}: no {CONFIG_FILE}; give a GLM-4-Voice-Decoder directory (config.yaml, flow.safetensors, hift.safetensors) or an ARP-Model package",
            path.display()
        ));
    }
    Ok(dir)
}

struct Synth<'a> {
    dir: &'a Path,
    codes: &'a [u32],
    steps: usize,
    seed: u64,
}

impl BackendTask for Synth<'_> {
    type Output = Result<Vec<f32>, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        Decoder::<B>::load(self.dir, &device)?
            .synthesize(self.codes, self.steps, self.seed, &device)
    }
}

pub fn synth_command(args: SynthArgs, device: Option<DeviceSpec>) -> Exit {
    let text = match (&args.codes, &args.tokens) {
        (Some(file), None) => match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => return Exit::Usage(format!("cannot read {}: {e}", file.display())),
        },
        (None, Some(tokens)) => tokens.clone(),
        _ => return Exit::Usage("give --codes FILE or --tokens \"...\"".into()),
    };
    let codes = match parse_codes(&text) {
        Ok(codes) if !codes.is_empty() => codes,
        Ok(_) => return Exit::Usage("no speech codes given".into()),
        Err(e) => {
            return Exit::Usage(format!(
                "{}: {e}",
                args.codes
                    .as_deref()
                    .unwrap_or(Path::new("--tokens"))
                    .display()
            ))
        }
    };
    if args.steps == 0 {
        return Exit::Usage("--steps must be at least 1".into());
    }
    let decoder_dir = match decoder_dir(&args.decoder) {
        Ok(dir) => dir,
        Err(e) => return Exit::Usage(e),
    };
    let checked = read_config(&decoder_dir.join(CONFIG_FILE))
        .and_then(|config| check_length(codes.len(), &config));
    if let Err(e) = checked {
        return Exit::Usage(e);
    }
    let (device, _) = match backend::resolve(device.unwrap_or(DeviceSpec::Auto), Dtype::Fp32) {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let task = Synth {
        dir: &decoder_dir,
        codes: &codes,
        steps: args.steps,
        seed: args.seed,
    };
    let samples = match backend::run_on(device, Dtype::Fp32, task) {
        Ok(Ok(samples)) => samples,
        Ok(Err(e)) => return Exit::Failed(e),
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let audio = Audio {
        samples,
        rate: 22_050,
    };
    if let Err(e) = wav::write_mono_i16(&args.out, &audio) {
        return Exit::Failed(format!("cannot write {}: {e}", args.out.display()));
    }
    println!(
        "{}: {} codes -> {:.2} s at 22050 Hz",
        args.out.display(),
        codes.len(),
        audio.seconds()
    );
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::parse_codes;

    #[test]
    fn codes_in_every_accepted_form() {
        assert_eq!(parse_codes("1 2, 3").unwrap(), [1, 2, 3]);
        assert_eq!(
            parse_codes("<|audio_4|><|audio_5|> <|audio_6|>").unwrap(),
            [4, 5, 6]
        );
        assert_eq!(
            parse_codes(r#"{"text": "hi", "codes": [7, 8]}"#).unwrap(),
            [7, 8]
        );
        assert_eq!(parse_codes("[9, 10]").unwrap(), [9, 10]);
        assert!(parse_codes("1 x 3").is_err());
        // Beyond u32 is refused in every form, never wrapped (4294967301 is not code 5).
        assert!(parse_codes("[4294967301]").is_err());
        assert!(parse_codes(r#"{"codes": [4294967301]}"#).is_err());
        assert!(parse_codes("4294967301").is_err());
    }
}
