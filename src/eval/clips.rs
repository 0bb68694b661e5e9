//! The audio an evaluation compares: candidate clips (what is judged) and the character's real
//! clips (the reference), from a directory of WAVs or from a recipe's prepared dataset cache.

use std::path::Path;

use crate::audio::{read, Audio, DECODER_RATE};
use crate::data::decoder_data::{DecoderData, Utterance};
use crate::recipe::Recipe;

#[derive(Clone, Debug)]
pub struct Clip {
    /// Utterance id (manifest id, or the WAV's file stem); candidates and references with the
    /// same id are the same line.
    pub id: String,
    pub audio: Audio,
    /// Where it came from (a path, or "held-out"/"train" of the recipe's cache).
    pub source: String,
}

/// Every audio file (`read::AUDIO_EXTENSIONS`) directly in `dir`, sorted by name.
pub fn audio_dir(dir: &Path) -> Result<Vec<Clip>, String> {
    let paths: Vec<_> = crate::listing::sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && read::is_audio_file(p))
        .collect();
    if paths.is_empty() {
        return Err(format!(
            "no audio files ({}) in {}",
            read::AUDIO_EXTENSIONS.join(", "),
            dir.display()
        ));
    }
    paths
        .iter()
        .map(|p| {
            let audio = read::read_mono(p, None).map_err(|e| format!("{}: {e}", p.display()))?;
            if audio.samples.is_empty() {
                return Err(format!("{}: the file holds no samples", p.display()));
            }
            Ok(Clip {
                id: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                audio,
                source: p.display().to_string(),
            })
        })
        .collect()
}

/// The recipe character's utterances from the prepared cache, split as the trainer splits them.
pub struct CharacterAudio {
    pub train: Vec<Clip>,
    pub held_out: Vec<Clip>,
    /// Speech codes of the held-out lines (what a package's decoder synthesizes from).
    pub held_out_codes: Vec<(String, Vec<u32>)>,
}

pub fn character_audio(recipe: &Recipe) -> Result<CharacterAudio, String> {
    let data = DecoderData::load(recipe).map_err(|e| {
        format!(
            "{e}\nthe evaluation reads the character's clips from the prepared dataset cache ({}); \
             run `arp-train --recipe {} --stages prepare` first",
            recipe.data.cache_dir.display(),
            recipe.file.display()
        )
    })?;
    let clip = |u: &Utterance, source: &str| Clip {
        id: u.id.clone(),
        audio: Audio {
            samples: u.audio.clone(),
            rate: DECODER_RATE,
        },
        source: source.into(),
    };
    Ok(CharacterAudio {
        train: data.train.iter().map(|u| clip(u, "train")).collect(),
        held_out: data
            .validation
            .iter()
            .map(|u| clip(u, "held-out"))
            .collect(),
        held_out_codes: data
            .validation
            .iter()
            .map(|u| (u.id.clone(), u.tokens.clone()))
            .collect(),
    })
}
