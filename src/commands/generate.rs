//! `arp-train generate`: answer one prompt with a GLM-4-Voice model (base, + PEFT adapter, or a
//! merged export), printing the reply's text and writing its speech codes for `synth`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::Exit;
use crate::audio::{read, TOKENIZER_RATE};
use crate::backend::{self, BackendTask, DeviceSpec, Dtype};
use crate::data::prompt::{inference_prompt, split_reply, system_text, UserTurn};
use crate::models::glm4::generation::{generate, Sampling};
use crate::models::glm4::load::{load_adapter, load_model};
use crate::models::glm4::tokenizer::GlmTokenizer;
use crate::models::glm4::Glm4Config;
use crate::models::whisper_vq::SpeechTokenizer;

/// `arp-train generate` options.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Model directory (Hugging Face layout: base GLM-4-Voice-9B or a merged export), or an
    /// ARP-Model package (its LM, with the character's persona unless --system/--persona).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// PEFT LoRA adapter directory to apply.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Tokenizer directory (default: --model).
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,
    /// Whole system text (default: GLM-4-Voice's instruction, plus --persona).
    #[arg(long)]
    pub system: Option<String>,
    /// Persona text added after the default system instruction (a card's system_prompt).
    #[arg(long)]
    pub persona: Option<String>,
    /// The user's text.
    #[arg(long)]
    pub prompt: Option<String>,
    /// The user's speech (any audio file arp-train reads), tokenized with --speech-tokenizer.
    #[arg(long, value_name = "AUDIO")]
    pub prompt_audio: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub speech_tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0.9, value_parser = probability)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write {"text", "codes"} (the reply's speech codes) here.
    #[arg(long, value_name = "FILE")]
    pub codes_out: Option<PathBuf>,
    /// auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16, fp16.
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<Dtype>())]
    pub dtype: Dtype,
}

struct Run<'a> {
    args: &'a GenerateArgs,
    tokenizer: &'a GlmTokenizer,
}

impl BackendTask for Run<'_> {
    type Output = Result<(String, Vec<u32>, usize), String>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let a = self.args;
        let tok = self.tokenizer;
        let speech: Vec<u32>;
        let turn = match (&a.prompt, &a.prompt_audio) {
            (Some(text), None) => UserTurn::Text(text),
            (None, Some(wav_path)) => {
                let dir = a
                    .speech_tokenizer
                    .as_ref()
                    .ok_or("--prompt-audio needs --speech-tokenizer DIR")?;
                let audio = read::read_mono(wav_path, None)
                    .map_err(|e| format!("{}: {e}", wav_path.display()))?;
                let st = SpeechTokenizer::<B>::load(dir, &device)?;
                speech = st
                    .tokenize(&[&audio.at_rate(TOKENIZER_RATE).samples])
                    .remove(0);
                UserTurn::Speech(&speech)
            }
            _ => return Err("give exactly one of --prompt TEXT or --prompt-audio AUDIO".into()),
        };
        let system = a
            .system
            .clone()
            .unwrap_or_else(|| system_text(&turn, a.persona.as_deref()));
        let prompt = inference_prompt(tok, &system, &turn)?;
        let max_new = within_context(&a.model, prompt.len(), a.max_new_tokens)?;
        let (mut model, _) = load_model::<B>(&a.model, &device)?;
        if let Some(adapter) = &a.adapter {
            load_adapter(&mut model, adapter, &device)?;
        }
        let sampling = if a.temperature <= 0.0 {
            Sampling::Greedy
        } else {
            Sampling::TopP {
                temperature: a.temperature,
                top_p: a.top_p,
                seed: a.seed,
            }
        };
        let stop = [tok.token_id("<|user|>")?];
        let reply = generate(&model, &prompt, max_new, &stop, sampling, &device);
        let (text, codes) = split_reply(tok, &reply)?;
        Ok((text, codes, reply.len()))
    }
}

/// The new tokens that fit the model's context (config.json `seq_length`) after a prompt of
/// `prompt` tokens, at most `max_new`; a prompt that fills the context is refused before the
/// model is loaded (its attention would need memory quadratic in its length).
fn within_context(model: &Path, prompt: usize, max_new: usize) -> Result<usize, String> {
    let config = Glm4Config::from_file(&model.join("config.json")).map_err(|e| e.to_string())?;
    let context = config.seq_length;
    if prompt >= context {
        return Err(format!(
            "the prompt is {prompt} tokens (system prompt, persona and your turn), and the model's context is {context} (seq_length in {}): shorten it",
            model.join("config.json").display()
        ));
    }
    if prompt + max_new > context {
        eprintln!(
            "the reply is cut at {} tokens: the prompt's {prompt} and --max-new-tokens {max_new} are more than the model's context of {context}",
            context - prompt
        );
    }
    Ok(max_new.min(context - prompt))
}

pub fn generate_command(mut args: GenerateArgs, device: Option<DeviceSpec>) -> Exit {
    match crate::package::open(&args.model) {
        Ok(Some(manifest)) => {
            eprintln!(
                "ARP-Model package {} ({}): LM {}",
                manifest.name, manifest.character.name, manifest.lm.source
            );
            args.model = args.model.join(&manifest.lm.dir);
            if args.system.is_none() && args.persona.is_none() {
                args.persona = Some(manifest.character.system_prompt.clone());
            }
        }
        Ok(None) => {}
        Err(e) => return Exit::Usage(e),
    }
    match (&args.prompt, &args.prompt_audio, &args.speech_tokenizer) {
        (Some(_), None, _) | (None, Some(_), Some(_)) => {}
        (None, Some(_), None) => {
            return Exit::Usage("--prompt-audio needs --speech-tokenizer DIR".into())
        }
        _ => {
            return Exit::Usage("give exactly one of --prompt TEXT or --prompt-audio AUDIO".into())
        }
    }
    if let Some(Err(e)) = args.codes_out.as_deref().map(crate::atomic::check_target) {
        return Exit::Usage(format!("--codes-out: {e}"));
    }
    if !(0.0..=1.0).contains(&args.top_p) || args.top_p == 0.0 {
        return Exit::Usage(format!("--top-p must be in (0, 1], found {}", args.top_p));
    }
    let tokenizer_dir = args.tokenizer.clone().unwrap_or_else(|| args.model.clone());
    let tokenizer = match GlmTokenizer::load(&tokenizer_dir) {
        Ok(t) => t,
        Err(e) => return Exit::Usage(e),
    };
    let (device, dtype) = match backend::resolve(device.unwrap_or(DeviceSpec::Auto), args.dtype) {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let result = backend::run_on(
        device,
        dtype,
        Run {
            args: &args,
            tokenizer: &tokenizer,
        },
    );
    let (text, codes, generated) = match result {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Exit::Failed(e),
        Err(e) => return Exit::Usage(e.to_string()),
    };
    println!("{text}");
    eprintln!(
        "{generated} tokens generated: {} text characters, {} speech codes",
        text.chars().count(),
        codes.len()
    );
    if let Some(path) = &args.codes_out {
        if let Err(e) = write_codes(path, &text, &codes) {
            return Exit::Failed(format!("cannot write {}: {e}", path.display()));
        }
    }
    Exit::Ok
}

/// `{"text": ..., "codes": [...]}`: the reply's speech codes for `arp-train synth`.
fn write_codes(path: &Path, text: &str, codes: &[u32]) -> std::io::Result<()> {
    let json = serde_json::json!({ "text": text, "codes": codes });
    crate::atomic::write(path, &serde_json::to_vec_pretty(&json)?)
}

/// A finite number >= 0 (`--temperature`).
fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number >= 0")),
    }
}

/// A number in (0, 1] (`--top-p`).
fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number in (0, 1]")),
    }
}
