#!/usr/bin/env python3
"""Tiny GLM-4-Voice speech tokenizer (WhisperVQ encoder) and its expected outputs, in numpy.

An independent implementation written from ../shared/reference/glm-4-voice.md section 4 and
the public model's configuration semantics (causal convolutions, sinusoidal positions,
block-causal attention over `quantize_causal_block_size` frames with padded keys masked,
average pooling after `pooling_position` layers, nearest codebook entry by squared L2).

Writes:
  models/tiny/glm-4-voice-tokenizer/config.json            the tokenizer config, real key names
  models/tiny/glm-4-voice-tokenizer/preprocessor_config.json  WhisperFeatureExtractor settings
  models/tiny/glm-4-voice-tokenizer/model.safetensors      random weights, real tensor names
      (prefixed `model.encoder.`, with unused tensors a real file has: later layers,
      `layer_norm`, `embed_positions2`, a decoder embedding)
  tests/fixtures/whisper_vq/reference.safetensors
      features/<clip>  pre-quantization features [tokens, d_model] (float32)
      tokens/<clip>    token ids [tokens] (int32)
  for every 16 kHz clip of the bundled corpus and `long-35s` (those clips joined twice over, cut
  at 35 s: longer than one 30 s segment).

Usage: python tools/whisper_vq_reference.py   (numpy, scipy, safetensors)
"""
import json
import os
import sys

import numpy as np
from scipy.special import erf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mel_reference as mel  # noqa: E402  (the numpy Whisper log-mel, same folder)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "tiny", "glm-4-voice-tokenizer")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "whisper_vq", "reference.safetensors")

CONFIG = {
    "_comment": "A tiny GLM-4-Voice-Tokenizer (WhisperVQ) for tests, made by tools/whisper_vq_reference.py; same keys as the real config.json.",
    "architectures": ["WhisperVQForConditionalGeneration"],
    "model_type": "whisper",
    "activation_function": "gelu",
    "d_model": 32,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "encoder_layers": 4,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 64,
    "decoder_layers": 1,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "vocab_size": 64,
    "scale_embedding": False,
    "pooling_kernel_size": 4,
    "pooling_type": "avg",
    "pooling_position": 2,
    "quantize_vocab_size": 4096,
    "quantize_position": 2,
    "quantize_causal_block_size": 40,
    "quantize_causal_encoder": False,
    "quantize_encoder_only": False,
    "encoder_causal_attention": False,
    "encoder_causal_convolution": True,
    "torch_dtype": "float32",
}
PREPROCESSOR = {
    "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
    "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
    "padding_side": "right", "padding_value": 0.0, "processor_class": "WhisperProcessor",
    "return_attention_mask": False, "sampling_rate": 16000,
}
SAMPLES_PER_TOKEN = 1280  # 160 hop x conv stride 2 x pooling 4
SEGMENT_SAMPLES = 30 * 16000


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def causal_conv(x, w, b, stride):
    """x [C_in, T], w [C_out, C_in, K]: left-pad K-1 zeros, then a strided valid convolution."""
    k = w.shape[2]
    xp = np.concatenate([np.zeros((x.shape[0], k - 1)), x], axis=1)
    t_out = (xp.shape[1] - k) // stride + 1
    out = np.empty((w.shape[0], t_out))
    for t in range(t_out):
        out[:, t] = np.einsum("oik,ik->o", w, xp[:, t * stride:t * stride + k])
    return out + b[:, None]


def sinusoids(length, channels, max_timescale=10000.0):
    increment = np.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-increment * np.arange(channels // 2))
    t = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1)


def block_causal_allowed(valid, block):
    """allowed[i, j]: key j is visible from query i (same block, or earlier) and is not padding."""
    n = len(valid)
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    return ((j <= i) | (i // block == j // block)) & valid[None, :]


def attention(x, p, prefix, heads, allowed):
    d = x.shape[1]
    hd = d // heads
    q = (x @ p[prefix + "q_proj.weight"].T + p[prefix + "q_proj.bias"]) * hd ** -0.5
    k = x @ p[prefix + "k_proj.weight"].T
    v = x @ p[prefix + "v_proj.weight"].T + p[prefix + "v_proj.bias"]
    out = np.empty_like(x)
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        scores = q[:, s] @ k[:, s].T
        scores = np.where(allowed, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        w = np.exp(scores)
        w /= w.sum(axis=1, keepdims=True)
        out[:, s] = w @ v[:, s]
    return out @ p[prefix + "out_proj.weight"].T + p[prefix + "out_proj.bias"]


def encode_segment(audio, p, cfg):
    """One <= 30 s segment -> (pre-quantization features [tokens, d], token ids [tokens])."""
    n = len(audio)
    padded_len = -(-n // SAMPLES_PER_TOKEN) * SAMPLES_PER_TOKEN
    padded = np.concatenate([audio, np.zeros(padded_len - n)])
    features = mel.whisper_log_mel(padded)  # [128, padded_len / 160]
    valid_frames = np.arange(features.shape[1]) * 160 < n
    x = gelu(causal_conv(features, p["conv1.weight"], p["conv1.bias"], 1))
    x = gelu(causal_conv(x, p["conv2.weight"], p["conv2.bias"], 2)).T  # [T, d]
    x = x + p["embed_positions.weight"][:x.shape[0]]
    valid = valid_frames[::2]
    block = cfg["quantize_causal_block_size"]
    pool = cfg["pooling_kernel_size"]
    for layer in range(cfg["quantize_position"]):
        pre = f"layers.{layer}."
        allowed = block_causal_allowed(valid, block)
        h = layer_norm(x, p[pre + "self_attn_layer_norm.weight"], p[pre + "self_attn_layer_norm.bias"])
        x = x + attention(h, p, pre + "self_attn.", cfg["encoder_attention_heads"], allowed)
        h = layer_norm(x, p[pre + "final_layer_norm.weight"], p[pre + "final_layer_norm.bias"])
        x = x + gelu(h @ p[pre + "fc1.weight"].T + p[pre + "fc1.bias"]) @ p[pre + "fc2.weight"].T + p[pre + "fc2.bias"]
        if layer + 1 == cfg["pooling_position"]:
            rem = x.shape[0] % pool
            if rem:
                x = np.concatenate([x, np.zeros((pool - rem, x.shape[1]))])
            x = x.reshape(-1, pool, x.shape[1]).mean(axis=1)
            valid = valid[::pool]
            block = block // pool
    tokens_valid = np.arange(x.shape[0]) * SAMPLES_PER_TOKEN < n
    feats = x[tokens_valid]
    return feats, nearest(feats, p["codebook.weight"])


def nearest(x, codebook):
    d = (codebook ** 2).sum(1)[None, :] + (x ** 2).sum(1, keepdims=True) - 2.0 * x @ codebook.T
    return d.argmin(axis=1).astype(np.int32)


def encode(audio, p, cfg):
    feats, tokens = [], []
    for start in range(0, len(audio), SEGMENT_SAMPLES):
        f, t = encode_segment(audio[start:start + SEGMENT_SAMPLES], p, cfg)
        feats.append(f)
        tokens.append(t)
    return np.concatenate(feats), np.concatenate(tokens)


def random_weights(cfg, rng):
    d, ffn, mels = cfg["d_model"], cfg["encoder_ffn_dim"], cfg["num_mel_bins"]

    def lin(o, i, scale=1.0):
        return rng.normal(0.0, scale / np.sqrt(i), (o, i))

    p = {
        "conv1.weight": rng.normal(0.0, 1.0 / np.sqrt(mels * 3), (d, mels, 3)),
        "conv1.bias": rng.normal(0.0, 0.1, d),
        "conv2.weight": rng.normal(0.0, 1.0 / np.sqrt(d * 3), (d, d, 3)),
        "conv2.bias": rng.normal(0.0, 0.1, d),
        "embed_positions.weight": sinusoids(cfg["max_source_positions"], d),
    }
    for layer in range(cfg["encoder_layers"]):
        pre = f"layers.{layer}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            p[pre + f"self_attn.{name}.weight"] = lin(d, d)
            if name != "k_proj":
                p[pre + f"self_attn.{name}.bias"] = rng.normal(0.0, 0.05, d)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            p[pre + f"{norm}.weight"] = 1.0 + rng.normal(0.0, 0.1, d)
            p[pre + f"{norm}.bias"] = rng.normal(0.0, 0.1, d)
        p[pre + "fc1.weight"] = lin(ffn, d)
        p[pre + "fc1.bias"] = rng.normal(0.0, 0.05, ffn)
        p[pre + "fc2.weight"] = lin(d, ffn)
        p[pre + "fc2.bias"] = rng.normal(0.0, 0.05, d)
    p["layer_norm.weight"] = np.ones(d)
    p["layer_norm.bias"] = np.zeros(d)
    pooled = -(-cfg["max_source_positions"] // cfg["pooling_kernel_size"])
    p["embed_positions2.weight"] = p["embed_positions.weight"][:pooled].copy()
    return {k: v.astype(np.float32).astype(np.float64) for k, v in p.items()}


def clips():
    with open(os.path.join(mel.CORPUS, "manifest.jsonl")) as f:
        paths = sorted({json.loads(line)["audio"] for line in f})
    out = []
    for rel in paths:
        x, rate = mel.decode_wav(os.path.join(mel.CORPUS, rel))
        if rate == 16000:
            out.append((os.path.splitext(os.path.basename(rel))[0], x))
    long = np.concatenate([x for _, x in out] * 2)
    out.append(("long-35s", long[:35 * 16000]))
    return out


def main():
    from safetensors.numpy import save_file
    rng = np.random.default_rng(20261123)
    cfg = CONFIG
    p = random_weights(cfg, rng)
    inputs = clips()
    assert len(inputs[-1][1]) == 35 * 16000, "the long input must exceed one 30 s segment"

    # Codebook: pooled features of the corpus (so tokens spread over many codes) plus random
    # vectors of the same scale, shuffled.
    p["codebook.weight"] = np.zeros((cfg["quantize_vocab_size"], cfg["d_model"]))
    seen = np.concatenate([encode(x, p, cfg)[0] for _, x in inputs[:-1]])
    n_seen = min(len(seen), cfg["quantize_vocab_size"] // 4)
    picks = seen[rng.choice(len(seen), n_seen, replace=False)] + rng.normal(0.0, 0.05, (n_seen, cfg["d_model"]))
    rest = rng.normal(seen.mean(0), seen.std(0), (cfg["quantize_vocab_size"] - n_seen, cfg["d_model"]))
    book = np.concatenate([picks, rest])[rng.permutation(cfg["quantize_vocab_size"])]
    p["codebook.weight"] = book.astype(np.float32).astype(np.float64)

    os.makedirs(MODEL_DIR, exist_ok=True)
    tensors = {f"model.encoder.{k}": v.astype(np.float32) for k, v in p.items()}
    tensors["model.decoder.embed_tokens.weight"] = rng.normal(0.0, 0.02, (cfg["vocab_size"], cfg["d_model"])).astype(np.float32)
    save_file(tensors, os.path.join(MODEL_DIR, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(MODEL_DIR, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(MODEL_DIR, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
        f.write("\n")

    fixture = {}
    distinct = set()
    for name, x in inputs:
        feats, tokens = encode(x, p, cfg)
        fixture[f"features/{name}"] = feats.astype(np.float32)
        fixture[f"tokens/{name}"] = tokens
        distinct.update(tokens.tolist())
        assert len(tokens) == -(-len(x) // SAMPLES_PER_TOKEN) or name == "long-35s"
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    save_file(fixture, FIXTURE, metadata={"script": "tools/whisper_vq_reference.py"})
    total = sum(len(v) for k, v in fixture.items() if k.startswith("tokens/"))
    print(f"{len(inputs)} inputs, {total} tokens, {len(distinct)} distinct codes", file=sys.stderr)


if __name__ == "__main__":
    main()
