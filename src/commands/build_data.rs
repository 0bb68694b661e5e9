//! `arp-train build-data`: episodes + subtitles + a few seconds of each character's voice in, a
//! manifest of the characters' lines (with scene context) and a report out.

use std::path::PathBuf;

use burn::tensor::backend::Backend;

use super::Exit;
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::build_data::assign::Thresholds;
use crate::build_data::report::{Report, MANIFEST, REPORT_MD};
use crate::build_data::{build, Options};
use crate::eval::speaker::{self, SpeakerEncoder};
use crate::recipe::QualityFilters;

#[derive(clap::Args, Debug)]
pub struct BuildDataArgs {
    /// Episode media files, or directories of them; each needs a subtitle file of the same name
    /// beside it (.ass, .ssa, .srt or .vtt; `name.en.srt` also matches).
    #[arg(long = "episodes", required = true, num_args = 1.., value_name = "PATH")]
    pub episodes: Vec<PathBuf>,
    /// YAML listing a few seconds of each character's voice (`characters: {name: [clips]}`).
    #[arg(long, value_name = "FILE")]
    pub enroll: PathBuf,
    /// Where the manifest, the report and the embedding cache go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds added before and after each subtitle line's span.
    #[arg(long, default_value_t = 0.1)]
    pub padding: f64,
    /// Lowest cosine similarity to a character's enrolled voice for a line to be theirs.
    #[arg(long, default_value_t = 0.75)]
    pub threshold: f64,
    /// How far the nearest voice must lead the runner-up.
    #[arg(long, default_value_t = 0.05)]
    pub margin: f64,
    /// A pause longer than this (seconds) starts a new scene.
    #[arg(long, default_value_t = 3.0)]
    pub scene_gap: f64,
    /// Resemblyzer encoder weights (as for `eval`).
    #[arg(long, value_name = "FILE")]
    pub speaker_encoder: Option<PathBuf>,
}

struct BuildTask {
    options: Options,
    encoder: PathBuf,
}

impl BackendTask for BuildTask {
    type Output = Result<Report, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let encoder = SpeakerEncoder::<B>::load(&self.encoder, &device)?;
        build(&self.options, &|audio| encoder.embed(audio))
    }
}

pub fn build_data_command(args: BuildDataArgs, device: Option<DeviceSpec>) -> Exit {
    for (flag, value, range) in [
        ("--threshold", args.threshold, -1.0..=1.0),
        ("--margin", args.margin, 0.0..=2.0),
        ("--padding", args.padding, 0.0..=5.0),
        ("--scene-gap", args.scene_gap, 0.0..=3600.0),
    ] {
        if !range.contains(&value) {
            return Exit::Usage(format!("{flag} {value} is outside {range:?}"));
        }
    }
    let encoder = speaker::weights_path(args.speaker_encoder.as_deref());
    if !encoder.is_file() {
        return Exit::Usage(speaker::missing_weights_message(&encoder));
    }
    let (device, _) = match backend::resolve(device.unwrap_or(DeviceSpec::Cpu), Dtype::Fp32) {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let options = Options {
        episodes: args.episodes,
        enrollment: args.enroll,
        out: args.out.clone(),
        padding: args.padding,
        thresholds: Thresholds {
            similarity: args.threshold,
            margin: args.margin,
        },
        scene_gap: args.scene_gap,
        min_voiced_seconds: 0.3,
        filters: QualityFilters::base(),
    };
    let built = backend::run_on(device, Dtype::Fp32, BuildTask { options, encoder })
        .map_err(|e| e.to_string())
        .and_then(|built| built);
    match built {
        Ok(report) => {
            crate::logfile::say(report.summary());
            crate::logfile::say(format!(
                "manifest: {}\nreport (confidence histogram, least certain lines to listen to): {}",
                args.out.join(MANIFEST).display(),
                args.out.join(REPORT_MD).display()
            ));
            Exit::Ok
        }
        Err(e) if e.starts_with("stopped") => Exit::Failed(e),
        Err(e) => Exit::Usage(e),
    }
}
