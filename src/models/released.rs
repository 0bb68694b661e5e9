//! The configs of the released GLM-4-Voice-9B and GLM-4-Voice-Decoder, built into the binary
//! (models/released/), so that a plan and a memory estimate exist before the weights are
//! downloaded. A run always reads the user's own files.

use std::path::Path;

use super::decoder::config::DecoderModelConfig;
use super::glm4::Glm4Config;

/// Where the shipped copies live in the checkout; errors name them.
pub const GLM4_VOICE_9B_CONFIG: &str = "models/released/glm-4-voice-9b/config.json";
pub const DECODER_CONFIG: &str = "models/released/glm-4-voice-decoder/config.yaml";

const GLM4_VOICE_9B_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/released/glm-4-voice-9b/config.json"
));
const DECODER_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/released/glm-4-voice-decoder/config.yaml"
));

/// THUDM/glm-4-voice-9b's config.json.
pub fn glm4_voice_9b() -> Glm4Config {
    Glm4Config::from_text(GLM4_VOICE_9B_TEXT, GLM4_VOICE_9B_CONFIG)
        .expect("the shipped GLM-4-Voice-9B config parses (models::glm4::config's tests read it)")
}

/// THUDM/glm-4-voice-decoder's config.yaml.
pub fn decoder() -> DecoderModelConfig {
    DecoderModelConfig::from_text(DECODER_TEXT, Path::new(DECODER_CONFIG))
        .expect("the shipped GLM-4-Voice-Decoder config parses (plan's tests read it)")
}
