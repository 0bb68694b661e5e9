//! The audio front end: decoding audio files to mono (`read`), resampling, the two log-mel
//! recipes, and the acoustic-integrity filters.

pub mod compressed;
pub mod error;
pub mod fbank;
pub mod ffmpeg;
pub mod filters;
pub mod mel;
pub mod mp4_edit;
pub mod pitch;
pub mod read;
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
    /// Mono audio from `channels` interleaved channels, averaged.
    pub fn from_interleaved(interleaved: Vec<f32>, channels: usize, rate: u32) -> Audio {
        let samples = if channels <= 1 {
            interleaved
        } else {
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32)
                .collect()
        };
        Audio { samples, rate }
    }

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
