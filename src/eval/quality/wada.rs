//! WADA-SNR (Kim & Stern, "Robust signal-to-noise ratio estimation based on waveform amplitude
//! distribution analysis", Interspeech 2008): the gap between the log of the mean amplitude and
//! the mean log amplitude of the peak-normalized waveform, looked up in the curve G(SNR) that
//! tools/fixtures/wada_table.py computes for Gamma(0.4) speech plus Gaussian noise.

use std::sync::OnceLock;

/// Amplitudes below this count as this (log of zero).
const FLOOR: f64 = 1e-10;

fn table() -> &'static [(f64, f64)] {
    static TABLE: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("wada_table.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.split_whitespace().map(|v| v.parse::<f64>());
                match (parts.next(), parts.next()) {
                    (Some(Ok(snr)), Some(Ok(g))) => (snr, g),
                    _ => panic!("wada_table.txt: bad line {l:?}"),
                }
            })
            .collect()
    })
}

/// The estimated SNR in dB, within the table's range (-20..100 dB); `None` for digital silence.
pub fn wada_snr(samples: &[f32]) -> Option<f64> {
    let peak = samples.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    if peak == 0.0 || samples.is_empty() {
        return None;
    }
    let n = samples.len() as f64;
    let (mut sum, mut sum_log) = (0.0, 0.0);
    for &x in samples {
        let a = ((x as f64).abs() / peak).max(FLOOR);
        sum += a;
        sum_log += a.ln();
    }
    let stat = (sum / n).ln() - sum_log / n;
    let table = table();
    // The last entry whose G lies below the statistic; the curve increases with SNR.
    let Some(i) = table.iter().rposition(|&(_, g)| g < stat) else {
        return Some(table[0].0);
    };
    if i == table.len() - 1 {
        return Some(table[i].0);
    }
    let ((s0, g0), (s1, g1)) = (table[i], table[i + 1]);
    Some(s0 + (stat - g0) / (g1 - g0) * (s1 - s0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_spans_the_published_range_and_increases() {
        let t = table();
        assert_eq!((t[0].0, t[t.len() - 1].0), (-20.0, 100.0));
        assert!(t.windows(2).all(|w| w[1].1 > w[0].1));
    }

    #[test]
    fn white_noise_reads_as_the_bottom_of_the_table() {
        let mut rng = crate::rng::Rng::new(5);
        let noise: Vec<f32> = (0..48_000).map(|_| rng.normal() as f32).collect();
        let snr = wada_snr(&noise).unwrap();
        assert!(snr < -10.0, "{snr}");
        assert_eq!(wada_snr(&[0.0; 10]), None);
    }
}
