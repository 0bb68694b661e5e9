//! The audio front end: WAV decoding to mono, resampling, the two log-mel recipes, and the
//! acoustic-integrity filters.

pub mod filters;
pub mod mel;
pub mod pitch;
pub mod resample;
pub mod wav;
pub mod window;

/// Speech tokenizer input rate (Whisper).
pub const TOKENIZER_RATE: u32 = 16_000;
/// GLM-4-Voice-Decoder output and mel rate.
pub const DECODER_RATE: u32 = 22_050;

/// Mono audio in [-1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Audio {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.rate as f64
    }

    /// This audio at `rate` (a copy when it is already there).
    pub fn at_rate(&self, rate: u32) -> Audio {
        if rate == self.rate {
            return self.clone();
        }
        Audio {
            samples: resample::resample(&self.samples, self.rate, rate),
            rate,
        }
    }
}
