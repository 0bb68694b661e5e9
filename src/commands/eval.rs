//! `arp-train eval`: ARP-Eval's acoustic scores (AP and AQ) for one of
//! - an ARP-Model package (`--model`): its decoder speaks the recipe's held-out lines from their
//!   speech codes; the scores are also recorded in the package;
//! - a directory of WAVs (`--wavs`);
//! - the recipe's real held-out clips (neither): what real audio of the character scores.
//!
//! The reference is the character's real audio: the recipe's training clips (from the prepared
//! cache) or `--reference DIR`. Writes eval.json and eval.svg (and the synthesized WAVs) to the
//! output directory and prints a table.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::synth::decoder_dir;
use super::Exit;
use crate::audio::{wav, Audio, DECODER_RATE};
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::data::cache::read_index;
use crate::data::prompt::{inference_prompt, split_reply, system_text, UserTurn};
use crate::eval::clips::{self, Clip};
use crate::eval::judge;
use crate::eval::report::{Report, JSON_FILE, PLOT_FILE};
use crate::eval::scores::{score, Scored};
use crate::models::decoder::synthesis::Decoder;
use crate::models::glm4::generation::{generate, Sampling};
use crate::models::glm4::load::load_model;
use crate::models::glm4::tokenizer::GlmTokenizer;
use crate::recipe::Recipe;
use crate::speaker::campplus::CamPlusPlusEncoder;
use crate::speaker::resemblyzer::Resemblyzer;
use crate::speaker::{weights, EncoderKind};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The character's recipe: its prepared dataset cache gives the real clips (the reference)
    /// and the held-out lines. Default with --model: the package's recipe.yaml.
    #[arg(long, value_name = "FILE")]
    pub recipe: Option<PathBuf>,
    /// Override a recipe key (repeatable), as for a run.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// An ARP-Model package: its decoder synthesizes the held-out lines, which are scored; the
    /// scores are recorded in its arp-model.json and model card.
    #[arg(long, value_name = "DIR", conflicts_with = "wavs")]
    pub model: Option<PathBuf>,
    /// Score the audio files in this directory instead (WAV, FLAC, MP3, Ogg, M4A, ...; a file
    /// named after a line's id is also compared with the real recording of that line).
    #[arg(long, value_name = "DIR")]
    pub wavs: Option<PathBuf>,
    /// Real clips of the character to compare with (default: the recipe's training clips).
    #[arg(long, value_name = "DIR")]
    pub reference: Option<PathBuf>,
    /// Where eval.json, eval.svg and synthesized WAVs go (default: <output_dir>/eval of the
    /// recipe, else ./arp-eval).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Resemblyzer encoder weights (default: $ARP_SPEAKER_ENCODER, else the user data
    /// directory's, where tools/data/resemblyzer_weights.py writes them).
    #[arg(long, value_name = "FILE")]
    pub speaker_encoder: Option<PathBuf>,
    /// CAM++ weights for the speaker similarity reported beside AP (default: $ARP_CAMPPLUS,
    /// else the user data directory's; without them that column is left out).
    #[arg(long, value_name = "FILE")]
    pub campplus_weights: Option<PathBuf>,
    /// Euler steps of the flow when a package synthesizes, 1 to 1000.
    #[arg(long, default_value_t = 10, value_parser = super::synth::flow_steps())]
    pub steps: usize,
    /// Seed of the synthesis noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Content Quality / Personalization through an OpenAI-compatible LLM judge configured in
    /// this YAML file (off by default; see README).
    #[arg(long, value_name = "FILE")]
    pub judge: Option<PathBuf>,
}

/// What is evaluated, resolved from the flags before any work starts.
struct Setup {
    mode: &'static str,
    recipe: Option<Recipe>,
    package: Option<PathBuf>,
    out: PathBuf,
    encoder: PathBuf,
    campplus: Option<PathBuf>,
}

pub fn eval_command(args: EvalArgs, device: Option<DeviceSpec>) -> Exit {
    match run(args, device) {
        Ok(()) => Exit::Ok,
        Err(exit) => exit,
    }
}

fn run(args: EvalArgs, device: Option<DeviceSpec>) -> Result<(), Exit> {
    let setup = setup(&args)?;
    let judge_config = match &args.judge {
        Some(path) => Some(judge::Config::load(path).map_err(Exit::Usage)?),
        None => None,
    };
    let (device, _) = backend::resolve(
        device
            .or(setup.recipe.as_ref().map(|r| r.device))
            .unwrap_or(DeviceSpec::Auto),
        Dtype::Fp32,
    )
    .map_err(|e| Exit::Usage(e.to_string()))?;

    // The real clips and, for a package, the lines it speaks.
    let character = match &setup.recipe {
        Some(recipe) => Some(clips::character_audio(recipe).map_err(Exit::Failed)?),
        None => None,
    };
    let (references, references_from) = match (&args.reference, &character) {
        (Some(dir), _) => (
            clips::audio_dir(dir).map_err(Exit::Usage)?,
            dir.display().to_string(),
        ),
        (None, Some(c)) => (
            c.train.clone(),
            "the recipe's training clips of the character".into(),
        ),
        (None, None) => unreachable!("setup requires --recipe or --reference"),
    };
    if references.is_empty() {
        return Err(Exit::Failed("no reference clips of the character".into()));
    }
    // What is scored, and the real recordings of the same lines (for AP to the same line).
    let (candidates, candidates_from, matched, synthesis) = match setup.mode {
        "package" => {
            let c = character.as_ref().expect("package mode has a recipe");
            if c.held_out_codes.is_empty() {
                return Err(Exit::Failed(
                    "the recipe's held-out split is empty (data.validation); nothing to synthesize"
                        .into(),
                ));
            }
            let package = setup.package.as_ref().expect("package mode has a package");
            let synthesis = Synthesis {
                decoder: decoder_dir(package).map_err(Exit::Usage)?,
                lines: c.held_out_codes.clone(),
                steps: args.steps,
                seed: args.seed,
            };
            (
                Vec::new(),
                format!(
                    "{} held-out lines synthesized by {}",
                    c.held_out_codes.len(),
                    package.display()
                ),
                c.held_out.clone(),
                Some(synthesis),
            )
        }
        "wavs" => {
            let dir = args.wavs.as_ref().expect("wavs mode has a directory");
            let matched = match &character {
                Some(c) => c.held_out.iter().chain(&c.train).cloned().collect(),
                None => references.clone(),
            };
            (
                clips::audio_dir(dir).map_err(Exit::Usage)?,
                dir.display().to_string(),
                matched,
                None,
            )
        }
        _ => {
            let c = character.as_ref().expect("held-out mode has a recipe");
            if c.held_out.is_empty() {
                return Err(Exit::Failed(
                    "the recipe's held-out split is empty (data.validation)".into(),
                ));
            }
            (
                c.held_out.clone(),
                "the recipe's real held-out clips of the character".into(),
                Vec::new(),
                None,
            )
        }
    };

    // Text replies for the LLM judge: the real held-out lines, or the package LM's answers to
    // their prompts (generated on the device below).
    let content_lines: Option<Result<Vec<judge::Line>, String>> =
        judge_config
            .as_ref()
            .map(|config| {
                match (setup.mode, &setup.recipe) {
            ("wavs", _) | (_, None) => Err(
                "WAV files carry no text; the judge needs --model or the recipe's held-out lines"
                    .into(),
            ),
            (_, Some(recipe)) => {
                held_out_lines(recipe, &held_out_ids(&character), config.max_lines)
            }
        }
            });
    let replies = match (&setup.package, &content_lines) {
        (Some(package), Some(Ok(lines))) => Some(Replies {
            package: package.clone(),
            prompts: lines.clone(),
        }),
        _ => None,
    };

    let task = EvalTask {
        encoder: &setup.encoder,
        campplus: setup.campplus.as_deref(),
        synthesis,
        replies,
        candidates,
        references: &references,
        matched: &matched,
        generated_dir: setup.out.join("generated"),
    };
    let (scored, generated_lines) = match backend::run_on(device, Dtype::Fp32, task) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(Exit::Failed(e)),
        Err(e) => return Err(Exit::Usage(e.to_string())),
    };

    let mut report = Report::new(
        setup.mode,
        candidates_from,
        references_from,
        setup.encoder.display().to_string(),
        scored.candidates,
        scored.references,
    );
    let content_lines = match generated_lines {
        Some(generated) => Some(generated),
        None => content_lines,
    };
    if let (Some(config), Some(lines)) = (&judge_config, content_lines) {
        let character = setup.recipe.as_ref().and_then(|r| r.character.as_ref());
        let outcome = lines.and_then(|lines| {
            judge::judge(
                config,
                character.map_or("the character", |c| c.name.as_str()),
                character.map_or("", |c| c.persona.as_str()),
                &lines,
            )
        });
        report.content = Some(outcome.unwrap_or_else(|skipped| {
            eprintln!("content scores skipped: {skipped}");
            serde_json::json!({ "skipped": skipped })
        }));
    }
    write_outputs(&setup.out, &report).map_err(Exit::Failed)?;
    if let Some(recipe) = &setup.recipe {
        if setup.out == recipe.output_dir.join(crate::run_dir::EVAL)
            && recipe.output_dir.join(crate::run_dir::PLOT_INDEX).is_file()
        {
            // The run's page of plots gains the eval plot.
            crate::train::plot::write_index(&recipe.output_dir).map_err(|e| {
                Exit::Failed(format!("cannot write {}: {e}", crate::run_dir::PLOT_INDEX))
            })?;
        }
    }
    print!("{}", report.table());
    println!(
        "wrote {} and {}",
        setup.out.join(JSON_FILE).display(),
        setup.out.join(PLOT_FILE).display()
    );
    if let Some(package) = &setup.package {
        crate::package::scores::record(package, package_scores(&report), report.svg().as_bytes())
            .map_err(Exit::Failed)?;
        println!(
            "recorded the scores in {}",
            package.join(crate::package::MANIFEST).display()
        );
    }
    Ok(())
}

fn setup(args: &EvalArgs) -> Result<Setup, Exit> {
    let package = match &args.model {
        Some(dir) => match crate::package::open(dir).map_err(Exit::Usage)? {
            Some(_) => Some(dir.clone()),
            None => {
                return Err(Exit::Usage(format!(
                    "{} is not an ARP-Model package (no {}); `arp-train --recipe ...` writes one to <output_dir>/arp-model",
                    dir.display(),
                    crate::package::MANIFEST
                )))
            }
        },
        None => None,
    };
    let recipe_file = args
        .recipe
        .clone()
        .or_else(|| package.as_ref().map(|p| p.join(crate::package::RECIPE)));
    let recipe = match &recipe_file {
        Some(file) => Some(super::load_runnable(file, &args.overrides)?),
        None => None,
    };
    if recipe.is_none() && args.reference.is_none() {
        return Err(Exit::Usage(
            "give --recipe (the character's real clips come from its prepared dataset cache) or --reference DIR"
                .into(),
        ));
    }
    let mode = match (&package, &args.wavs) {
        (Some(_), _) => "package",
        (None, Some(_)) => "wavs",
        (None, None) if recipe.is_some() => "held-out",
        (None, None) => return Err(Exit::Usage(
            "nothing to score: give --model PACKAGE, --wavs DIR, or --recipe (its held-out clips)"
                .into(),
        )),
    };
    let encoder = weights::resolve(EncoderKind::Resemblyzer, args.speaker_encoder.as_deref());
    if !encoder.is_file() {
        return Err(Exit::Usage(weights::missing_message(
            EncoderKind::Resemblyzer,
            &encoder,
            "--speaker-encoder",
        )));
    }
    let campplus = weights::resolve(EncoderKind::CamPlusPlus, args.campplus_weights.as_deref());
    let campplus = if campplus.is_file() {
        Some(campplus)
    } else if args.campplus_weights.is_some() {
        return Err(Exit::Usage(weights::missing_message(
            EncoderKind::CamPlusPlus,
            &campplus,
            "--campplus-weights",
        )));
    } else {
        tracing::info!(
            "CAM++ weights not found at {}: the CAM++ speaker similarity is left out \
             (python3 tools/data/campplus_weights.py fetches them)",
            campplus.display()
        );
        None
    };
    let out = args.out.clone().unwrap_or_else(|| match &recipe {
        Some(r) => r.output_dir.join(crate::run_dir::EVAL),
        None => PathBuf::from("arp-eval"),
    });
    Ok(Setup {
        mode,
        recipe,
        package,
        out,
        encoder,
        campplus,
    })
}

struct Synthesis {
    decoder: PathBuf,
    lines: Vec<(String, Vec<u32>)>,
    steps: usize,
    seed: u64,
}

/// The package LM answers the held-out lines' prompts (for the LLM judge).
struct Replies {
    package: PathBuf,
    prompts: Vec<judge::Line>,
}

const REPLY_MAX_TOKENS: usize = 256;

impl Replies {
    fn generate<B: Backend>(&self, device: &B::Device) -> Result<Vec<judge::Line>, String> {
        let manifest = crate::package::open(&self.package)?
            .ok_or_else(|| format!("{} is not an ARP-Model package", self.package.display()))?;
        let lm_dir = self.package.join(&manifest.lm.dir);
        let tok = GlmTokenizer::load(&lm_dir)?;
        let (model, _) = load_model::<B>(&lm_dir, device)?;
        let stop = [tok.token_id("<|user|>")?];
        let bar = crate::progress::bar(self.prompts.len() as u64, "LM replies");
        let mut out = Vec::new();
        for line in &self.prompts {
            let turn = UserTurn::Text(&line.context);
            let system = system_text(&turn, Some(&manifest.character.system_prompt));
            let prompt = inference_prompt(&tok, &system, &turn)?;
            let reply = generate(
                &model,
                &prompt,
                REPLY_MAX_TOKENS,
                &stop,
                Sampling::Greedy,
                device,
            );
            let (text, _) = split_reply(&tok, &reply)?;
            out.push(judge::Line {
                id: line.id.clone(),
                context: line.context.clone(),
                reply: text,
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// The held-out lines of the character with the turn each one answers (from the cache index).
fn held_out_lines(
    recipe: &Recipe,
    held_out: &[String],
    max_lines: usize,
) -> Result<Vec<judge::Line>, String> {
    let index = read_index(&recipe.data.cache_dir)?;
    Ok(index
        .iter()
        .filter(|e| held_out.contains(&e.id))
        .take(max_lines)
        .map(|e| judge::Line {
            id: e.id.clone(),
            context: e
                .context
                .last()
                .map(|t| t.text.clone())
                .unwrap_or_else(|| "(nothing: the character speaks first)".into()),
            reply: e.text.clone(),
        })
        .collect())
}

fn held_out_ids(character: &Option<clips::CharacterAudio>) -> Vec<String> {
    character
        .as_ref()
        .map(|c| c.held_out.iter().map(|clip| clip.id.clone()).collect())
        .unwrap_or_default()
}

struct EvalTask<'a> {
    encoder: &'a Path,
    campplus: Option<&'a Path>,
    synthesis: Option<Synthesis>,
    replies: Option<Replies>,
    candidates: Vec<Clip>,
    references: &'a [Clip],
    matched: &'a [Clip],
    generated_dir: PathBuf,
}

impl BackendTask for EvalTask<'_> {
    /// The scores, and the package LM's replies when the judge asked for them.
    type Output = Result<(Scored, Option<Result<Vec<judge::Line>, String>>), String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let encoder = Resemblyzer::<B>::load(self.encoder, &device)?;
        let campplus = match self.campplus {
            Some(path) => Some(CamPlusPlusEncoder::<B>::load(path, &device)?),
            None => None,
        };
        let replies = self.replies.as_ref().map(|r| r.generate::<B>(&device));
        let mut candidates = self.candidates;
        if let Some(s) = &self.synthesis {
            let decoder = Decoder::<B>::load(&s.decoder, &device)?;
            std::fs::create_dir_all(&self.generated_dir)
                .map_err(|e| format!("cannot create {}: {e}", self.generated_dir.display()))?;
            let bar = crate::progress::bar(s.lines.len() as u64, "synthesizing");
            for (i, (id, codes)) in s.lines.iter().enumerate() {
                let samples = decoder
                    .synthesize(codes, s.steps, s.seed.wrapping_add(i as u64), &device)
                    .map_err(|e| format!("line {id}: {e}"))?;
                let audio = Audio {
                    samples,
                    rate: DECODER_RATE,
                };
                let path = self.generated_dir.join(format!("{id}.wav"));
                wav::save_mono_i16(&path, &audio)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                candidates.push(Clip {
                    id: id.clone(),
                    audio,
                    source: path.display().to_string(),
                });
                bar.inc(1);
            }
            bar.finish_and_clear();
        }
        Ok((
            score(
                &encoder,
                campplus.as_ref(),
                &candidates,
                self.references,
                self.matched,
            ),
            replies,
        ))
    }
}

fn write_outputs(out: &Path, report: &Report) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| e.to_string())?;
    for (name, bytes) in [(JSON_FILE, json), (PLOT_FILE, report.svg().into_bytes())] {
        let path = out.join(name);
        crate::atomic::write(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// What a package records: the summaries, where they came from, and when.
fn package_scores(report: &Report) -> serde_json::Value {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    serde_json::json!({
        "format": report.format,
        "description": format!(
            "ARP-Eval (acoustic): {} against {}; speaker encoder Resemblyzer GE2E (AP), CAM++ beside it when its weights were there.",
            report.candidates_from, report.references_from
        ),
        "evaluated_at_unix": unix,
        "candidates": report.summary.candidates,
        "references": report.summary.references,
        "content": report.content,
    })
}
