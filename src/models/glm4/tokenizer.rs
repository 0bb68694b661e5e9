//! The GLM-4 tokenizer: a ready `tokenizer.json`, or the tiktoken rank file `tokenizer.model`
//! converted into a `tokenizers` byte-level BPE, plus the added tokens of
//! `tokenizer_config.json` (special tokens and `<|audio_0|>`..). Special and audio ids are always
//! resolved through the tokenizer, never hard-coded.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// GLM-4's pre-tokenization regex (tiktoken `pat_str`).
pub const SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct GlmTokenizer {
    bpe: Tokenizer,
    /// Added tokens by content (`[gMASK]`, `<|user|>`, `<|audio_17|>`, ...).
    added: HashMap<String, u32>,
    added_by_id: HashMap<u32, String>,
    audio_base: Option<u32>,
    audio_count: u32,
}

/// GPT-2's byte <-> printable character table used by byte-level BPE vocabularies.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid char")
        };
    }
    table
}

/// Converts tiktoken ranks into a byte-level BPE: vocabulary from the ranks, merges rebuilt
/// from them (each multi-byte token's splits into two tokens, ordered by the merged token's rank),
/// and whole pieces found in the vocabulary taken as one token, as tiktoken does.
fn bpe_from_ranks(ranks: &[(Vec<u8>, u32)]) -> Result<Tokenizer, String> {
    let table = byte_to_char();
    let text = |bytes: &[u8]| bytes.iter().map(|&b| table[b as usize]).collect::<String>();
    let vocab: HashMap<String, u32> = ranks.iter().map(|(b, r)| (text(b), *r)).collect();
    let by_bytes: HashMap<&[u8], u32> = ranks.iter().map(|(b, r)| (b.as_slice(), *r)).collect();
    let mut merges: Vec<(u32, u32, u32, String, String)> = Vec::new();
    for (bytes, rank) in ranks {
        if bytes.len() < 2 {
            continue;
        }
        for split in 1..bytes.len() {
            let (left, right) = bytes.split_at(split);
            if let (Some(&l), Some(&r)) = (by_bytes.get(left), by_bytes.get(right)) {
                merges.push((*rank, l, r, text(left), text(right)));
            }
        }
    }
    merges.sort();
    let merges: Vec<(String, String)> = merges.into_iter().map(|(_, _, _, l, r)| (l, r)).collect();
    let model = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .ignore_merges(true)
        .build()
        .map_err(|e| format!("cannot build the BPE: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    let split = Split::new(
        SplitPattern::Regex(SPLIT_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| format!("bad split pattern: {e}"))?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

fn read_ranks(path: &Path) -> Result<Vec<(Vec<u8>, u32)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let bad = |what: &str| format!("{}:{}: {what}", path.display(), i + 1);
            let (token, rank) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `base64 rank`"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|_| bad("invalid base64"))?;
            let rank = rank.trim().parse().map_err(|_| bad("invalid rank"))?;
            Ok((bytes, rank))
        })
        .collect()
}

impl GlmTokenizer {
    /// Loads `tokenizer.json` if present, else converts `tokenizer.model`; added tokens come
    /// from `tokenizer_config.json` (`added_tokens_decoder`).
    pub fn load(dir: &Path) -> Result<Self, String> {
        let json = dir.join("tokenizer.json");
        let bpe = if json.is_file() {
            Tokenizer::from_file(&json).map_err(|e| format!("{}: {e}", json.display()))?
        } else {
            let model = dir.join("tokenizer.model");
            if !model.is_file() {
                return Err(format!(
                    "{}: no tokenizer.json or tokenizer.model",
                    dir.display()
                ));
            }
            bpe_from_ranks(&read_ranks(&model)?)?
        };
        let mut added = HashMap::new();
        let config_path = dir.join("tokenizer_config.json");
        if config_path.is_file() {
            let config: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&config_path)
                    .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?,
            )
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
            if let Some(map) = config["added_tokens_decoder"].as_object() {
                for (id, token) in map {
                    let id: u32 = id.parse().map_err(|_| {
                        format!(
                            "{}: added token id {id:?} is not a number",
                            config_path.display()
                        )
                    })?;
                    if let Some(content) = token["content"].as_str() {
                        added.insert(content.to_string(), id);
                    }
                }
            }
        }
        // tokenizer.json files carry their added tokens themselves.
        for (id, token) in bpe.get_added_tokens_decoder() {
            added.entry(token.content.clone()).or_insert(id);
        }
        let audio_base = added.get("<|audio_0|>").copied();
        let audio_count = match audio_base {
            Some(base) => (0..)
                .take_while(|k| added.get(&format!("<|audio_{k}|>")) == Some(&(base + k)))
                .count() as u32,
            None => 0,
        };
        let added_by_id = added.iter().map(|(k, v)| (*v, k.clone())).collect();
        Ok(GlmTokenizer {
            bpe,
            added,
            added_by_id,
            audio_base,
            audio_count,
        })
    }

    /// Ids of plain text (no special tokens recognized, no prefix).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, String> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let encoding = self
            .bpe
            .encode(text, false)
            .map_err(|e| format!("cannot tokenize: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The id of an added token such as `<|user|>`.
    pub fn token_id(&self, token: &str) -> Result<u32, String> {
        self.added
            .get(token)
            .copied()
            .ok_or_else(|| format!("the tokenizer has no token {token}"))
    }

    /// `[gMASK]<sop>`, which GLM-4 puts before every encoded conversation.
    pub fn prefix(&self) -> Result<Vec<u32>, String> {
        Ok(vec![self.token_id("[gMASK]")?, self.token_id("<sop>")?])
    }

    /// The id of speech token `code`.
    pub fn audio_id(&self, code: u32) -> Result<u32, String> {
        match self.audio_base {
            Some(base) if code < self.audio_count => Ok(base + code),
            Some(_) => Err(format!(
                "speech token {code} is outside the tokenizer's {} audio tokens",
                self.audio_count
            )),
            None => Err("the tokenizer has no <|audio_0|> token".into()),
        }
    }

    /// The speech code of an id, if it is an audio token.
    pub fn audio_code(&self, id: u32) -> Option<u32> {
        let base = self.audio_base?;
        (id >= base && id < base + self.audio_count).then(|| id - base)
    }

    /// Whether `id` is an added (special or audio) token.
    pub fn is_added(&self, id: u32) -> bool {
        self.added_by_id.contains_key(&id)
    }

    pub fn audio_tokens(&self) -> u32 {
        self.audio_count
    }

    /// Text of ids that are not added tokens (added tokens are written as their content).
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        let mut out = String::new();
        let mut run = Vec::new();
        for &id in ids {
            match self.added_by_id.get(&id) {
                Some(content) => {
                    out.push_str(&self.bpe.decode(&run, false).map_err(|e| e.to_string())?);
                    run.clear();
                    out.push_str(content);
                }
                None => run.push(id),
            }
        }
        out.push_str(&self.bpe.decode(&run, false).map_err(|e| e.to_string())?);
        Ok(out)
    }
}
