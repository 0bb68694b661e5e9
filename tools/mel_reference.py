#!/usr/bin/env python3
"""Reference features for the audio front end, written from the facts in
../shared/reference/audio-and-eval.md with numpy only (librosa is used to cross-check the
mel filterbank when it is installed, never to compute the fixtures).

Writes tests/fixtures/mel/reference.safetensors (float32 arrays; every name is
"<kind>/<clip>"):
  decoded/<clip>   mono waveform as decoded from the WAV (only for the 44.1 kHz stereo file)
  wave16/<clip>    16 kHz input of the Whisper mel, for clips not recorded at 16 kHz
  wave22/<clip>    22.05 kHz input of the decoder mel, for clips not recorded at 22.05 kHz
  whisper/<clip>   Whisper 128-bin log-mel [128, frames]
  decoder/<clip>   Matcha/CosyVoice 80-bin log-mel [80, frames]
Every clip recorded at a mel's own rate is fed to that mel straight from the file (the whole
corpus is covered this way: the flite voices are 16 kHz, the espeak voice 22.05 kHz). Clips at
another rate go through scipy's polyphase resampler and the resampled waveform is stored, so the
Rust test feeds the mel the same samples; to keep the fixture small this is done for one clip per
voice and for the stereo file only. (Resamplers differ near Nyquist by far more than 1e-4 in
log-mel; the Rust resampler has its own test.)

Also: `--bench` times both mel recipes over the corpus on one core and prints seconds of audio
per second, for the Rust benchmark to compare against in the same run.

Usage: python tools/mel_reference.py [--bench]   (pip install numpy scipy safetensors)
"""
import json
import os
import sys
import time
import wave
from math import gcd

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "data", "tiny-lab")
STEREO = os.path.join(ROOT, "tests", "fixtures", "audio", "stereo-44k1-24bit.wav")
OUT = os.path.join(ROOT, "tests", "fixtures", "mel", "reference.safetensors")


# ---------- WAV decoding (integer PCM, any width, any channel count -> mono mean) ----------
def decode_wav(path):
    with wave.open(path) as w:
        rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = np.frombuffer(w.readframes(n), dtype=np.uint8)
    if width == 1:  # 8-bit WAV is unsigned
        x = (raw.astype(np.float64) - 128.0) / 128.0
    else:
        b = raw.reshape(-1, width)
        v = np.zeros(len(b), dtype=np.int64)
        for k in range(width):
            v |= b[:, k].astype(np.int64) << (8 * k)
        sign = 1 << (8 * width - 1)
        v = (v ^ sign) - sign
        x = v.astype(np.float64) / float(sign)
    return x.reshape(-1, channels).mean(axis=1), rate


# ---------- Slaney mel filterbank ----------
def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3.0)
    log = 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0))
    return np.where(m >= 15.0, log, lin)


def slaney_filterbank(sr, n_fft, n_mels, fmin, fmax):
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    f = mel_to_hz(mel_pts)
    w = np.zeros((n_mels, len(fft_freqs)))
    for m in range(n_mels):
        lower = (fft_freqs - f[m]) / (f[m + 1] - f[m])
        upper = (f[m + 2] - fft_freqs) / (f[m + 2] - f[m + 1])
        w[m] = np.maximum(0.0, np.minimum(lower, upper)) * 2.0 / (f[m + 2] - f[m])
    return w


def periodic_hann(n):
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def frames(x, n_fft, hop):
    count = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return x[idx]


WHISPER_FB = slaney_filterbank(16000, 400, 128, 0.0, 8000.0)
DECODER_FB = slaney_filterbank(22050, 1024, 80, 0.0, 8000.0)


def whisper_log_mel(x):
    padded = np.pad(x, 200, mode="reflect")
    spec = np.fft.rfft(frames(padded, 400, 160) * periodic_hann(400), axis=1)
    power = (np.abs(spec) ** 2)[:-1].T  # drop the last frame, [201, T]
    mel = WHISPER_FB @ power
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def decoder_log_mel(x):
    padded = np.pad(x, 384, mode="reflect")
    spec = np.fft.rfft(frames(padded, 1024, 256) * periodic_hann(1024), axis=1)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9).T
    return np.log(np.maximum(DECODER_FB @ mag, 1e-5))


def resample(x, src, dst):
    from scipy.signal import resample_poly
    g = gcd(src, dst)
    return resample_poly(x, dst // g, src // g)


def clips():
    """(name, path) for every single-clip file of the corpus, then the long scene and the stereo file."""
    with open(os.path.join(CORPUS, "manifest.jsonl")) as f:
        paths = sorted({json.loads(line)["audio"] for line in f})
    out = [(os.path.splitext(os.path.basename(p))[0], os.path.join(CORPUS, p)) for p in paths]
    out.append(("stereo-44k1-24bit", STEREO))
    return out


def check_filterbank():
    try:
        import librosa
    except ImportError:
        print("librosa not installed: filterbank cross-check skipped", file=sys.stderr)
        return
    for fb, (sr, n_fft, n_mels) in ((WHISPER_FB, (16000, 400, 128)), (DECODER_FB, (22050, 1024, 80))):
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=8000.0, norm="slaney",
                                  htk=False, dtype=np.float64)
        err = np.abs(fb - ref).max()
        print(f"filterbank sr={sr} n_mels={n_mels}: max |ours - librosa| = {err:.2e}", file=sys.stderr)
        assert err < 1e-9


def write():
    from safetensors.numpy import save_file
    check_filterbank()
    tensors = {}
    resampled_voices = set()
    for name, path in clips():
        x, rate = decode_wav(path)
        if name == "stereo-44k1-24bit":
            tensors[f"decoded/{name}"] = x.astype(np.float32)
        voice = name.split("-")[-2] if name.startswith("tinylab-solo") else name
        also_resampled = voice not in resampled_voices and (name.startswith("tinylab-solo") or name == "stereo-44k1-24bit")
        if also_resampled:
            resampled_voices.add(voice)
        for target, key, wave_key, fn in ((16000, "whisper", "wave16", whisper_log_mel),
                                          (22050, "decoder", "wave22", decoder_log_mel)):
            if rate == target:
                tensors[f"{key}/{name}"] = fn(x).astype(np.float32)
            elif also_resampled:
                y = resample(x, rate, target).astype(np.float32)
                tensors[f"{wave_key}/{name}"] = y
                tensors[f"{key}/{name}"] = fn(y.astype(np.float64)).astype(np.float32)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"script": "tools/mel_reference.py"})
    print(f"wrote {len(tensors)} arrays to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


def bench(repeats=3):
    """Seconds of audio per second of one core, for each mel recipe, inputs already at the mel's rate."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    inputs16, inputs22 = [], []
    for _, path in clips():
        x, rate = decode_wav(path)
        inputs16.append(x if rate == 16000 else resample(x, rate, 16000))
        inputs22.append(x if rate == 22050 else resample(x, rate, 22050))
    seconds = sum(len(x) for x in inputs16) / 16000.0
    result = {"audio_seconds": seconds}
    for key, fn, xs in (("whisper", whisper_log_mel, inputs16), ("decoder", decoder_log_mel, inputs22)):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for x in xs:
                fn(x)
            best = min(best, time.perf_counter() - t)
        result[key] = seconds / best
    print(json.dumps(result))


if __name__ == "__main__":
    if "--bench" in sys.argv:
        bench()
    else:
        write()
