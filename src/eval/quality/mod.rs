//! Acoustic Quality (AQ), signal side: WADA-SNR, HNR (Praat cc) and spectral flatness (librosa),
//! each measured on the clip at its own sampling rate.

pub mod flatness;
pub mod hnr;
pub mod wada;

use serde::{Deserialize, Serialize};

use crate::audio::Audio;

/// One clip's AQ metrics; a metric is `None` where it is undefined (silence, a clip shorter than
/// two pitch periods, no voiced frame).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub wada_snr_db: Option<f64>,
    pub hnr_db: Option<f64>,
    pub spectral_flatness: Option<f64>,
}

pub fn measure(audio: &Audio) -> Quality {
    Quality {
        wada_snr_db: wada::wada_snr(&audio.samples),
        hnr_db: hnr::hnr(&audio.samples, audio.rate),
        spectral_flatness: flatness::spectral_flatness(&audio.samples),
    }
}
