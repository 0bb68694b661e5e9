//! How many optimizer steps each part trains, one function per part, from the sizes of its
//! training data. The dry run calls them with sizes from the data scan, the trainers with the
//! prepared data they load: the same data gives the same steps, printed and trained.

use crate::data::decoder_data::frame_batches;
use crate::recipe::training::{Length, TrainingConfig};
use crate::recipe::{DecoderPartConfig, Recipe};

/// A part's length in optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartSteps {
    pub total: usize,
    pub per_epoch: usize,
}

/// Steps for `batches_per_epoch` micro-batches an epoch, `gradient_accumulation` per step.
pub fn of(train: &TrainingConfig, batches_per_epoch: usize) -> PartSteps {
    let per_epoch = batches_per_epoch
        .div_ceil(train.gradient_accumulation)
        .max(1);
    let total = match train.length {
        Length::Steps(n) => n,
        Length::Epochs(e) => e * per_epoch,
    };
    PartSteps { total, per_epoch }
}

/// Stage one: batches of `lm.batch_size` samples.
pub fn lm(recipe: &Recipe, train_samples: usize) -> PartSteps {
    of(
        &recipe.lm.train,
        train_samples.div_ceil(recipe.lm.batch_size),
    )
}

/// The flow: batches filled up to `max_frames_per_batch` mel frames (the utterances' mel
/// lengths). The count does not depend on the seed, which only orders the batches.
pub fn flow(part: &DecoderPartConfig, mel_frames: &[usize]) -> PartSteps {
    of(
        &part.train,
        frame_batches(mel_frames, part.max_frames_per_batch, 0).len(),
    )
}

/// The vocoder: one random crop per utterance, [`vocoder_crops`] per batch.
pub fn vocoder(part: &DecoderPartConfig, train_utterances: usize) -> PartSteps {
    of(
        &part.train,
        train_utterances.div_ceil(vocoder_crops(part).0),
    )
}

/// A vocoder batch: (crops, mel frames per crop).
pub fn vocoder_crops(part: &DecoderPartConfig) -> (usize, usize) {
    let segment = part.segment_frames.unwrap_or(32);
    ((part.max_frames_per_batch / segment).max(1), segment)
}
