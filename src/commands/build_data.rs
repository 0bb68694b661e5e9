//! `arp-train build-data`: episodes + subtitles + a few seconds of each character's voice in, a
//! manifest of the characters' lines (with scene context) and a report out.

use std::path::PathBuf;

use burn::tensor::backend::Backend;

use super::Exit;
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::build_data::assign::Settings;
use crate::build_data::filters::LineFilters;
use crate::build_data::report::{Report, MANIFEST, REPORT_HTML};
use crate::build_data::{build, corrections, Options};
use crate::speaker::{weights, Encoder, EncoderKind};

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
    /// Line id -> character, `other` or `reject` (YAML), made while listening with report.html
    /// [default: OUT/corrections.yaml when it exists].
    #[arg(long, value_name = "FILE")]
    pub corrections: Option<PathBuf>,
    /// Seconds added before and after each subtitle line's span.
    #[arg(long, default_value_t = 0.1)]
    pub padding: f64,
    /// Fix the similarity threshold instead of calibrating it from the enrollment clips.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// How far the nearest voice must lead the runner-up.
    #[arg(long, default_value_t = 0.05)]
    pub margin: f64,
    /// A pause longer than this (seconds) starts a new scene.
    #[arg(long, default_value_t = 3.0)]
    pub scene_gap: f64,
    /// Shortest line kept (seconds).
    #[arg(long, default_value_t = 0.5)]
    pub min_seconds: f64,
    /// Longest line kept (seconds).
    #[arg(long, default_value_t = 30.0)]
    pub max_seconds: f64,
    /// A line this many dB below its episode's median line level is rejected as silent.
    #[arg(long, default_value_t = 25.0)]
    pub quiet_db: f64,
    /// Share of a line's samples in flat runs at full scale above which it is clipped.
    #[arg(long, default_value_t = 0.001)]
    pub max_clipped_fraction: f64,
    /// The speaker encoder that tells voices apart.
    #[arg(long, value_enum, default_value = "cam++")]
    pub speaker_encoder: EncoderKind,
    /// Its weights [default: the user data directory's, where tools/data/campplus_weights.py or
    /// resemblyzer_weights.py writes them].
    #[arg(long, value_name = "FILE")]
    pub speaker_encoder_weights: Option<PathBuf>,
    /// Who really speaks each line (JSONL `episode`, `line`, `speaker`): report precision and
    /// recall per character against it (benchmarks).
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
}

struct BuildTask {
    options: Options,
    kind: EncoderKind,
    weights: PathBuf,
}

impl BackendTask for BuildTask {
    type Output = Result<Report, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let encoder = Encoder::<B>::load(self.kind, &self.weights, &device)?;
        build(&self.options, &|audio| encoder.embed(audio))
    }
}

/// The typical leave-one-out similarity of one voice's clips with each encoder, for an
/// enrollment of one clip per character (measured on the real-voice benchmark's enrollments).
fn typical_similarity(kind: EncoderKind) -> f64 {
    match kind {
        EncoderKind::CamPlusPlus => 0.75,
        EncoderKind::Resemblyzer => 0.8,
    }
}

pub fn build_data_command(args: BuildDataArgs, device: Option<DeviceSpec>) -> Exit {
    let mut ranges = vec![
        ("--margin", args.margin, 0.0..=2.0),
        ("--padding", args.padding, 0.0..=5.0),
        ("--scene-gap", args.scene_gap, 0.0..=3600.0),
        ("--min-seconds", args.min_seconds, 0.0..=3600.0),
        ("--max-seconds", args.max_seconds, 0.0..=36_000.0),
        ("--quiet-db", args.quiet_db, 0.0..=200.0),
        (
            "--max-clipped-fraction",
            args.max_clipped_fraction,
            0.0..=1.0,
        ),
    ];
    if let Some(t) = args.threshold {
        ranges.push(("--threshold", t, -1.0..=1.0));
    }
    for (flag, value, range) in ranges {
        if !range.contains(&value) {
            return Exit::Usage(format!("{flag} {value} is outside {range:?}"));
        }
    }
    if args.min_seconds > args.max_seconds {
        return Exit::Usage(format!(
            "--min-seconds {} is above --max-seconds {}",
            args.min_seconds, args.max_seconds
        ));
    }
    let weights = weights::resolve(
        args.speaker_encoder,
        args.speaker_encoder_weights.as_deref(),
    );
    if !weights.is_file() {
        return Exit::Usage(weights::missing_message(
            args.speaker_encoder,
            &weights,
            "--speaker-encoder-weights",
        ));
    }
    let corrections = match args.corrections {
        Some(file) if !file.is_file() => {
            return Exit::Usage(format!("corrections file {} not found", file.display()))
        }
        Some(file) => Some(file),
        None => Some(args.out.join(corrections::FILE)).filter(|f| f.is_file()),
    };
    let (device, _) = match backend::resolve(device.unwrap_or(DeviceSpec::Cpu), Dtype::Fp32) {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let options = Options {
        episodes: args.episodes,
        enrollment: args.enroll,
        out: args.out.clone(),
        padding: args.padding,
        settings: Settings {
            threshold: args.threshold,
            margin: Some(args.margin),
        },
        scene_gap: args.scene_gap,
        filters: LineFilters {
            min_seconds: args.min_seconds,
            max_seconds: args.max_seconds,
            quiet_db: args.quiet_db,
            max_clipped_fraction: args.max_clipped_fraction,
            ..LineFilters::default()
        },
        corrections,
        truth: args.truth,
        encoder: args.speaker_encoder.name().to_string(),
        typical_similarity: typical_similarity(args.speaker_encoder),
    };
    let task = BuildTask {
        options,
        kind: args.speaker_encoder,
        weights,
    };
    let built = backend::run_on(device, Dtype::Fp32, task)
        .map_err(|e| e.to_string())
        .and_then(|built| built);
    match built {
        Ok(report) => {
            crate::logfile::say(report.summary());
            crate::logfile::say(format!(
                "manifest: {}\nreport: {} (listen to the least certain lines and correct them)",
                args.out.join(MANIFEST).display(),
                args.out.join(REPORT_HTML).display()
            ));
            Exit::Ok
        }
        Err(e) if e.starts_with("stopped") => Exit::Failed(e),
        Err(e) => Exit::Usage(e),
    }
}
