#!/usr/bin/env python3
"""Generate the WADA-SNR lookup table (Kim & Stern, Interspeech 2008) used by `arp-train eval`.

Model: speech amplitude a ~ Gamma(shape 0.4, scale 1) with a random sign, plus Gaussian noise
n ~ N(0, sigma^2) where sigma^2 = E[s^2] / 10^(SNR/10) = 0.4 * 1.4 / 10^(SNR/10). The statistic
G = ln E|x| - E ln|x| of x = s + n is scale free, so one curve G(SNR) serves every clip. Because
the noise is symmetric, |s + n| has the law of |a + n| and the sign can be dropped.

Both expectations are computed on a deterministic product grid of quantiles (midpoint rule in
probability space), so rerunning gives the same table. The script checks the curve against the
anchors in ../shared/reference/audio-and-eval.md and the closed-form limits:
  pure noise  G = ln sqrt(2/pi) + (gamma_E + ln 2) / 2 = 0.4094
  pure speech G = ln 0.4 - digamma(0.4)                = 1.6451

Output: src/eval/quality/wada_table.txt, lines "snr_db G" for SNR = -20..100 dB in 1 dB steps.
Needs numpy and scipy.
"""
import os

import numpy as np
from scipy import special, stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "eval", "quality", "wada_table.txt")
SHAPE = 0.4
GRID = 5000  # quantiles per variable; 25 M grid points per SNR


def table():
    # The amplitude's density has a pole at 0 (ln a is heavy tailed there), so its quantiles are
    # taken at u = t^4 with weights 4 t^3 dt: dense near 0, smooth integrand in t.
    t = (np.arange(GRID) + 0.5) / GRID
    a = stats.gamma.ppf(t ** 4, SHAPE)[:, None]
    a_weight = (4 * t ** 3 / GRID)[:, None]
    z = stats.norm.ppf((np.arange(GRID) + 0.5) / GRID)[None, :]
    speech_power = SHAPE * (SHAPE + 1.0)
    rows = []
    for snr in range(-20, 101):
        sigma = np.sqrt(speech_power / 10.0 ** (snr / 10.0))
        x = np.abs(a + sigma * z)
        np.maximum(x, 1e-300, out=x)
        g = np.log((a_weight * x).sum() / GRID) - (a_weight * np.log(x)).sum() / GRID
        rows.append((snr, g))
    return rows


def main():
    rows = table()
    g = dict(rows)
    noise_limit = np.log(np.sqrt(2 / np.pi)) + (np.euler_gamma + np.log(2)) / 2
    speech_limit = np.log(SHAPE) - special.digamma(SHAPE)
    # The published table's anchors sit 0.001-0.004 above this curve (a Monte-Carlo run with 4 x 1e7
    # samples agrees with this grid to 0.001); 0.004 in G is under 0.2 dB of SNR.
    checks = [(g[0], 0.462, 0.005), (g[20], 0.957, 0.005), (g[30], 1.197, 0.005),
              (g[-20], noise_limit, 0.001),
              # At 100 dB about 1% of Gamma(0.4) amplitudes still lie below the noise, so G stays
              # just under the pure-speech limit.
              (g[100], speech_limit, 0.03)]
    for got, want, tol in checks:
        assert abs(got - want) < tol, (got, want)
    values = [v for _, v in rows]
    assert all(b > a for a, b in zip(values, values[1:])), "G(SNR) must increase"
    with open(OUT, "w") as f:
        f.write("# WADA-SNR table written by tools/wada_table.py: snr_db G (Gamma 0.4 speech + Gaussian noise)\n")
        for snr, v in rows:
            f.write(f"{snr} {v:.6f}\n")
    print(f"wrote {OUT}: G(-20)={g[-20]:.4f} (limit {noise_limit:.4f}) G(0)={g[0]:.4f} G(20)={g[20]:.4f} "
          f"G(30)={g[30]:.4f} G(100)={g[100]:.4f} (limit {speech_limit:.4f})")


if __name__ == "__main__":
    main()
