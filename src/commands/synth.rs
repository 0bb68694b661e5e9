//! `arp-train synth`: speech codes -> 22.05 kHz WAV through a GLM-4-Voice-Decoder directory
//! (flow: Euler steps on the cosine schedule with the configured CFG rate, zero speaker
//! embedding; then HiFT).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::Exit;
use crate::audio::{wav, Audio};
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::models::decoder::synthesis::{check_length, Decoder, MAX_FLOW_STEPS};
use crate::models::decoder::{read_config, CONFIG_FILE};

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
    /// Euler steps of the flow (GLM-4-Voice uses 10), 1 to 1000.
    #[arg(long, default_value_t = 10, value_parser = flow_steps())]
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
    if let Err(e) = crate::atomic::check_target(&args.out) {
        return Exit::Usage(format!("--out: {e}"));
    }
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
    if let Err(e) = wav::save_mono_i16(&args.out, &audio) {
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

/// `--steps`: 1 to [`MAX_FLOW_STEPS`], refused by the parser with the range.
pub fn flow_steps() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_FLOW_STEPS)
}
