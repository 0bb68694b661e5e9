//! Resemblyzer's waveform preprocessing (resemblyzer/audio.py, hparams.py): resample to 16 kHz,
//! raise the volume to -30 dBFS (never lower it), and cut silences longer than the VAD allows.

use webrtc_vad::{SampleRate, Vad, VadMode};

use crate::audio::Audio;

pub const RATE: u32 = 16_000;
const TARGET_DBFS: f64 = -30.0;
const INT16_MAX: f32 = 32767.0;
/// VAD windows of 30 ms.
const VAD_WINDOW: usize = (30 * RATE as usize) / 1000;
/// Moving-average width over VAD decisions, and how many silent windows a kept stretch may hold.
const AVERAGE_WIDTH: usize = 8;
const MAX_SILENCE: usize = 6;

/// The preprocessed 16 kHz waveform and how much of the (resampled) clip the VAD kept.
pub struct Preprocessed {
    pub samples: Vec<f32>,
    pub voiced_windows: usize,
    pub windows: usize,
}

pub fn preprocess(audio: &Audio) -> Preprocessed {
    let mut samples = audio.at_rate(RATE).samples;
    normalize_volume(&mut samples);
    trim_long_silences(&samples)
}

/// Scales the clip up to -30 dBFS RMS; louder clips are left alone.
pub fn normalize_volume(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    let mean_square = samples
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        / samples.len() as f64;
    if mean_square == 0.0 {
        return;
    }
    let change_db = TARGET_DBFS - 10.0 * mean_square.log10();
    if change_db < 0.0 {
        return;
    }
    let gain = 10f64.powf(change_db / 20.0) as f32;
    samples.iter_mut().for_each(|x| *x *= gain);
}

/// WebRTC VAD (mode 3, "very aggressive") per 30 ms window of the 16-bit signal, smoothed by a
/// moving average of 8 windows (rounded half to even, so a window is voiced when at least 5 of
/// the 8 are), dilated by 3 windows each side; the voiced windows are kept. The tail that does
/// not fill a window is dropped.
pub fn trim_long_silences(samples: &[f32]) -> Preprocessed {
    let windows = samples.len() / VAD_WINDOW;
    let pcm: Vec<i16> = samples[..windows * VAD_WINDOW]
        .iter()
        // numpy's round (half to even); the clamp replaces numpy's int16 wrap-around.
        .map(|&x| (x * INT16_MAX).round_ties_even().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let mut vad = Vad::new_with_rate_and_mode(SampleRate::Rate16kHz, VadMode::VeryAggressive);
    let flags: Vec<bool> = pcm
        .chunks_exact(VAD_WINDOW)
        .map(|w| vad.is_voice_segment(w).unwrap_or(false))
        .collect();

    let before = (AVERAGE_WIDTH - 1) / 2;
    let after = AVERAGE_WIDTH / 2;
    let smoothed: Vec<bool> = (0..windows)
        .map(|j| {
            let from = j.saturating_sub(before);
            let to = (j + after).min(windows.saturating_sub(1));
            let voiced = flags[from..=to].iter().filter(|&&f| f).count();
            2 * voiced > AVERAGE_WIDTH
        })
        .collect();
    let reach = MAX_SILENCE.div_ceil(2);
    let keep: Vec<bool> = (0..windows)
        .map(|j| {
            let from = j.saturating_sub(reach);
            let to = (j + reach).min(windows.saturating_sub(1));
            smoothed[from..=to].iter().any(|&v| v)
        })
        .collect();
    let kept: Vec<f32> = samples[..windows * VAD_WINDOW]
        .chunks_exact(VAD_WINDOW)
        .zip(&keep)
        .filter(|(_, &k)| k)
        .flat_map(|(w, _)| w.iter().copied())
        .collect();
    Preprocessed {
        voiced_windows: keep.iter().filter(|&&k| k).count(),
        windows,
        samples: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_clips_are_raised_to_minus_30_dbfs_and_loud_ones_kept() {
        let mut quiet = vec![0.001f32; 100];
        normalize_volume(&mut quiet);
        let rms = (quiet.iter().map(|x| x * x).sum::<f32>() / 100.0).sqrt();
        assert!((20.0 * rms.log10() + 30.0).abs() < 1e-3);
        let mut loud = vec![0.5f32; 100];
        normalize_volume(&mut loud);
        assert_eq!(loud[0], 0.5);
    }

    #[test]
    fn silence_is_trimmed_away() {
        let out = trim_long_silences(&vec![0.0; 16_000]);
        assert_eq!(out.windows, 33);
        assert!(out.samples.is_empty());
    }
}
