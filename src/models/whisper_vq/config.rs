//! The speech tokenizer's `config.json` (HF `WhisperVQConfig`, `model_type: whisper`). Extra
//! keys (decoder sizes, generation settings) are ignored; missing required ones are errors.

use std::path::Path;

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum PoolingType {
    Max,
    Avg,
}

fn default_pooling_type() -> PoolingType {
    // WhisperVQConfig's default; GLM-4-Voice's tokenizer sets "avg".
    PoolingType::Max
}

fn default_activation() -> String {
    "gelu".into()
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct WhisperVqConfig {
    pub d_model: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub num_mel_bins: usize,
    pub max_source_positions: usize,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default)]
    pub pooling_kernel_size: Option<usize>,
    #[serde(default = "default_pooling_type")]
    pub pooling_type: PoolingType,
    #[serde(default)]
    pub pooling_position: usize,
    pub quantize_vocab_size: usize,
    pub quantize_position: usize,
    #[serde(default)]
    pub quantize_causal_block_size: Option<usize>,
    #[serde(default)]
    pub quantize_causal_encoder: bool,
    #[serde(default)]
    pub encoder_causal_attention: bool,
    #[serde(default)]
    pub encoder_causal_convolution: bool,
}

/// How encoder frames may attend to each other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttentionPattern {
    /// Each frame sees itself and earlier frames.
    Causal,
    /// Bidirectional inside blocks of this many frames, causal across blocks.
    BlockCausal(usize),
    /// Every frame sees every frame.
    Full,
}

impl WhisperVqConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.activation_function != "gelu" {
            return Err(format!(
                "activation_function {:?} is not supported (GLM-4-Voice uses \"gelu\")",
                self.activation_function
            ));
        }
        if self.encoder_attention_heads == 0 || self.d_model % self.encoder_attention_heads != 0 {
            return Err(format!(
                "d_model {} must be a multiple of encoder_attention_heads {}",
                self.d_model, self.encoder_attention_heads
            ));
        }
        if self.quantize_position == 0 {
            return Err("quantize_position must be at least 1".into());
        }
        if self.pooling_kernel_size.is_some() && self.pooling_position > self.quantize_position {
            return Err(format!(
                "pooling_position {} must not come after quantize_position {}",
                self.pooling_position, self.quantize_position
            ));
        }
        if let (Some(block), Some(pool)) =
            (self.quantize_causal_block_size, self.pooling_kernel_size)
        {
            if block % pool != 0 || block == 0 {
                return Err(format!("quantize_causal_block_size {block} must be a positive multiple of pooling_kernel_size {pool}"));
            }
        }
        Ok(())
    }

    pub fn pooling(&self) -> usize {
        self.pooling_kernel_size.unwrap_or(1)
    }

    /// Input samples (16 kHz) per output token: hop 160 x conv2 stride 2 x pooling.
    pub fn samples_per_token(&self) -> usize {
        160 * 2 * self.pooling()
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.encoder_attention_heads
    }

    /// The attention pattern of the layers before (`pooled = false`) or after pooling.
    pub fn attention(&self, pooled: bool) -> AttentionPattern {
        if self.encoder_causal_attention || self.quantize_causal_encoder {
            return AttentionPattern::Causal;
        }
        match self.quantize_causal_block_size {
            Some(block) if pooled => AttentionPattern::BlockCausal(block / self.pooling()),
            Some(block) => AttentionPattern::BlockCausal(block),
            None => AttentionPattern::Full,
        }
    }
}
