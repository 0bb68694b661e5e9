//! Harmonics-to-noise ratio by Praat's cross-correlation method (Boersma 1993), as
//! `To Harmonicity (cc)` with time step 0.01 s, minimum pitch 75 Hz, silence threshold 0.1 and
//! 1 period per window, followed by `Get mean`.
//!
//! Per frame, the normalized forward cross-correlation r(lag) of one window against the window
//! `lag` samples later is computed for lags up to one window. Its local maxima are pitch
//! candidates; each maximum is refined by maximizing a windowed-sinc interpolation of r around it
//! (Brent's method), and values above 1 are reflected (1/r). With Praat's harmonicity settings
//! every path cost is zero, so each frame keeps its strongest candidate, or is voiceless when the
//! frame is quiet: the voiceless strength is 2 - (local peak / global peak) / silence threshold.
//! Voiced frames give 10 log10(r / (1 - r)); the clip's HNR is their mean.

const TIME_STEP: f64 = 0.01;
const MINIMUM_PITCH: f64 = 75.0;
const SILENCE_THRESHOLD: f64 = 0.1;
const PERIODS_PER_WINDOW: f64 = 1.0;
/// Praat's candidate count before it is raised to ceiling / minimum pitch.
const MIN_CANDIDATES: usize = 15;
/// Sinc interpolation depth of the first estimate and of the refinement (FCC "accurate").
const FIRST_DEPTH: usize = 30;
const REFINE_DEPTH: usize = 700;

#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// 0 for the voiceless candidate.
    frequency: f64,
    strength: f64,
}

/// The analysis geometry for one sampling rate (Praat's integer sample counts).
struct Geometry {
    dx: f64,
    x1: f64,
    nsamp_window: usize,
    nsamp_period: usize,
    half_period: usize,
    half_window: usize,
    maximum_lag: usize,
    /// Lags kept for interpolation on each side of zero.
    ixmax: usize,
    frames: usize,
    t1: f64,
    ceiling: f64,
    max_candidates: usize,
}

impl Geometry {
    fn new(n: usize, rate: u32) -> Option<Geometry> {
        let dx = 1.0 / rate as f64;
        let duration = dx * n as f64;
        if MINIMUM_PITCH < PERIODS_PER_WINDOW / duration {
            return None;
        }
        let nsamp_period = (1.0 / dx / MINIMUM_PITCH).floor() as usize;
        let ceiling = 0.5 / dx;
        let dt_window = PERIODS_PER_WINDOW / MINIMUM_PITCH;
        let half_window = ((dt_window / dx).floor() as usize / 2).checked_sub(1)?;
        if half_window < 2 {
            return None;
        }
        let nsamp_window = half_window * 2;
        let maximum_lag =
            ((nsamp_window as f64 / PERIODS_PER_WINDOW).floor() as usize + 2).min(nsamp_window);
        // Frames fit symmetrically; each needs one longest period plus one window.
        let window_duration = 1.0 / MINIMUM_PITCH + dt_window;
        if window_duration > duration {
            return None;
        }
        let frames = ((duration - window_duration) / TIME_STEP).floor() as usize + 1;
        let x1 = 0.5 * dx;
        let t1 = x1 - 0.5 * dx + 0.5 * duration - 0.5 * frames as f64 * TIME_STEP + 0.5 * TIME_STEP;
        Some(Geometry {
            dx,
            x1,
            nsamp_window,
            nsamp_period,
            half_period: nsamp_period / 2 + 1,
            half_window,
            maximum_lag,
            ixmax: nsamp_window,
            frames,
            t1,
            ceiling,
            max_candidates: MIN_CANDIDATES.max((ceiling / MINIMUM_PITCH).floor() as usize),
        })
    }

    /// Praat's 1-based index of the sample at or left of time `t`.
    fn low_index(&self, t: f64) -> i64 {
        ((t - self.x1) / self.dx).floor() as i64 + 1
    }
}

/// Mean HNR in dB over voiced frames; `None` when the clip is too short or has no voiced frame.
pub fn hnr(samples: &[f32], rate: u32) -> Option<f64> {
    let frames = frame_values(samples, rate)?;
    let voiced: Vec<f64> = frames.into_iter().flatten().collect();
    (!voiced.is_empty()).then(|| voiced.iter().sum::<f64>() / voiced.len() as f64)
}

/// Per-frame HNR in dB, `None` for voiceless frames; `None` overall when the clip is too short.
pub fn frame_values(samples: &[f32], rate: u32) -> Option<Vec<Option<f64>>> {
    let z: Vec<f64> = samples.iter().map(|&x| x as f64).collect();
    let g = Geometry::new(z.len(), rate)?;
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let global_peak = z.iter().fold(0f64, |m, &x| m.max((x - mean).abs()));
    if global_peak == 0.0 {
        return Some(vec![None; g.frames]);
    }
    let mut r = vec![0f64; 2 * g.ixmax + 1];
    Some(
        (0..g.frames)
            .map(|i| {
                let t = g.t1 + i as f64 * TIME_STEP;
                let (candidates, intensity) = analyse_frame(&z, &g, t, global_peak, &mut r);
                let best = strongest(&candidates, intensity, g.ceiling);
                (best.frequency != 0.0).then(|| {
                    let r = best.strength;
                    if r <= 1e-15 {
                        -150.0
                    } else if r > 1.0 - 1e-15 {
                        150.0
                    } else {
                        10.0 * (r / (1.0 - r)).log10()
                    }
                })
            })
            .collect(),
    )
}

/// The path finder with zero octave, jump and voicing costs: the first candidate of highest
/// local strength.
fn strongest(candidates: &[Candidate], intensity: f64, ceiling: f64) -> Candidate {
    let unvoiced = (2.0 - intensity / SILENCE_THRESHOLD).max(0.0);
    let score = |c: &Candidate| {
        if c.frequency > 0.0 && c.frequency < ceiling {
            c.strength
        } else {
            unvoiced
        }
    };
    let mut best = candidates[0];
    let mut best_score = score(&best);
    for c in &candidates[1..] {
        let s = score(c);
        if s > best_score {
            best = *c;
            best_score = s;
        }
    }
    best
}

/// Candidates of the frame centred at `t` (the voiceless one first) and its relative intensity.
/// `r` is scratch space holding the correlation at lags -ixmax..=ixmax.
fn analyse_frame(
    z: &[f64],
    g: &Geometry,
    t: f64,
    global_peak: f64,
    r: &mut [f64],
) -> (Vec<Candidate>, f64) {
    let n = z.len() as i64;
    // 1-based sample access, clamped at the edges (Praat asserts these stay inside).
    let at = |i: i64| z[(i.clamp(1, n) - 1) as usize];
    let left = g.low_index(t);
    let right = left + 1;

    let period = g.nsamp_period as i64;
    let local_mean =
        ((right - period)..=(left + period)).map(at).sum::<f64>() / (2 * g.nsamp_period) as f64;

    // The local peak, half a longest period to both sides of the window's centre.
    let start = right - g.half_window as i64;
    let from = (g.half_window as i64 + 1 - g.half_period as i64).max(1);
    let to = (g.half_window as i64 + g.half_period as i64).min(g.nsamp_window as i64);
    let local_peak = (from..=to).fold(0f64, |m, j| m.max((at(start + j - 1) - local_mean).abs()));
    let intensity = (local_peak / global_peak).min(1.0);

    // Forward cross-correlation of the window starting one half "period + window" before t.
    let start_time = t - 0.5 * (1.0 / MINIMUM_PITCH + PERIODS_PER_WINDOW / MINIMUM_PITCH);
    let start_sample = g.low_index(start_time).max(1);
    let span = ((g.maximum_lag + g.nsamp_window) as i64).min(n + 1 - start_sample);
    let local_max_lag = (span - g.nsamp_window as i64).max(0) as usize;
    let offset = start_sample - 1;
    let amp = |i: usize| at(offset + i as i64) - local_mean;
    let w = g.nsamp_window;
    let sumx2: f64 = (1..=w).map(|i| amp(i) * amp(i)).sum();
    let mut sumy2 = sumx2;
    r.iter_mut().for_each(|v| *v = 0.0);
    let c = g.ixmax;
    r[c] = 1.0;
    for lag in 1..=local_max_lag.min(g.ixmax) {
        let (y0, yz) = (amp(lag), amp(lag + w));
        sumy2 += yz * yz - y0 * y0;
        let product: f64 = (1..=w).map(|j| amp(j) * amp(lag + j)).sum();
        let value = product / (sumx2 * sumy2).sqrt();
        r[c + lag] = value;
        r[c - lag] = value;
    }

    let mut candidates = vec![Candidate {
        frequency: 0.0,
        strength: 0.0,
    }];
    if local_peak == 0.0 {
        return (candidates, intensity);
    }
    let rate = 1.0 / g.dx;
    let lag_of = |i: usize| r[c + i];
    // `y` is r over lags -ixmax..=ixmax, 1-based as Praat's interpolation expects.
    let y = |k: usize| r[k - 1];
    let size = r.len();
    let to_y = |lag: f64| lag + c as f64 + 1.0;
    let mut peaks: Vec<usize> = vec![0];
    let mut i = 2;
    while i < g.maximum_lag && i < g.ixmax {
        let (prev, cur, next) = (lag_of(i - 1), lag_of(i), lag_of(i + 1));
        if cur > 0.0 && cur > prev && cur >= next {
            let dr = 0.5 * (next - prev);
            let d2r = 2.0 * cur - prev - next;
            let frequency = rate / (i as f64 + dr / d2r);
            let mut strength = sinc_interpolate(&y, size, to_y(rate / frequency), FIRST_DEPTH);
            if strength > 1.0 {
                strength = 1.0 / strength;
            }
            let place = if candidates.len() < g.max_candidates {
                candidates.push(Candidate {
                    frequency: 0.0,
                    strength: 0.0,
                });
                peaks.push(0);
                Some(candidates.len() - 1)
            } else {
                let (weakest_at, weakest) =
                    candidates[1..]
                        .iter()
                        .enumerate()
                        .fold((0, 2.0), |(at, min), (k, c)| {
                            if c.strength < min {
                                (k + 1, c.strength)
                            } else {
                                (at, min)
                            }
                        });
                (strength > weakest).then_some(weakest_at)
            };
            if let Some(place) = place {
                candidates[place] = Candidate {
                    frequency,
                    strength,
                };
                peaks[place] = i;
            }
        }
        i += 1;
    }
    for (candidate, &peak) in candidates.iter_mut().zip(&peaks).skip(1) {
        let (x, mut value) = improve_maximum(&y, size, peak + c + 1, REFINE_DEPTH);
        let lag = x - c as f64 - 1.0;
        if value > 1.0 {
            value = 1.0 / value;
        }
        candidate.frequency = rate / lag;
        candidate.strength = value;
    }
    (candidates, intensity)
}

/// Praat's windowed-sinc interpolation of the 1-based sequence `y(1..=size)` at `x`: a raised
/// cosine window of half-width `depth + 0.5`, depth clipped to the samples available.
fn sinc_interpolate(y: &impl Fn(usize) -> f64, size: usize, x: f64, depth: usize) -> f64 {
    let mid_left = x.floor() as i64;
    let mid_right = mid_left + 1;
    if x < 1.0 {
        return y(1);
    }
    if x > size as f64 {
        return y(size);
    }
    if x == mid_left as f64 {
        return y(mid_left as usize);
    }
    let depth = (depth as i64)
        .min(mid_right - 1)
        .min(size as i64 - mid_left);
    let (yl, yr) = (y(mid_left as usize), y(mid_right as usize));
    match depth {
        d if d <= 0 => return y(x.round() as usize),
        1 => return yl + (x - mid_left as f64) * (yr - yl),
        2 => {
            let dyl = 0.5 * (yr - y(mid_left as usize - 1));
            let dyr = 0.5 * (y(mid_right as usize + 1) - yl);
            let (fil, fir) = (x - mid_left as f64, mid_right as f64 - x);
            return yl * fir + yr * fil
                - fil * fir * (0.5 * (dyr - dyl) + (fil - 0.5) * (dyl + dyr - 2.0 * (yr - yl)));
        }
        _ => {}
    }
    let half_width = depth as f64 + 0.5;
    let pi = std::f64::consts::PI;
    let term = |i: i64, phase: f64| {
        y(i as usize) * 0.5 * phase.sin() / phase * (1.0 + (phase / half_width).cos())
    };
    let left: f64 = (mid_right - depth..=mid_left)
        .map(|i| term(i, pi * (x - i as f64)))
        .sum();
    let right: f64 = (mid_right..=mid_left + depth)
        .map(|i| term(i, pi * (i as f64 - x)))
        .sum();
    left + right
}

/// Maximizes the sinc interpolation on [ix - 1, ix + 1] (1-based); (position, value).
fn improve_maximum(y: &impl Fn(usize) -> f64, size: usize, ix: usize, depth: usize) -> (f64, f64) {
    if ix <= 1 {
        return (1.0, y(1));
    }
    if ix >= size {
        return (size as f64, y(size));
    }
    let (x, minus) = brent_minimize(
        |x| -sinc_interpolate(y, size, x, depth),
        ix as f64 - 1.0,
        ix as f64 + 1.0,
        1e-10,
    );
    (x, -minus)
}

/// Brent's minimization on [a, b] (golden sections with parabolic steps); (x, f(x)).
fn brent_minimize(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64, tol: f64) -> (f64, f64) {
    let golden = 0.381_966_011_250_105_1;
    let sqrt_eps = f64::EPSILON.sqrt();
    let mut v = a + golden * (b - a);
    let (mut w, mut x) = (v, v);
    let mut fv = f(v);
    let (mut fw, mut fx) = (fv, fv);
    let (mut d, mut e) = (0f64, 0f64);
    for _ in 0..60 {
        let middle = 0.5 * (a + b);
        let tol1 = sqrt_eps * x.abs() + tol / 3.0;
        let tol2 = 2.0 * tol1;
        if (x - middle).abs() <= tol2 - 0.5 * (b - a) {
            break;
        }
        let mut golden_step = true;
        if e.abs() > tol1 {
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            } else {
                q = -q;
            }
            if p.abs() < (0.5 * q * e).abs() && p > q * (a - x) && p < q * (b - x) {
                e = d;
                d = p / q;
                let u = x + d;
                if u - a < tol2 || b - u < tol2 {
                    d = if x < middle { tol1 } else { -tol1 };
                }
                golden_step = false;
            }
        }
        if golden_step {
            e = if x < middle { b - x } else { a - x };
            d = golden * e;
        }
        let u = if d.abs() >= tol1 {
            x + d
        } else if d > 0.0 {
            x + tol1
        } else {
            x - tol1
        };
        let fu = f(u);
        if fu <= fx {
            if u < x {
                b = x;
            } else {
                a = x;
            }
            (v, fv, w, fw, x, fx) = (w, fw, x, fx, u, fu);
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                (v, fv, w, fw) = (w, fw, u, fu);
            } else if fu <= fv || v == x || v == w {
                (v, fv) = (u, fu);
            }
        }
    }
    (x, fx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brent_finds_a_parabola_minimum() {
        let (x, fx) = brent_minimize(|x| (x - 0.3).powi(2) + 1.0, -1.0, 2.0, 1e-10);
        assert!((x - 0.3).abs() < 1e-6 && (fx - 1.0).abs() < 1e-12);
    }

    #[test]
    fn sinc_interpolation_passes_through_samples_and_follows_a_slow_sine() {
        let data: Vec<f64> = (0..200).map(|i| (i as f64 * 0.05).sin()).collect();
        let y = |k: usize| data[k - 1];
        assert_eq!(sinc_interpolate(&y, 200, 50.0, 700), data[49]);
        let x: f64 = 100.37;
        let expected = ((x - 1.0) * 0.05).sin();
        assert!((sinc_interpolate(&y, 200, x, 700) - expected).abs() < 1e-3);
    }

    #[test]
    fn a_noisy_tone_has_a_finite_hnr_that_drops_with_more_noise() {
        let mut rng = crate::rng::Rng::new(9);
        let tone = |noise: f64, rng: &mut crate::rng::Rng| -> Vec<f32> {
            (0..16_000)
                .map(|i| {
                    ((2.0 * std::f64::consts::PI * 150.0 * i as f64 / 16_000.0).sin()
                        + noise * rng.normal()) as f32
                })
                .collect()
        };
        let clean = hnr(&tone(0.01, &mut rng), 16_000).unwrap();
        let noisy = hnr(&tone(0.3, &mut rng), 16_000).unwrap();
        assert!(clean > noisy + 10.0, "{clean} vs {noisy}");
    }
}
