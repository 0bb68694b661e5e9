//! GLM-4-Voice's prompt format (../shared/reference/glm-4-voice.md §3), as token ids:
//! `[gMASK]<sop><|system|>\n{system}<|user|>\n{user}<|assistant|>streaming_transcription\n`,
//! where a spoken user turn is `<|begin_of_audio|><|audio_a1|>...<|end_of_audio|>`. Text between
//! special tokens is encoded on its own, as the Python tokenizer does when it splits on them.

use crate::models::glm4::tokenizer::GlmTokenizer;

/// GLM-4-Voice's system prompt for spoken input (the trailing space is in the original).
pub const SPEECH_INSTRUCTION: &str = "User will provide you with a speech instruction. Do it step by step. First, think about the instruction and respond in a interleaved manner, with 13 text token followed by 26 audio tokens. ";
/// GLM-4-Voice's system prompt for text input.
pub const TEXT_INSTRUCTION: &str = "User will provide you with a text instruction. Do it step by step. First, think about the instruction and respond in a interleaved manner, with 13 text token followed by 26 audio tokens.";

/// What the user says: text, or speech tokens.
pub enum UserTurn<'a> {
    Text(&'a str),
    Speech(&'a [u32]),
}

/// The system text: GLM-4-Voice's instruction for the input kind, then the character's persona
/// (the card's `system_prompt`) on the next line when there is one.
pub fn system_text(turn: &UserTurn, persona: Option<&str>) -> String {
    let instruction = match turn {
        UserTurn::Text(_) => TEXT_INSTRUCTION,
        UserTurn::Speech(_) => SPEECH_INSTRUCTION,
    };
    match persona {
        Some(p) if !p.trim().is_empty() => format!("{instruction}\n{}", p.trim()),
        _ => instruction.to_string(),
    }
}

/// Ids of a user turn's content (after `<|user|>\n`).
pub fn user_ids(tok: &GlmTokenizer, turn: &UserTurn) -> Result<Vec<u32>, String> {
    match turn {
        UserTurn::Text(text) => tok.encode_text(text),
        UserTurn::Speech(codes) => {
            let mut ids = vec![tok.token_id("<|begin_of_audio|>")?];
            for &code in codes.iter() {
                ids.push(tok.audio_id(code)?);
            }
            ids.push(tok.token_id("<|end_of_audio|>")?);
            Ok(ids)
        }
    }
}

/// The full inference prompt, up to and including `<|assistant|>streaming_transcription\n`.
pub fn inference_prompt(
    tok: &GlmTokenizer,
    system: &str,
    turn: &UserTurn,
) -> Result<Vec<u32>, String> {
    let mut ids = tok.prefix()?;
    ids.push(tok.token_id("<|system|>")?);
    ids.extend(tok.encode_text(&format!("\n{system}"))?);
    ids.push(tok.token_id("<|user|>")?);
    ids.extend(tok.encode_text("\n")?);
    ids.extend(user_ids(tok, turn)?);
    ids.push(tok.token_id("<|assistant|>")?);
    ids.extend(tok.encode_text("streaming_transcription\n")?);
    Ok(ids)
}

/// A reply split into its text and its speech codes (special tokens dropped).
pub fn split_reply(tok: &GlmTokenizer, ids: &[u32]) -> Result<(String, Vec<u32>), String> {
    let mut text_ids = Vec::new();
    let mut codes = Vec::new();
    for &id in ids {
        if let Some(code) = tok.audio_code(id) {
            codes.push(code);
        } else if !tok.is_added(id) {
            text_ids.push(id);
        }
    }
    Ok((tok.decode(&text_ids)?, codes))
}
