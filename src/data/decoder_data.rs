//! Stage two's data: the character's own utterances from the dataset cache (speech tokens, the
//! decoder mel, the 22.05 kHz waveform and its F0), split into train and held-out sets the same
//! way as stage one, and batches filled up to a number of mel frames.

use std::path::Path;

use super::cache::{read_index, read_segment, segment_path};
use super::speaker_names;
use super::split::train_and_held_out;
use crate::recipe::Recipe;
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct Utterance {
    pub id: String,
    /// Speech token codes (0..16384).
    pub tokens: Vec<u32>,
    /// Decoder log-mel, row-major [80, frames].
    pub mel: Vec<f32>,
    pub frames: usize,
    pub audio: Vec<f32>,
    pub f0: Vec<f32>,
}

pub struct DecoderData {
    pub train: Vec<Utterance>,
    pub validation: Vec<Utterance>,
    pub seconds: f64,
}

impl DecoderData {
    /// Mel frames of each training utterance (what the flow's batches are filled with).
    pub fn train_mel_frames(&self) -> Vec<usize> {
        self.train.iter().map(|u| u.frames).collect()
    }
}

impl DecoderData {
    /// The recipe character's utterances in the prepared cache.
    pub fn load(recipe: &Recipe) -> Result<Self, String> {
        let speaker = recipe
            .speaker()
            .ok_or("the recipe has no character speaker")?
            .to_string();
        Self::load_speaker(&recipe.data.cache_dir, &speaker, recipe)
    }

    fn load_speaker(cache: &Path, speaker: &str, recipe: &Recipe) -> Result<Self, String> {
        let mut all = Vec::new();
        let mut seconds = 0.0;
        for entry in read_index(cache)?
            .into_iter()
            .filter(|e| speaker_names::same(&e.speaker, speaker))
        {
            let segment = read_segment(&segment_path(cache, &entry.segment))?;
            if segment.speech_tokens.is_empty() || segment.mel_frames < 2 {
                continue;
            }
            seconds += segment.meta.seconds;
            all.push(Utterance {
                id: entry.id,
                tokens: segment.speech_tokens,
                mel: segment.mel,
                frames: segment.mel_frames,
                audio: segment.audio,
                f0: segment.f0,
            });
        }
        if all.is_empty() {
            return Err(format!(
                "no utterances of speaker {speaker:?} with audio in {}",
                cache.display()
            ));
        }
        let (train, validation) =
            train_and_held_out(all, |u| u.id.as_str(), recipe.seed, &recipe.data.validation);
        Ok(DecoderData {
            train,
            validation,
            seconds,
        })
    }
}

/// Batches of item indices whose padded size (items x longest) stays within `max_frames` (an
/// item longer than that gets a batch of its own), in a seeded order.
pub fn frame_batches(lengths: &[usize], max_frames: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        let longest = current
            .iter()
            .map(|&j| lengths[j])
            .max()
            .unwrap_or(0)
            .max(lengths[i]);
        if !current.is_empty() && (current.len() + 1) * longest > max_frames {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    let mut rng = Rng::new(seed);
    for i in (1..batches.len()).rev() {
        let j = rng.below_or_equal(i);
        batches.swap(i, j);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::frame_batches;

    #[test]
    fn batches_respect_the_frame_budget_and_cover_every_item() {
        let lengths = [100, 250, 90, 400, 1200, 80, 300];
        let batches = frame_batches(&lengths, 600, 3);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || b.len() * longest <= 600, "{b:?}");
        }
        assert_eq!(batches, frame_batches(&lengths, 600, 3));
    }
}
