#!/usr/bin/env python3
"""The PyTorch baseline of `arp-train bench`: the same training steps, on the same shapes,
batch and dtype, timed the same way, in one process on the same device.

    arp-train bench --recipe recipes/sheldon.yaml --device cuda --json bench/arp.json \
        --lm-config path/to/glm-4-voice-9b/config.json
    python tools/bench/bench_reference.py bench/arp.json --json bench/torch.json

It reads the shapes from arp-train's JSON (`stages[].shape`), builds each model in PyTorch with
random weights, runs the same warm-up and timed steps, and prints both tables and the ratio
arp-train / PyTorch of throughput per stage.

- Stage one: GLM-4 written here from ../shared/reference/glm-4-voice.md section 1 (fused
  query_key_value with bias, grouped KV heads, GLM RoPE on the first half of each head in
  interleaved pairs, SwiGLU, RMSNorm, untied output layer), attention through
  F.scaled_dot_product_attention (flash attention on GPUs: what a PyTorch user gets), LoRA on
  the recipe's targets (plain: y = x W^T + b + (alpha / r) B(A(dropout(x))); `--lora peft`
  uses peft's LoRA layers instead), activation checkpointing per layer
  (torch.utils.checkpoint) when the recipe turns it on, AdamW on the trainable parameters,
  global-norm clipping. Weights in the recipe's dtype (bf16 on GPUs), loss in fp32.
- Stage two: the flow and HiFT of tools/fixtures/decoder_reference.py (the decoder parity reference)
  at the config's sizes, in fp32; the vocoder's GAN step with HiFi-GAN's multi-period and
  UnivNet's multi-resolution discriminators and the losses of src/train/vocoder.rs
  (LSGAN, feature matching, TPR, 45 x mel L1, F0 L1).

Memory: on CUDA the most device memory nvidia-smi reports for this process (sampled every
100 ms, as arp-train measures itself), plus torch.cuda.max_memory_allocated; on the CPU the
peak resident set (VmHWM), reset before each stage.

Needs torch (and numpy); peft only for --lora peft.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# The fixture scripts (decoder_reference.py holds the PyTorch decoder modules).
FIXTURE_TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------- timing and memory
class Memory:
    """Peak memory of one stage, measured like arp-train does."""

    def __init__(self, device):
        self.device = device
        self.peak = 0
        self.stop = threading.Event()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def _poll(self):
        pid = str(os.getpid())
        while not self.stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5).stdout
                mib = sum(int(m) for p, m in (l.split(",") for l in out.strip().splitlines() if "," in l)
                          if p.strip() == pid)
                self.peak = max(self.peak, mib * 1024 * 1024)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            time.sleep(0.1)

    def finish(self):
        if self.device.type == "cuda":
            self.stop.set()
            self.thread.join()
            allocated = torch.cuda.max_memory_allocated(self.device)
            if self.peak:
                return self.peak, "GPU memory of this process (nvidia-smi)", allocated
            return None, "GPU memory unknown (nvidia-smi did not report this process)", allocated
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "host peak resident set (VmHWM)", None
        return None, "unknown", None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, warmup, steps, step):
    """Runs warmup + steps calls of step(i) -> loss; returns (timed seconds, all losses)."""
    times, losses = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = step(i)
        sync(device)
        seconds = time.perf_counter() - start
        if not math.isfinite(loss):
            raise SystemExit(f"step {i}: the loss is not finite ({loss})")
        losses.append(loss)
        if i >= warmup:
            times.append(seconds)
    return times, losses


def init_uniform_(t, fan_in):
    bound = math.sqrt(3.0 / fan_in)
    with torch.no_grad():
        t.uniform_(-bound, bound)


# ---------------------------------------------------------------- stage one: GLM-4 + LoRA
class LoraLinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (PEFT's initialization: A
    Kaiming-uniform, B zero)."""

    def __init__(self, base, rank, alpha, dropout):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device=base.weight.device, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device=base.weight.device, dtype=base.weight.dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scale


class RmsNorm(nn.Module):
    def __init__(self, dim, eps, **kw):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, **kw))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class GlmAttention(nn.Module):
    def __init__(self, c, **kw):
        super().__init__()
        self.heads, self.groups, self.d = c["num_attention_heads"], c["multi_query_group_num"] if c.get("multi_query_attention") else c["num_attention_heads"], c["kv_channels"]
        h = c["hidden_size"]
        self.query_key_value = nn.Linear(h, (self.heads + 2 * self.groups) * self.d, bias=c.get("add_qkv_bias", True), **kw)
        self.dense = nn.Linear(self.heads * self.d, h, bias=c.get("add_bias_linear", False), **kw)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h, g, d = self.heads, self.groups, self.d
        q, k, v = self.query_key_value(x).split([h * d, g * d, g * d], -1)
        q = rope(q.view(b, t, h, d).transpose(1, 2), cos, sin)
        k = rope(k.view(b, t, g, d).transpose(1, 2), cos, sin)
        v = v.view(b, t, g, d).transpose(1, 2)
        k = k.repeat_interleave(h // g, 1)
        v = v.repeat_interleave(h // g, 1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.dense(out.transpose(1, 2).reshape(b, t, h * d))


def rope_tables(t, d, base, device, dtype):
    rot = d // 2
    theta = base ** (-torch.arange(0, rot, 2, dtype=torch.float64, device=device) / rot)
    angles = torch.arange(t, dtype=torch.float64, device=device)[:, None] * theta[None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope(x, cos, sin):
    """Rotates the first half of each head in interleaved pairs (x[2i], x[2i+1])."""
    b, n, t, d = x.shape
    rot = d // 2
    pairs = x[..., :rot].reshape(b, n, t, rot // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    out = torch.stack([even * cos - odd * sin, odd * cos + even * sin], -1).reshape(b, n, t, rot)
    return torch.cat([out, x[..., rot:]], -1)


class GlmBlock(nn.Module):
    def __init__(self, c, **kw):
        super().__init__()
        h, eps = c["hidden_size"], c["layernorm_epsilon"]
        self.input_layernorm = RmsNorm(h, eps, **kw)
        self.self_attention = GlmAttention(c, **kw)
        self.post_attention_layernorm = RmsNorm(h, eps, **kw)
        self.mlp = nn.Module()
        self.mlp.dense_h_to_4h = nn.Linear(h, 2 * c["ffn_hidden_size"], bias=c.get("add_bias_linear", False), **kw)
        self.mlp.dense_4h_to_h = nn.Linear(c["ffn_hidden_size"], h, bias=c.get("add_bias_linear", False), **kw)

    def forward(self, x, cos, sin):
        x = x + self.self_attention(self.input_layernorm(x), cos, sin)
        gate, up = self.mlp.dense_h_to_4h(self.post_attention_layernorm(x)).chunk(2, -1)
        return x + self.mlp.dense_4h_to_h(F.silu(gate) * up)


class Glm(nn.Module):
    def __init__(self, c, checkpointing, **kw):
        super().__init__()
        self.c = c
        self.checkpointing = checkpointing
        self.embedding = nn.Embedding(c["padded_vocab_size"], c["hidden_size"], **kw)
        self.layers = nn.ModuleList([GlmBlock(c, **kw) for _ in range(c["num_layers"])])
        self.final_layernorm = RmsNorm(c["hidden_size"], c["layernorm_epsilon"], **kw)
        self.output_layer = nn.Linear(c["hidden_size"], c["padded_vocab_size"], bias=False, **kw)

    def forward(self, ids):
        x = self.embedding(ids)
        cos, sin = rope_tables(ids.shape[1], self.c["kv_channels"], 10000.0 * self.c.get("rope_ratio", 1.0), ids.device, x.dtype)
        for layer in self.layers:
            if self.checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, use_reentrant=False)
            else:
                x = layer(x, cos, sin)
        return self.output_layer(self.final_layernorm(x)).float()


def random_glm(c, checkpointing, device, dtype):
    model = Glm(c, checkpointing, device=device, dtype=dtype)
    for name, p in model.named_parameters():
        if name.endswith("layernorm.weight"):
            continue
        if name.endswith("bias"):
            nn.init.zeros_(p)
        else:
            init_uniform_(p, p.shape[-1])
    return model


def add_lora(model, lora, mode):
    targets = set(lora["targets"])
    for p in model.parameters():
        p.requires_grad_(False)
    if mode == "peft":
        from peft import LoraConfig, inject_adapter_in_model
        config = LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                            target_modules=sorted(targets))
        return inject_adapter_in_model(config, model)
    for layer in model.layers:
        for parent, name in ((layer.self_attention, "query_key_value"), (layer.self_attention, "dense"),
                             (layer.mlp, "dense_h_to_4h"), (layer.mlp, "dense_4h_to_h")):
            if name in targets:
                setattr(parent, name, LoraLinear(getattr(parent, name), lora["rank"], lora["alpha"], lora["dropout"]))
    return model


def bench_lm(shape, device, warmup, steps, lora_mode):
    c = shape["config"]
    dtype = DTYPES[shape["dtype"]]
    torch.manual_seed(shape["seed"])
    model = random_glm(c, shape["activation_checkpointing"], device, dtype)
    if shape["finetune"] == "lora":
        model = add_lora(model, shape["lora"], lora_mode)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    o = shape["optimizer"]
    optimizer = torch.optim.AdamW(trainable, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                                  weight_decay=o["weight_decay"])
    clip = shape["clip_grad_norm"] or None
    batch, seq, vocab = shape["batch_size"], shape["seq_len"], c["padded_vocab_size"]
    generator = torch.Generator().manual_seed(shape["seed"])

    def step(_):
        ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(trainable, clip)
        optimizer.step()
        return loss.item()

    return timed(device, warmup, steps, step), batch * seq


# ---------------------------------------------------------------- stage two
def decoder_reference():
    sys.path.insert(0, FIXTURE_TOOLS)
    import decoder_reference as ref
    torch.set_default_dtype(torch.float32)  # the module sets float64 for its fixtures
    return ref


def size_flow(ref, c):
    e, est = c["encoder"], c["estimator"]
    ref.D, ref.HEADS, ref.FFN = e["output_size"], e["attention_heads"], e["linear_units"]
    ref.BLOCKS, ref.BLOCK = e["num_blocks"], e["block_size"]
    ref.VOCAB, ref.MEL = c["vocab_size"], c["output_size"]
    ref.CHANNELS, ref.HEAD_DIM = tuple(est["channels"]), est["attention_head_dim"]
    ref.N_BLOCKS, ref.MID, ref.E_HEADS = est["n_blocks"], est["num_mid_blocks"], est["num_heads"]
    if c["input_size"] != e["output_size"] or c["spk_embed_dim"] != 192 or est["in_channels"] != 4 * c["output_size"]:
        raise SystemExit("this flow config differs from GLM-4-Voice-Decoder's layout beyond its sizes")


def adam(params, o):
    return torch.optim.AdamW(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])


def bench_flow(shape, device, warmup, steps):
    ref = decoder_reference()
    c = shape["config"]
    size_flow(ref, c)
    torch.manual_seed(1)
    with torch.device(device):
        flow = ref.Flow()
    flow.train()
    optimizer = adam(flow.parameters(), shape["optimizer"])
    clip = shape["clip_grad_norm"] or None
    n, frames = shape["utterances"], shape["frames"]
    tokens = max(1, math.ceil(frames * c["input_frame_rate"] * 256 / 22050))
    mel_bins, cfg_rate = c["output_size"], c["cfm"]["training_cfg_rate"]
    g = torch.Generator().manual_seed(2)

    def step(_):
        ids = torch.randint(0, c["vocab_size"], (n, tokens), generator=g)
        x1 = torch.randn(n, mel_bins, frames, generator=g) * 2 - 5
        prompt = [0 if torch.rand(1, generator=g) < 0.5 else int(torch.randint(0, int(0.8 * frames) + 1, (1,), generator=g))
                  for _ in range(n)]
        cond = torch.zeros_like(x1)
        for b, p in enumerate(prompt):
            cond[b, :, :p] = x1[b, :, :p]
        t = torch.rand(n, generator=g)
        z = torch.randn(n, mel_bins, frames, generator=g)
        keep = torch.rand(n, generator=g) > cfg_rate
        token_lens = torch.full((n,), tokens)
        mel_lens = torch.full((n,), frames)
        ids, x1, cond, t, z, keep, token_lens, mel_lens = (v.to(device) for v in (ids, x1, cond, t, z, keep, token_lens, mel_lens))
        mask = torch.ones(n, 1, frames, device=device)
        with torch.device(device):
            _, mu = flow.mu(ids, token_lens, mel_lens)
            loss = flow.loss(x1, mask, mu, flow.spks(n), cond, t, z, keep)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(flow.parameters(), clip)
        optimizer.step()
        return loss.item()

    return timed(device, warmup, steps, step), n * frames


wn = nn.utils.parametrizations.weight_norm


class PeriodDiscriminator(nn.Module):
    def __init__(self, period, c):
        super().__init__()
        self.period = period
        widths = [1, c, 4 * c, 16 * c, 32 * c]
        self.convs = nn.ModuleList([wn(nn.Conv2d(widths[i], widths[i + 1], (5, 1), (3, 1), padding=(2, 0))) for i in range(4)]
                                   + [wn(nn.Conv2d(32 * c, 32 * c, (5, 1), 1, padding=(2, 0)))])
        self.conv_post = wn(nn.Conv2d(32 * c, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wave):
        b, t = wave.shape
        pad = (self.period - t % self.period) % self.period
        x = F.pad(wave[:, None], (0, pad), mode="reflect").view(b, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        score = self.conv_post(x).flatten(1)
        return score, features + [score]


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft, hop, win, c):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.convs = nn.ModuleList([wn(nn.Conv2d(1, c, (3, 9), padding=(1, 4)))]
                                   + [wn(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))) for _ in range(3)]
                                   + [wn(nn.Conv2d(c, c, (3, 3), padding=(1, 1)))])
        self.conv_post = wn(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))
        self.register_buffer("window", torch.hann_window(win), persistent=False)

    def forward(self, wave):
        pad = (self.n_fft - self.hop) // 2
        x = F.pad(wave[:, None], (pad, pad), mode="reflect")[:, 0]
        spec = torch.stft(x, self.n_fft, self.hop, self.win, window=self.window, center=False, return_complex=True)
        x = (spec.real ** 2 + spec.imag ** 2 + 1e-9).sqrt()[:, None]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        score = self.conv_post(x).flatten(1)
        return score, features + [score]


class Discriminators(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.mpd = nn.ModuleList([PeriodDiscriminator(p, c) for p in (2, 3, 5, 7, 11)])
        self.mrd = nn.ModuleList([ResolutionDiscriminator(*r, c) for r in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))])

    def forward(self, wave):
        return [d(wave) for d in list(self.mpd) + list(self.mrd)]


def slaney_mel(sr, n_fft, n_mels, fmin, fmax):
    """Slaney-style mel filters with Slaney area normalization, [n_mels, n_fft // 2 + 1]."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    weights = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lower = (freqs - edges[i]) / (edges[i + 1] - edges[i])
        upper = (edges[i + 2] - freqs) / (edges[i + 2] - edges[i + 1])
        weights[i] = np.maximum(0, np.minimum(lower, upper)) * 2.0 / (edges[i + 2] - edges[i])
    return weights


class LossMel(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("filters", torch.tensor(slaney_mel(22050, 1024, 80, 0.0, 11025.0), dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(1024), persistent=False)

    def forward(self, wave):
        x = F.pad(wave[:, None], (384, 384), mode="reflect")[:, 0]
        spec = torch.stft(x, 1024, 256, 1024, window=self.window, center=False, return_complex=True)
        magnitude = (spec.real ** 2 + spec.imag ** 2 + 1e-9).sqrt()
        return torch.log(torch.clamp(self.filters @ magnitude, min=1e-5))


def tpr_loss(real, fake, tau=0.04):
    total = 0
    for (r, _), (g, _) in zip(real, fake):
        diff = r - g
        median = torch.median(diff).detach()
        below = (diff < median).float()
        relative = ((diff - median) ** 2 * below).sum() / below.sum().clamp_min(1)
        total = total + tau - F.relu(tau - relative)
    return total


def bench_vocoder(shape, device, warmup, steps):
    ref = decoder_reference()
    c = shape["config"]
    ref.HIFT_BASE, ref.F0_COND, ref.MEL = c["base_channels"], c["f0_predictor"]["cond_channels"], c["in_channels"]
    if (c["upsample_rates"] != [8, 8] or c["istft_n_fft"] != 16 or c["istft_hop_len"] != 4 or c["nb_harmonics"] != 8):
        raise SystemExit("this HiFT config differs from GLM-4-Voice-Decoder's layout beyond its sizes")
    torch.manual_seed(3)
    with torch.device(device):
        hift = ref.Hift()
        disc = Discriminators(shape["discriminator_channels"])
        loss_mel = LossMel()
    hift.window = hift.window.to(device)
    opt_g, opt_d = adam(hift.parameters(), shape["optimizer"]), adam(disc.parameters(), shape["optimizer"])
    clip = shape["clip_grad_norm"] or None
    n, frames = shape["crops"], shape["segment_frames"]
    hop = 256
    g = torch.Generator().manual_seed(4)

    def step(_):
        mel = (torch.randn(n, 80, frames, generator=g) * 2 - 5).to(device)
        real = (0.1 * torch.randn(n, frames * hop, generator=g)).to(device)
        f0_target = (100 + 150 * torch.rand(n, frames, generator=g)).to(device)
        phase = (2 * math.pi * torch.rand(n, 9, generator=g)).to(device)
        noise = torch.randn(n, 9, frames * hop, generator=g).to(device)
        f0 = hift.f0_predictor(mel)
        with torch.device(device):
            fake = hift.decode(mel, hift.source(f0.detach(), phase, noise))
        d_real, d_fake = disc(real), disc(fake.detach())
        d_loss = sum(((1 - r) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(d_real, d_fake)) + tpr_loss(d_real, d_fake)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(disc.parameters(), clip)
        opt_d.step()
        with torch.no_grad():
            d_real = [(s.detach(), [x.detach() for x in fs]) for s, fs in disc(real)]
        d_fake = disc(fake)
        adversarial = sum(((1 - f) ** 2).mean() for f, _ in d_fake)
        features = 2 * sum((a - b).abs().mean() for (_, ra), (_, fa) in zip(d_real, d_fake) for a, b in zip(ra, fa))
        mel_l1 = (loss_mel(fake) - loss_mel(real)).abs().mean()
        f0_l1 = (f0 - f0_target).abs().mean()
        g_loss = adversarial + 2 * features + tpr_loss(d_real, d_fake) + 45 * mel_l1 + f0_l1
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(hift.parameters(), clip)
        opt_g.step()
        return mel_l1.item()

    return timed(device, warmup, steps, step), n * frames


# ---------------------------------------------------------------- report
def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def gib(b):
    return "-" if b is None else f"{b / 2 ** 30:.2f} GiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arp_json", help="the --json file of `arp-train bench`")
    ap.add_argument("--json", help="write PyTorch's results here")
    ap.add_argument("--device", help="torch device (default: arp-train's: cpu or cuda:N)")
    ap.add_argument("--stages", help="comma-separated subset of the stages in the file")
    ap.add_argument("--steps", type=int, help="timed steps (default: arp-train's)")
    ap.add_argument("--warmup", type=int, help="warm-up steps (default: arp-train's)")
    ap.add_argument("--lora", choices=["plain", "peft"], default="plain")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    args = ap.parse_args()

    with open(args.arp_json) as f:
        arp = json.load(f)
    device = torch.device(args.device or ("cpu" if arp["device"] == "cpu" else arp["device"]))
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = arp["settings"]
    steps = args.steps or settings["steps"]
    warmup = settings["warmup"] if args.warmup is None else args.warmup
    wanted = set(args.stages.split(",")) if args.stages else None
    results = []
    for stage in arp["stages"]:
        name = stage["stage"]
        if wanted and name not in wanted:
            continue
        print(f"pytorch: {name} ...", file=sys.stderr)
        memory = Memory(device)
        if name == "lm":
            (times, losses), per_step = bench_lm(stage["shape"], device, warmup, steps, args.lora)
        elif name == "flow":
            (times, losses), per_step = bench_flow(stage["shape"], device, warmup, steps)
        else:
            (times, losses), per_step = bench_vocoder(stage["shape"], device, warmup, steps)
        peak, source, allocated = memory.finish()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        med = median(times)
        flops = stage.get("flops_per_step")
        achieved = flops / med / 1e12 if flops else None
        results.append({
            "stage": name, "unit": stage["unit"], "per_step": per_step, "warmup_steps": warmup,
            "step_seconds": times, "median_step_seconds": med, "throughput": per_step / med,
            "flops_per_step": flops, "achieved_tflops": achieved,
            "mfu": achieved / arp["peak_tflops"] if achieved and arp.get("peak_tflops") else None,
            "peak_memory_bytes": peak, "memory_source": source, "max_memory_allocated": allocated,
            "losses": losses, "shape": stage["shape"],
        })
    report = {
        "tool": "pytorch", "version": torch.__version__, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "peak_tflops": arp.get("peak_tflops"), "lora": args.lora, "threads": torch.get_num_threads(),
        "settings": dict(settings, steps=steps, warmup=warmup), "stages": results,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)

    by_name = {s["stage"]: s for s in arp["stages"]}
    print(f"device: {report['device_name'] or report['device']}  (torch {torch.__version__}, {args.lora} LoRA)")
    print(f"{'stage':<8} {'unit/s':>11} {'arp-train':>12} {'pytorch':>12} {'ratio':>7} {'arp MFU':>8} {'pt MFU':>8} {'arp mem':>10} {'pt mem':>10}")
    for r in results:
        a = by_name[r["stage"]]
        unit = "tokens" if r["unit"] == "tokens" else "mel frames"
        pct = lambda m: "-" if m is None else f"{100 * m:.1f}%"
        print(f"{r['stage']:<8} {unit:>11} {a['throughput']:>12.1f} {r['throughput']:>12.1f} "
              f"{a['throughput'] / r['throughput']:>7.3f} {pct(a.get('mfu')):>8} {pct(r['mfu']):>8} "
              f"{gib(a.get('peak_memory_bytes')):>10} {gib(r['peak_memory_bytes']):>10}")
    print("ratio = arp-train throughput / PyTorch throughput (above 1: arp-train is faster)")


if __name__ == "__main__":
    main()
