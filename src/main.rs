//! The `arp-train` command line: parsing and dispatch only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use arp_train::backend::DeviceSpec;
use arp_train::commands::{self, run::RunArgs, Exit};
use arp_train::train::driver::Resume;

#[derive(Parser)]
#[command(
    name = "arp-train",
    version,
    about = "Train audio role-play models on GLM-4-Voice (AudioRole recipe)"
)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
struct Cli {
    /// Recipe to run (recipes/*.yaml).
    #[arg(long, value_name = "FILE")]
    recipe: Option<PathBuf>,
    /// Override a recipe key: --set lm.optimizer.lr=2e-4 (repeatable; checked like the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Show the resolved recipe, dataset summary, plan and parameter counts; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output directory (overrides the recipe's output_dir).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Stages to run, comma-separated: prepare, lm, decoder, package (default: all). Finished
    /// stages are skipped and interrupted ones resume either way.
    #[arg(long, value_name = "LIST")]
    stages: Option<String>,
    /// Rerunning a recipe already continues from the newest checkpoints; `--resume DIR` starts
    /// stage one from that checkpoint directory instead.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    resume: Option<Option<PathBuf>>,
    /// Continue a finished stage whose recipe changed only in its optimizer, schedule or length
    /// (steps, epochs: not fewer) from its last checkpoint, instead of refusing it. The changes
    /// are recorded in the stage's done.json.
    #[arg(long)]
    continue_finished: bool,
    /// Device: auto, cpu, wgpu[:N], cuda[:N] (overrides the recipe's device).
    #[arg(long, global = true)]
    device: Option<DeviceSpec>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level filter (error, warn, info, debug, trace, or a RUST_LOG-style directive). Below
    /// `debug`, the GPU stack's crates (cubecl, wgpu, naga, burn) log warnings only.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check recipes (keys, types, values, files) without running anything.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Overrides applied to every file before checking.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Treat data and weights that are not there yet as errors (as a run does).
        #[arg(long)]
        strict: bool,
    },
    /// Answer one prompt with a GLM-4-Voice model; prints the text, writes speech codes.
    Generate(commands::generate::GenerateArgs),
    /// Turn speech codes into a 22.05 kHz WAV with a GLM-4-Voice-Decoder directory.
    Synth(commands::synth::SynthArgs),
    /// Run a sweep: a base recipe with variants and/or a grid of overrides, one run directory
    /// each, resumable, with a summary table (Markdown and CSV).
    Sweep(commands::sweep::SweepArgs),
    /// ARP-Eval (acoustic): speaker similarity (AP) and signal quality (AQ) of an ARP-Model
    /// package's speech, a directory of audio files, or the recipe's held-out clips; table, JSON and plot.
    Eval(commands::eval::EvalArgs),
    /// Time training steps of both stages on random weights of the recipe's model shapes:
    /// tokens/s, MFU and peak memory for stage one, mel frames/s for the flow and vocoder.
    Bench(commands::bench::BenchArgs),
    /// Build a manifest from episodes and their subtitles: each line assigned to an enrolled
    /// character by voice (or to `other`), with its scene as context; and a report.
    BuildData(commands::build_data::BuildDataArgs),
    /// Write a manifest from data in another project's format: GLM-4-Voice SFT JSONL, an
    /// LJSpeech metadata.csv, or per-speaker folders of clips with .txt/.lab transcripts.
    Import(commands::import::ImportArgs),
    /// Compute speech tokens and decoder mels into the recipe's dataset cache (incremental,
    /// safe to interrupt: a rerun finishes the job).
    Prepare {
        #[arg(long, value_name = "FILE")]
        recipe: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

/// Logs on stderr (text or JSON) and, once a run opens it, in the run's `logs/run.log`.
fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            tracing_subscriber::EnvFilter::try_new(arp_train::logging::filter_directives(level))
        })
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Through the bars (a log line clears them, prints, redraws them), and without colour codes
    // when stderr is a file or a pipe.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| arp_train::progress::Stderr);
    let stderr = match format {
        LogFormat::Text => stderr.with_target(false).boxed(),
        LogFormat::Json => stderr.json().boxed(),
    };
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_writer(|| arp_train::logfile::Writer);
    // The level filter applies to what is shown; the autotune counter sees cubecl's tuner
    // events whatever the level.
    tracing_subscriber::registry()
        .with(stderr.and_then(file).with_filter(filter))
        .with(
            arp_train::logging::AutotuneCounter.with_filter(arp_train::logging::autotune_events()),
        )
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let long_running = matches!(
        cli.command,
        None | Some(Command::Prepare { .. })
            | Some(Command::Sweep(_))
            | Some(Command::BuildData(_))
    );
    if long_running {
        arp_train::stop::install();
    }
    let exit = match cli.command {
        Some(Command::Validate {
            files,
            overrides,
            strict,
        }) => commands::validate::validate(&files, &overrides, strict),
        Some(Command::Prepare { recipe, overrides }) => {
            commands::prepare::prepare(commands::prepare::PrepareArgs {
                recipe,
                overrides,
                device: cli.device,
            })
        }
        Some(Command::Generate(args)) => commands::generate::generate_command(args, cli.device),
        Some(Command::Synth(args)) => commands::synth::synth_command(args, cli.device),
        Some(Command::Sweep(args)) => commands::sweep::sweep_command(args, cli.device),
        Some(Command::Eval(args)) => commands::eval::eval_command(args, cli.device),
        Some(Command::Bench(args)) => commands::bench::bench_command(args, cli.device),
        Some(Command::Import(args)) => commands::import::import_command(args),
        Some(Command::BuildData(args)) => {
            commands::build_data::build_data_command(args, cli.device)
        }
        None => match cli.recipe {
            Some(recipe) => commands::run::run(RunArgs {
                recipe,
                overrides: cli.overrides,
                dry_run: cli.dry_run,
                output: cli.output,
                device: cli.device,
                resume: match cli.resume {
                    None => Resume::Latest,
                    Some(None) => Resume::Latest,
                    Some(Some(dir)) => Resume::From(dir),
                },
                stages: cli.stages,
                continue_finished: cli.continue_finished,
            }),
            None => {
                Exit::Usage("nothing to do: pass --recipe FILE or a command (see --help)".into())
            }
        },
    };
    // Work that ends early after a stop signal exits as a signalled process would (130, 143).
    let stopped_by = arp_train::stop::requested().filter(|_| !matches!(exit, Exit::Ok));
    match (&exit, stopped_by) {
        (Exit::Ok, _) => {}
        (Exit::Usage(message) | Exit::Failed(message), Some(_)) => eprintln!("stopped: {message}"),
        (Exit::Usage(message) | Exit::Failed(message), None) => eprintln!("error: {message}"),
    }
    let code = stopped_by.map_or(exit.code(), arp_train::stop::exit_code);
    ExitCode::from(code as u8)
}
