#!/usr/bin/env python3
"""Reference values for ARP-Eval's acoustic metrics, from the upstream Python implementations.

For every bundled clip (data/tiny-lab/wavs/*.wav) and for noisy copies of six of them (two per
speaker, white Gaussian noise at 20/10/0 dB SNR, seeded, written as 16-bit WAVs to
tests/fixtures/eval/noisy/) this computes:

  - the Resemblyzer utterance embedding (resemblyzer 0.1.4's own preprocess_wav + VoiceEncoder,
    PyTorch, on CPU), plus the preprocessed length and partial count for debugging;
  - HNR with Praat through parselmouth: To Harmonicity (cc) 0.01 75 0.1 1.0, then Get mean;
  - spectral flatness with librosa.feature.spectral_flatness (n_fft 2048, hop 512), mean over frames;
  - WADA-SNR with an independent numpy port of Kim & Stern's procedure over the table that
    tools/wada_table.py generated (src/eval/quality/wada_table.txt);

and the same-speaker / cross-speaker mean cosine matrix of the clean clips. Output:
tests/fixtures/eval/reference.json (committed; the Rust tests read it, so they need no Python).

Environment (a venv outside the repo): numpy scipy torch librosa soundfile praat-parselmouth
webrtcvad-wheels, and resemblyzer installed without its dependencies:
    pip install numpy scipy torch librosa soundfile praat-parselmouth webrtcvad-wheels
    pip install --no-deps resemblyzer==0.1.4
"""
import glob
import json
import os
import sys

import numpy as np
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = os.path.join(ROOT, "data", "tiny-lab")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "eval")
NOISY_DIR = os.path.join(OUT_DIR, "noisy")
TABLE = os.path.join(ROOT, "src", "eval", "quality", "wada_table.txt")
NOISE_SNRS = (20, 10, 0)
NOISY_PER_SPEAKER = 2


def rel(path):
    return os.path.relpath(path, ROOT)


def speakers_by_clip():
    speakers = {}
    with open(os.path.join(CLIPS, "manifest.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            speakers[os.path.normpath(os.path.join(CLIPS, row["audio"]))] = row["speaker"]
    return speakers


def wada_snr(samples):
    table = np.loadtxt(TABLE, comments="#")
    db, g = table[:, 0], table[:, 1]
    x = samples / np.max(np.abs(samples))
    a = np.maximum(np.abs(x), 1e-10)
    stat = np.log(a.mean()) - np.log(a).mean()
    below = np.nonzero(g < stat)[0]
    if below.size == 0:
        return float(db[0])
    i = below.max()
    if i == len(db) - 1:
        return float(db[-1])
    return float(db[i] + (stat - g[i]) / (g[i + 1] - g[i]) * (db[i + 1] - db[i]))


def hnr(path):
    import parselmouth
    sound = parselmouth.Sound(path)
    harmonicity = parselmouth.praat.call(sound, "To Harmonicity (cc)", 0.01, 75, 0.1, 1.0)
    return float(parselmouth.praat.call(harmonicity, "Get mean", 0, 0))


def flatness(samples):
    import librosa
    return float(librosa.feature.spectral_flatness(y=samples, n_fft=2048, hop_length=512).mean())


def signal_metrics(path):
    samples, _ = soundfile.read(path, dtype="float32")
    return {"wada_snr_db": wada_snr(samples.astype(np.float64)), "hnr_db": hnr(path),
            "spectral_flatness": flatness(samples)}


def write_noisy(clean_paths):
    os.makedirs(NOISY_DIR, exist_ok=True)
    rng = np.random.default_rng(20260808)
    rows = []
    for path in clean_paths:
        samples, rate = soundfile.read(path, dtype="float64")
        power = np.mean(samples ** 2)
        for snr in NOISE_SNRS:
            noise = rng.standard_normal(len(samples)) * np.sqrt(power / 10 ** (snr / 10))
            noisy = np.clip(samples + noise, -1.0, 32767 / 32768)
            name = f"{os.path.splitext(os.path.basename(path))[0]}-snr{snr}.wav"
            out = os.path.join(NOISY_DIR, name)
            soundfile.write(out, noisy, rate, subtype="PCM_16")
            rows.append({"path": rel(out), "source": rel(path), "added_noise_snr_db": snr})
    return rows


def main():
    from resemblyzer import VoiceEncoder, preprocess_wav
    from resemblyzer.hparams import sampling_rate

    encoder = VoiceEncoder(device="cpu", verbose=False)
    speakers = speakers_by_clip()
    clean = sorted(glob.glob(os.path.join(CLIPS, "wavs", "*.wav")))
    clips = []
    for path in clean:
        wav = preprocess_wav(path)
        embedding, partials, _ = encoder.embed_utterance(wav, return_partials=True)
        row = {"path": rel(path), "speaker": speakers[os.path.normpath(path)],
               "preprocessed_samples": int(len(wav)), "partials": int(len(partials)),
               "embedding": [float(v) for v in embedding]}
        row.update(signal_metrics(path))
        clips.append(row)
        print(f"{row['path']}: {row['speaker']} {len(wav) / sampling_rate:.2f} s, {len(partials)} partials, "
              f"WADA {row['wada_snr_db']:.2f} dB, HNR {row['hnr_db']:.2f} dB, flatness {row['spectral_flatness']:.4f}",
              file=sys.stderr)

    picked = []
    for speaker in sorted(set(c["speaker"] for c in clips)):
        picked += [os.path.join(ROOT, c["path"]) for c in clips if c["speaker"] == speaker][:NOISY_PER_SPEAKER]
    noisy = write_noisy(picked)
    for row in noisy:
        row.update(signal_metrics(os.path.join(ROOT, row["path"])))
        print(f"{row['path']}: WADA {row['wada_snr_db']:.2f} dB, HNR {row['hnr_db']:.2f} dB, "
              f"flatness {row['spectral_flatness']:.4f}", file=sys.stderr)

    names = sorted(set(c["speaker"] for c in clips))
    emb = {n: np.array([c["embedding"] for c in clips if c["speaker"] == n]) for n in names}
    matrix = []
    for a in names:
        line = []
        for b in names:
            sims = emb[a] @ emb[b].T
            if a == b:
                sims = sims[~np.eye(len(sims), dtype=bool)]
            line.append(float(np.mean(sims)))
        matrix.append(line)
    for name, line in zip(names, matrix):
        print(f"{name:>6}: " + "  ".join(f"{v:.3f}" for v in line), file=sys.stderr)

    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "reference.json"), "w") as f:
        json.dump({"generated_by": "tools/eval_reference.py",
                   "hnr": "parselmouth To Harmonicity (cc) 0.01 75 0.1 1.0; Get mean",
                   "spectral_flatness": "librosa spectral_flatness n_fft 2048 hop 512, mean over frames",
                   "clips": clips, "noisy": noisy,
                   "speaker_matrix": {"speakers": names, "mean_cosine": matrix}}, f, indent=1)
    print(f"wrote {rel(os.path.join(OUT_DIR, 'reference.json'))}", file=sys.stderr)


if __name__ == "__main__":
    main()
