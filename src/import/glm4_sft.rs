//! GLM-4-Voice fine-tuning data: JSONL, one conversation per line, each turn a user utterance
//! and the agent's spoken reply. Paths are relative to the file.

use std::path::Path;

use serde::Deserialize;

use super::{read_bytes, utf8_lines, Imported, Line, Turn};
use crate::data::manifest::MAX_CONTEXT_TURNS;

#[derive(Deserialize)]
struct Conversation {
    id: serde_json::Value,
    data: Vec<Exchange>,
}

#[derive(Deserialize)]
struct Exchange {
    user: Utterance,
    agent: Utterance,
}

#[derive(Deserialize)]
struct Utterance {
    #[serde(default)]
    wav_path: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

/// The user's turns are spoken by `user` (context only).
const USER: &str = "user";

pub fn read(path: &Path, speaker: &str) -> Result<Imported, String> {
    let bytes = read_bytes(path)?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut out = Imported::default();
    for (number, row) in utf8_lines(&bytes) {
        let place = format!("{}:{number}", path.display());
        let row = match row {
            Ok(row) => row,
            Err(why) => {
                out.skipped.push(format!("{place}: {why}"));
                continue;
            }
        };
        if row.trim().is_empty() {
            continue;
        }
        let conversation: Conversation = match serde_json::from_str(row) {
            Ok(c) => c,
            Err(e) => {
                out.skipped
                    .push(format!("{place}: not a GLM-4-Voice SFT conversation: {e}"));
                continue;
            }
        };
        let id = match &conversation.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut context: Vec<Turn> = Vec::new();
        for (turn, exchange) in conversation.data.iter().enumerate() {
            context.push(Turn {
                speaker: USER.into(),
                text: exchange.user.text.clone().unwrap_or_default(),
                audio: exchange.user.wav_path.as_ref().map(|p| base.join(p)),
            });
            let (Some(wav), Some(reply)) = (&exchange.agent.wav_path, &exchange.agent.text) else {
                out.skipped.push(format!(
                    "{place}: turn {turn}: the agent has no wav_path or text"
                ));
                continue;
            };
            out.lines.push(Line {
                id: format!("{id}-{turn:03}"),
                audio: base.join(wav),
                text: reply.clone(),
                speaker: speaker.to_string(),
                context: context[context.len().saturating_sub(MAX_CONTEXT_TURNS)..].to_vec(),
            });
            context.push(Turn {
                speaker: speaker.to_string(),
                text: reply.clone(),
                audio: Some(base.join(wav)),
            });
        }
    }
    Ok(out)
}
