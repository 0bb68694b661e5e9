//! GLM-4-Voice-9B's `config.json` (`model_type: chatglm`), read from the user's model directory.
//! Extra keys (auto_map, architectures, ...) are ignored; a missing required key is an error
//! that names it.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Glm4Config {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_attention_heads: usize,
    pub kv_channels: usize,
    #[serde(default)]
    pub multi_query_attention: bool,
    #[serde(default = "one")]
    pub multi_query_group_num: usize,
    pub ffn_hidden_size: usize,
    pub padded_vocab_size: usize,
    pub layernorm_epsilon: f64,
    #[serde(default)]
    pub add_bias_linear: bool,
    #[serde(default = "yes")]
    pub add_qkv_bias: bool,
    #[serde(default = "one_f64")]
    pub rope_ratio: f64,
    #[serde(default = "default_seq_length")]
    pub seq_length: usize,
}

fn one() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_seq_length() -> usize {
    8192
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Glm4Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string())
    }

    /// A config.json's text; `origin` names it in errors.
    pub fn from_text(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        let config: Glm4Config = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.check().map_err(invalid)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || self.kv_groups() == 0
            || self.num_attention_heads % self.kv_groups() != 0
        {
            return Err(format!(
                "num_attention_heads ({}) must be a positive multiple of multi_query_group_num ({})",
                self.num_attention_heads,
                self.kv_groups()
            ));
        }
        if self.kv_channels % 4 != 0 {
            return Err(format!(
                "kv_channels ({}) must be a multiple of 4 (half of each head rotates in pairs)",
                self.kv_channels
            ));
        }
        Ok(())
    }

    /// Key/value heads: `multi_query_group_num` with multi-query attention, else one per head.
    pub fn kv_groups(&self) -> usize {
        if self.multi_query_attention {
            self.multi_query_group_num
        } else {
            self.num_attention_heads
        }
    }

    /// "40 layers, hidden 4096, 32 heads / 2 KV groups".
    pub fn summary(&self) -> String {
        format!(
            "{} layers, hidden {}, {} heads / {} KV groups",
            self.num_layers,
            self.hidden_size,
            self.num_attention_heads,
            self.kv_groups()
        )
    }

    /// Output width of the fused `query_key_value` projection.
    pub fn qkv_size(&self) -> usize {
        (self.num_attention_heads + 2 * self.kv_groups()) * self.kv_channels
    }

    /// (in, out) features of each linear layer a LoRA adapter can wrap.
    pub fn linear_shape(&self, name: &str) -> Option<(usize, usize)> {
        let h = self.hidden_size;
        match name {
            "query_key_value" => Some((h, self.qkv_size())),
            "dense" => Some((self.num_attention_heads * self.kv_channels, h)),
            "dense_h_to_4h" => Some((h, 2 * self.ffn_hidden_size)),
            "dense_4h_to_h" => Some((self.ffn_hidden_size, h)),
            _ => None,
        }
    }

    /// Parameters of the whole model, counted from the tensor list of the checkpoint.
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let linear = |name| self.linear_shape(name).map_or(0, |(i, o)| (i * o) as u64);
        let qkv_bias = if self.add_qkv_bias {
            self.qkv_size() as u64
        } else {
            0
        };
        let dense_bias = if self.add_bias_linear {
            h + 2 * self.ffn_hidden_size as u64 + h
        } else {
            0
        };
        let layer = 2 * h
            + linear("query_key_value")
            + qkv_bias
            + linear("dense")
            + linear("dense_h_to_4h")
            + linear("dense_4h_to_h")
            + dense_bias;
        2 * self.padded_vocab_size as u64 * h + self.num_layers as u64 * layer + h
    }

    /// Parameters of LoRA adapters of `rank` on `targets` in every layer.
    pub fn lora_parameter_count(&self, rank: usize, targets: &[String]) -> u64 {
        let per_layer: usize = targets
            .iter()
            .filter_map(|t| self.linear_shape(t))
            .map(|(i, o)| rank * (i + o))
            .sum();
        (per_layer * self.num_layers) as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn real_config_counts_about_9_5_billion() {
        let config = crate::models::released::glm4_voice_9b();
        assert_eq!(config.qkv_size(), 4608);
        // Embedding + output layer (2 x 168960 x 4096) + 40 layers x 203,960,832 + final norm.
        assert_eq!(config.parameter_count(), 9_542_557_696);
        // LoRA r 32 on all four targets: 32 x (8704 + 8192 + 31488 + 17792) x 40 layers.
        let targets: Vec<String> = crate::recipe::LORA_TARGETS
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(config.lora_parameter_count(32, &targets), 84_705_280);
    }
}
