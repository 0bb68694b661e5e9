//! Stage-one training samples in GLM-4-Voice's format (../shared/reference/glm-4-voice.md §3).
//!
//! One sample per utterance of the character (an `index.jsonl` entry of the prepared cache):
//!
//! ```text
//! [gMASK]<sop><|system|>\n{instruction}\n{persona}          system (persona = card's system_prompt)
//! <|user|>\n{turn}  /  <|assistant|>streaming_transcription\n{interleaved}   earlier turns (history)
//! <|user|>\n{turn}                                          the line the character answers
//! <|assistant|>streaming_transcription\n                    -- everything so far has label -100 --
//! interleave(reply text, reply speech, 13, 26) <|user|>     the target (labels = ids)
//! ```
//!
//! A context turn by another speaker is a user turn: its speech tokens between
//! `<|begin_of_audio|>`/`<|end_of_audio|>` when it has audio, else its text. A context turn by the
//! character is an assistant turn (interleaved like the target, but masked). The line answered is
//! the last context turn when another speaker said it; otherwise (no context, or the character
//! spoke last) the user turn is empty. The system instruction is the speech one when the answered
//! turn is speech, the text one otherwise. Over-long samples lose their oldest history turns
//! first; a sample still too long without history is dropped. Both are counted.

use super::prompt::{system_text, user_ids, UserTurn};
use super::speaker_names;
use crate::models::glm4::tokenizer::GlmTokenizer;

/// Label of positions that do not count in the loss.
pub const IGNORE: i64 = crate::models::glm4::model::IGNORE_INDEX;
/// GLM-4-Voice interleaves its replies as 13 text tokens, then 26 speech tokens, repeated.
pub const TEXT_CHUNK: usize = 13;
pub const SPEECH_CHUNK: usize = 26;

/// `text_chunk` text ids, `speech_chunk` speech ids, repeated; whichever runs out first, the
/// other's remainder follows.
pub fn interleave(
    text: &[u32],
    speech: &[u32],
    text_chunk: usize,
    speech_chunk: usize,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(text.len() + speech.len());
    let (mut t, mut s) = (0, 0);
    while t < text.len() || s < speech.len() {
        let t_end = (t + text_chunk).min(text.len());
        out.extend_from_slice(&text[t..t_end]);
        t = t_end;
        let s_end = (s + speech_chunk).min(speech.len());
        out.extend_from_slice(&speech[s..s_end]);
        s = s_end;
    }
    out
}

/// A tokenized training sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub id: String,
    pub input_ids: Vec<u32>,
    /// -100 on the prompt, the token id on the target.
    pub labels: Vec<i64>,
    /// History turns dropped to fit `max_seq_len`.
    pub dropped_turns: usize,
}

/// A turn of the conversation as the sample builder sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    pub by_character: bool,
    pub text: String,
    /// Speech codes of the turn's audio, when it has usable audio.
    pub speech: Option<Vec<u32>>,
}

/// Builds samples for one character.
pub struct SampleBuilder<'a> {
    pub tokenizer: &'a GlmTokenizer,
    /// The card's `system_prompt`.
    pub persona: &'a str,
    pub max_seq_len: usize,
}

#[derive(Debug, PartialEq)]
pub enum Built {
    Sample(Sample),
    /// Too long even without history: (id, tokens needed).
    TooLong(String, usize),
}

impl SampleBuilder<'_> {
    fn speech_ids(&self, codes: &[u32]) -> Result<Vec<u32>, String> {
        codes.iter().map(|&c| self.tokenizer.audio_id(c)).collect()
    }

    fn assistant_header(&self) -> Result<Vec<u32>, String> {
        let mut ids = vec![self.tokenizer.token_id("<|assistant|>")?];
        ids.extend(self.tokenizer.encode_text("streaming_transcription\n")?);
        Ok(ids)
    }

    /// `reply text` + `reply speech` interleaved (speech may be absent: text only).
    fn reply_ids(&self, text: &str, speech: Option<&[u32]>) -> Result<Vec<u32>, String> {
        let text_ids = self.tokenizer.encode_text(text)?;
        let speech_ids = self.speech_ids(speech.unwrap_or(&[]))?;
        Ok(interleave(&text_ids, &speech_ids, TEXT_CHUNK, SPEECH_CHUNK))
    }

    fn user_turn(&self, turn: Option<&Turn>) -> Result<Vec<u32>, String> {
        let mut ids = vec![self.tokenizer.token_id("<|user|>")?];
        ids.extend(self.tokenizer.encode_text("\n")?);
        if let Some(turn) = turn {
            let content = match &turn.speech {
                Some(codes) => UserTurn::Speech(codes),
                None => UserTurn::Text(&turn.text),
            };
            ids.extend(user_ids(self.tokenizer, &content)?);
        }
        Ok(ids)
    }

    fn history_turn(&self, turn: &Turn) -> Result<Vec<u32>, String> {
        if turn.by_character {
            let mut ids = self.assistant_header()?;
            ids.extend(self.reply_ids(&turn.text, turn.speech.as_deref())?);
            Ok(ids)
        } else {
            self.user_turn(Some(turn))
        }
    }

    /// The sample for the character's `reply` after `context` (oldest first).
    pub fn build(&self, id: &str, context: &[Turn], reply: &Turn) -> Result<Built, String> {
        let tok = self.tokenizer;
        let (history, answered) = match context.split_last() {
            Some((last, earlier)) if !last.by_character => (earlier, Some(last)),
            _ => (context, None),
        };
        let answered_kind = match answered {
            Some(Turn {
                speech: Some(codes),
                ..
            }) => UserTurn::Speech(codes),
            _ => UserTurn::Text(""),
        };
        let mut head = tok.prefix()?;
        head.push(tok.token_id("<|system|>")?);
        head.extend(tok.encode_text(&format!(
            "\n{}",
            system_text(&answered_kind, Some(self.persona))
        ))?);
        let history: Vec<Vec<u32>> = history
            .iter()
            .map(|t| self.history_turn(t))
            .collect::<Result<_, _>>()?;
        let mut tail = self.user_turn(answered)?;
        tail.extend(self.assistant_header()?);
        let mut target = self.reply_ids(&reply.text, reply.speech.as_deref())?;
        target.push(tok.token_id("<|user|>")?);

        let fixed = head.len() + tail.len() + target.len();
        if fixed > self.max_seq_len {
            return Ok(Built::TooLong(id.to_string(), fixed));
        }
        // Keep the newest history turns that fit.
        let mut kept = history.len();
        let mut length = fixed + history.iter().map(Vec::len).sum::<usize>();
        let mut first = 0;
        while length > self.max_seq_len {
            length -= history[first].len();
            first += 1;
            kept -= 1;
        }
        let mut input_ids = head;
        for turn in &history[first..] {
            input_ids.extend(turn);
        }
        input_ids.extend(tail);
        let prompt_len = input_ids.len();
        input_ids.extend(&target);
        let mut labels = vec![IGNORE; prompt_len];
        labels.extend(target.iter().map(|&t| t as i64));
        Ok(Built::Sample(Sample {
            id: id.to_string(),
            input_ids,
            labels,
            dropped_turns: history.len() - kept,
        }))
    }
}

/// Groups sample indices into batches of similar length: shuffle (seeded), sort within windows
/// of `window` batches by length, cut into batches, shuffle the batch order. Returns the batches
/// and the share of padding positions they carry.
pub fn length_bucketed_batches(
    lengths: &[usize],
    batch_size: usize,
    window: usize,
    seed: u64,
) -> (Vec<Vec<usize>>, f64) {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let mut rng = seed.max(1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in (1..order.len()).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let span = (batch_size * window.max(1)).max(1);
    for chunk in order.chunks_mut(span) {
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    }
    let mut batches: Vec<Vec<usize>> = order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    for i in (1..batches.len()).rev() {
        batches.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let (mut padded, mut real) = (0usize, 0usize);
    for batch in &batches {
        let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        padded += longest * batch.len();
        real += batch.iter().map(|&i| lengths[i]).sum::<usize>();
    }
    let share = if padded == 0 {
        0.0
    } else {
        (padded - real) as f64 / padded as f64
    };
    (batches, share)
}

/// Samples of one character from a prepared cache, with what was truncated or dropped.
#[derive(Debug, Default)]
pub struct SampleSet {
    pub samples: Vec<Sample>,
    /// Samples that lost history turns to fit, and how many turns in all.
    pub truncated_samples: usize,
    pub dropped_turns: usize,
    /// Samples too long even without history: (id, tokens needed).
    pub too_long: Vec<(String, usize)>,
}

/// Builds a sample for every cache entry of `speaker` (index order).
pub fn build_from_cache(
    cache_dir: &std::path::Path,
    speaker: &str,
    builder: &SampleBuilder,
) -> Result<SampleSet, String> {
    use super::cache::{read_index, read_segment, segment_path};
    let speech = |key: &str| -> Result<Vec<u32>, String> {
        Ok(read_segment(&segment_path(cache_dir, key))?.speech_tokens)
    };
    let mut set = SampleSet::default();
    for entry in read_index(cache_dir)?
        .into_iter()
        .filter(|e| speaker_names::same(&e.speaker, speaker))
    {
        let context: Vec<Turn> = entry
            .context
            .iter()
            .map(|t| {
                Ok(Turn {
                    by_character: speaker_names::same(&t.speaker, speaker),
                    text: t.text.clone(),
                    speech: t.segment.as_deref().map(speech).transpose()?,
                })
            })
            .collect::<Result<_, String>>()?;
        let reply = Turn {
            by_character: true,
            text: entry.text.clone(),
            speech: Some(speech(&entry.segment)?),
        };
        match builder.build(&entry.id, &context, &reply)? {
            Built::Sample(sample) => {
                if sample.dropped_turns > 0 {
                    set.truncated_samples += 1;
                    set.dropped_turns += sample.dropped_turns;
                }
                set.samples.push(sample);
            }
            Built::TooLong(id, needed) => set.too_long.push((id, needed)),
        }
    }
    Ok(set)
}
