//! GLM-4-Voice-Decoder hyperparameters, read from its `config.yaml` as users download it
//! (HyperPyYAML: `!new:` tags construct classes, `!ref <name>` points at a top-level value).
//! Only the `flow` and `hift` sections matter to arp-train; unknown keys are ignored (the file
//! carries settings for CosyVoice's other parts), missing ones are errors naming file and line.

use std::path::Path;

use serde::Serialize;

use crate::recipe::diagnostics::{Diagnostics, RecipeErrors};
use crate::recipe::node::{parse, Node, Value};
use crate::recipe::reader::{FromNode, Section};

/// `flow.encoder`: cosyvoice.transformer.encoder.BlockConformerEncoder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EncoderConfig {
    pub output_size: usize,
    pub attention_heads: usize,
    pub linear_units: usize,
    pub num_blocks: usize,
    pub block_size: usize,
}

/// `flow.decoder.estimator`: cosyvoice.flow.decoder.ConditionalDecoder (the U-Net).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EstimatorConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub channels: Vec<usize>,
    pub attention_head_dim: usize,
    pub n_blocks: usize,
    pub num_mid_blocks: usize,
    pub num_heads: usize,
    pub act_fn: String,
}

/// `flow.decoder.cfm_params`: the conditional flow-matching settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CfmConfig {
    pub sigma_min: f64,
    pub t_scheduler: String,
    pub training_cfg_rate: f64,
    pub inference_cfg_rate: f64,
}

/// `flow`: cosyvoice.flow.flow.MaskedDiffWithXvec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowConfig {
    pub input_size: usize,
    pub output_size: usize,
    pub spk_embed_dim: usize,
    pub vocab_size: usize,
    pub input_frame_rate: f64,
    pub encoder: EncoderConfig,
    /// `length_regulator.sampling_ratios`: one Conv1d + GroupNorm + Mish per entry.
    pub regulator_sampling_ratios: Vec<usize>,
    pub cfm: CfmConfig,
    pub estimator: EstimatorConfig,
}

/// `hift.f0_predictor`: cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct F0PredictorConfig {
    pub num_class: usize,
    pub in_channels: usize,
    pub cond_channels: usize,
}

/// `hift`: cosyvoice.hifigan.generator.HiFTGenerator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HiftConfig {
    pub in_channels: usize,
    pub base_channels: usize,
    pub nb_harmonics: usize,
    pub sampling_rate: u32,
    pub nsf_alpha: f64,
    pub nsf_sigma: f64,
    pub nsf_voiced_threshold: f64,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub istft_n_fft: usize,
    pub istft_hop_len: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub source_resblock_kernel_sizes: Vec<usize>,
    pub source_resblock_dilation_sizes: Vec<Vec<usize>>,
    pub lrelu_slope: f64,
    pub audio_limit: f64,
    pub f0_predictor: F0PredictorConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecoderModelConfig {
    pub flow: FlowConfig,
    pub hift: HiftConfig,
}

impl HiftConfig {
    /// Output samples per mel frame: the product of the upsample rates times the iSTFT hop.
    pub fn samples_per_frame(&self) -> usize {
        self.upsample_rates.iter().product::<usize>() * self.istft_hop_len
    }
}

/// Replaces every `!ref <name>` scalar by the top-level value `name` (HyperPyYAML's simple
/// references; arithmetic inside `<...>` is not supported and is reported).
fn resolve_refs(node: &mut Node, top: &Node, diags: &Diagnostics) {
    if node.tag.as_deref() == Some("!ref") {
        let text = node.as_str().unwrap_or_default().trim().to_string();
        let name = text.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
        match name.and_then(|n| top.get(n).map(|v| (n, v))) {
            Some((_, target)) if target.tag.as_deref() != Some("!ref") => {
                node.value = target.value.clone();
                node.tag = None;
            }
            _ => diags.error(&node.origin, "", format!("cannot resolve `!ref {text}`: only references to top-level values are supported")),
        }
        return;
    }
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| resolve_refs(n, top, diags)),
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, n)| resolve_refs(n, top, diags)),
        _ => {}
    }
}

/// An error about the whole file (unreadable, not YAML).
fn whole_file_error(path: &Path, message: String) -> RecipeErrors {
    let diags = Diagnostics::default();
    diags.error(&crate::recipe::node::Origin::new(path, 1), "", message);
    RecipeErrors(diags.into_vec())
}

fn req<T: FromNode + Default>(s: &Section, key: &'static str) -> T {
    s.req(key).unwrap_or_default()
}

impl DecoderModelConfig {
    pub fn from_file(path: &Path) -> Result<Self, RecipeErrors> {
        let text = crate::recipe::node::read_document(path)
            .map_err(|e| whole_file_error(path, format!("cannot read {}: {e}", path.display())))?;
        Self::from_text(&text, path)
    }

    /// A config.yaml's text; `path` names it in errors.
    pub fn from_text(text: &str, path: &Path) -> Result<Self, RecipeErrors> {
        let mut root = parse(text, path).map_err(|e| {
            whole_file_error(
                path,
                format!("{}: YAML syntax error: {}", e.origin, e.message),
            )
        })?;
        let diags = Diagnostics::default();
        let top = root.clone();
        resolve_refs(&mut root, &top, &diags);
        let config = Self::read(&root, &diags);
        if diags.has_errors() {
            Err(RecipeErrors(diags.into_vec()))
        } else {
            Ok(config)
        }
    }

    fn read(root: &Node, diags: &Diagnostics) -> Self {
        let top = Section::new(root, "", diags);
        let f = top.section("flow");
        let e = f.section("encoder");
        let encoder = EncoderConfig {
            output_size: req(&e, "output_size"),
            attention_heads: req(&e, "attention_heads"),
            linear_units: req(&e, "linear_units"),
            num_blocks: req(&e, "num_blocks"),
            block_size: req(&e, "block_size"),
        };
        e.check(
            encoder.attention_heads > 0
                && encoder.output_size % encoder.attention_heads.max(1) == 0,
            "attention_heads",
            "must divide output_size",
        );
        let cfm_section = f.section("decoder");
        let content = cfm_section.section("cfm_params").section("content");
        let cfm = CfmConfig {
            sigma_min: req(&content, "sigma_min"),
            t_scheduler: req(&content, "t_scheduler"),
            training_cfg_rate: req(&content, "training_cfg_rate"),
            inference_cfg_rate: req(&content, "inference_cfg_rate"),
        };
        let es = cfm_section.section("estimator");
        let estimator = EstimatorConfig {
            in_channels: req(&es, "in_channels"),
            out_channels: req(&es, "out_channels"),
            channels: req(&es, "channels"),
            attention_head_dim: req(&es, "attention_head_dim"),
            n_blocks: req(&es, "n_blocks"),
            num_mid_blocks: req(&es, "num_mid_blocks"),
            num_heads: req(&es, "num_heads"),
            act_fn: req(&es, "act_fn"),
        };
        let flow = FlowConfig {
            input_size: req(&f, "input_size"),
            output_size: req(&f, "output_size"),
            spk_embed_dim: req(&f, "spk_embed_dim"),
            vocab_size: req(&f, "vocab_size"),
            input_frame_rate: req(&f, "input_frame_rate"),
            encoder,
            regulator_sampling_ratios: req(&f.section("length_regulator"), "sampling_ratios"),
            cfm,
            estimator,
        };
        // x | mu | speaker | condition, each `output_size` mel channels wide.
        es.check(
            flow.estimator.in_channels == 4 * flow.output_size,
            "in_channels",
            format!(
                "must be 4 x flow.output_size ({}) for x | mu | speaker | condition",
                4 * flow.output_size
            ),
        );

        let h = top.section("hift");
        let istft = h.section("istft_params");
        let f0 = h.section("f0_predictor");
        let hift = HiftConfig {
            in_channels: req(&h, "in_channels"),
            base_channels: req(&h, "base_channels"),
            nb_harmonics: req(&h, "nb_harmonics"),
            sampling_rate: req::<u64>(&h, "sampling_rate") as u32,
            nsf_alpha: req(&h, "nsf_alpha"),
            nsf_sigma: req(&h, "nsf_sigma"),
            nsf_voiced_threshold: req(&h, "nsf_voiced_threshold"),
            upsample_rates: req(&h, "upsample_rates"),
            upsample_kernel_sizes: req(&h, "upsample_kernel_sizes"),
            istft_n_fft: req(&istft, "n_fft"),
            istft_hop_len: req(&istft, "hop_len"),
            resblock_kernel_sizes: req(&h, "resblock_kernel_sizes"),
            resblock_dilation_sizes: req(&h, "resblock_dilation_sizes"),
            source_resblock_kernel_sizes: req(&h, "source_resblock_kernel_sizes"),
            source_resblock_dilation_sizes: req(&h, "source_resblock_dilation_sizes"),
            lrelu_slope: req(&h, "lrelu_slope"),
            audio_limit: req(&h, "audio_limit"),
            f0_predictor: F0PredictorConfig {
                num_class: req(&f0, "num_class"),
                in_channels: req(&f0, "in_channels"),
                cond_channels: req(&f0, "cond_channels"),
            },
        };
        h.check(
            hift.upsample_rates.len() == hift.upsample_kernel_sizes.len(),
            "upsample_kernel_sizes",
            "needs one kernel size per upsample rate",
        );
        h.check(
            hift.resblock_kernel_sizes.len() == hift.resblock_dilation_sizes.len(),
            "resblock_dilation_sizes",
            "needs one dilation list per resblock kernel size",
        );
        h.check(
            hift.source_resblock_kernel_sizes.len() == hift.source_resblock_dilation_sizes.len()
                && hift.source_resblock_kernel_sizes.len() == hift.upsample_rates.len(),
            "source_resblock_kernel_sizes",
            "needs one source resblock (kernel and dilations) per upsample rate",
        );
        h.check(
            hift.in_channels == flow.output_size,
            "in_channels",
            format!("must equal flow.output_size ({})", flow.output_size),
        );
        DecoderModelConfig { flow, hift }
    }

    /// A one-paragraph summary for the dry run.
    pub fn summary(&self) -> String {
        let (f, h) = (&self.flow, &self.hift);
        format!(
            "flow: {} tokens -> conformer {} blocks x d{} ({} heads, ffn {}, block {}), U-Net channels {:?} ({} down/up, {} mid blocks); \
             hift: base {} channels, upsample {:?} x iSTFT hop {} = {} samples per mel frame at {} Hz",
            f.vocab_size,
            f.encoder.num_blocks,
            f.encoder.output_size,
            f.encoder.attention_heads,
            f.encoder.linear_units,
            f.encoder.block_size,
            f.estimator.channels,
            f.estimator.channels.len(),
            f.estimator.num_mid_blocks,
            h.base_channels,
            h.upsample_rates,
            h.istft_hop_len,
            h.samples_per_frame(),
            h.sampling_rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn reads_the_real_glm_4_voice_decoder_config() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(crate::models::released::DECODER_CONFIG);
        let c = DecoderModelConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.flow.vocab_size, 16384);
        assert_eq!(c.flow.spk_embed_dim, 192, "`!ref <spk_embed_dim>` resolved");
        assert_eq!(
            (
                c.flow.encoder.num_blocks,
                c.flow.encoder.output_size,
                c.flow.encoder.attention_heads
            ),
            (6, 512, 8)
        );
        assert_eq!(c.flow.encoder.block_size, 10);
        assert_eq!(c.flow.regulator_sampling_ratios, [1, 1, 1, 1]);
        assert_eq!(c.flow.cfm.t_scheduler, "cosine");
        assert_eq!(
            (c.flow.cfm.training_cfg_rate, c.flow.cfm.inference_cfg_rate),
            (0.2, 0.7)
        );
        assert_eq!(c.flow.cfm.sigma_min, 1e-6);
        assert_eq!(c.flow.estimator.channels, [256, 256]);
        assert_eq!(
            (c.flow.estimator.num_mid_blocks, c.flow.estimator.n_blocks),
            (12, 4)
        );
        assert_eq!(c.hift.sampling_rate, 22050);
        assert_eq!(
            c.hift.samples_per_frame(),
            256,
            "8 x 8 x hop 4 = the mel hop"
        );
        assert_eq!(c.hift.resblock_dilation_sizes, vec![vec![1, 3, 5]; 3]);
        assert_eq!(c.hift.f0_predictor.cond_channels, 512);
    }

    #[test]
    fn missing_keys_and_bad_refs_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "flow: !new:x.Y\n    input_size: !ref <nope>\nhift: !new:x.Z\n    in_channels: 80\n",
        )
        .unwrap();
        let err = DecoderModelConfig::from_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.yaml:2: error: cannot resolve `!ref <nope>`"),
            "{err}"
        );
        assert!(
            err.contains("`flow.encoder.output_size`: required key is missing"),
            "{err}"
        );
        assert!(
            err.contains("`hift.base_channels`: required key is missing"),
            "{err}"
        );
    }
}
