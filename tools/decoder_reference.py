#!/usr/bin/env python3
"""A tiny GLM-4-Voice-Decoder (flow + HiFT) in PyTorch, and the outputs arp-train must match.

An independent implementation written from ../shared/reference/glm-4-voice.md section 5 and
the module names of the public `flow.pt` / `hift.pt` state dicts (CosyVoice's MaskedDiffWithXvec
and HiFTGenerator). It is computed in float64, so it is the "truth" the float32 Rust code is
compared against.

Semantics written down here (and in the Rust code):
- Encoder: Linear + LayerNorm, x * sqrt(d), espnet relative positions (pos_emb of 2T-1 rows for
  relative positions T-1 ... -(T-1)), attention scores (q+u)k^T + rel_shift((q+v)p^T) over
  sqrt(d_k), keys allowed when valid AND in the query's block or earlier (block-causal grid),
  pre-norm layers with a swish FFN, after_norm.
- InterpolateRegulator: nearest interpolation (src = floor(dst * in/out)) of the padded batch to
  the longest mel length, [Conv1d k3, GroupNorm(1), Mish] x n, Conv1d k1, times the mel mask.
- Estimator: the ConditionalDecoder U-Net. Its transformer blocks take the 0/1 attention mask
  mask^T mask as an *additive* bias on the scores (what diffusers' Attention does with a float
  mask in CosyVoice): valid pairs get +1, pairs with padding +0.
- CFM loss: y = (1 - (1 - sigma) t) z + t x1, u = x1 - (1 - sigma) z, CFG-dropped samples have
  mu, spks and cond zeroed, loss = sum((pred - u)^2 * mask) / (sum(mask) * 80).
- HiFT: F0 predictor, the harmonic source from an F0 track (nearest x256 upsampling, 9 harmonics,
  phase = 2 pi cumsum(f / sr) mod 1 + a random phase per harmonic (0 for the fundamental),
  voiced where f0 > threshold, noise amplitude sigma voiced / alpha/3 unvoiced), l_linear + tanh,
  torch.stft of the source (n_fft 16, hop 4, Hann, centered, reflect), the generator, and
  torch.istft. The random phases and noise are fixed inputs here, saved with the outputs.

Writes tests/fixtures/decoder/: config.yaml (the tiny config, HyperPyYAML like the real one),
flow.safetensors and hift.safetensors (random weights, the reference state-dict names; HiFT with
weight_g/weight_v pairs), reference.safetensors (inputs and outputs).

Usage: /path/to/venv/bin/python tools/decoder_reference.py   (torch, numpy, safetensors)
"""
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "decoder")
torch.set_default_dtype(torch.float64)

CONFIG_YAML = """\
# The decoder parity fixture's config (tools/decoder_reference.py): the real config.yaml's
# layout and tags, with tiny sizes. Only `flow` and `hift` are read.
sample_rate: 22050
spk_embed_dim: 192

flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec
    input_size: 16
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 64
    input_frame_rate: 12.5
    only_mask_loss: True
    encoder: !new:cosyvoice.transformer.encoder.BlockConformerEncoder
        output_size: 16
        attention_heads: 2
        linear_units: 32
        num_blocks: 2
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'block_rel_selfattn'
        block_size: 3
        input_size: 16
        use_cnn_module: False
        macaron_style: False
    length_regulator: !new:cosyvoice.flow.length_regulator.InterpolateRegulator
        channels: 80
        sampling_ratios: [1, 1]
    decoder: !new:cosyvoice.flow.flow_matching.ConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.ConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16, 16]
            dropout: 0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 2
            num_heads: 2
            act_fn: 'gelu'

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 8]
    upsample_kernel_sizes: [16, 16]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 16
"""

D, HEADS, FFN, BLOCKS, BLOCK = 16, 2, 32, 2, 3
VOCAB, MEL = 64, 80
CHANNELS, HEAD_DIM, N_BLOCKS, MID, E_HEADS = (16, 16), 8, 1, 2, 2
SIGMA = 1e-6
HIFT_BASE, F0_COND, SR = 16, 16, 22050


def x_dtype(module):
    """The floating type of a module's weights (float64 for the fixtures; the benchmark builds
    these modules in float32 too: tools/bench_reference.py)."""
    return next(module.parameters()).dtype


def mish(x):
    return x * torch.tanh(F.softplus(x))


# ---------------------------------------------------------------- flow encoder
class RelAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear_q, self.linear_k = nn.Linear(D, D), nn.Linear(D, D)
        self.linear_v, self.linear_out = nn.Linear(D, D), nn.Linear(D, D)
        self.linear_pos = nn.Linear(D, D, bias=False)
        self.pos_bias_u = nn.Parameter(torch.randn(HEADS, D // HEADS) * 0.3)
        self.pos_bias_v = nn.Parameter(torch.randn(HEADS, D // HEADS) * 0.3)

    def forward(self, x, valid, pos):
        b, t, _ = x.shape
        dk = D // HEADS
        q = self.linear_q(x).view(b, t, HEADS, dk)
        k = self.linear_k(x).view(b, t, HEADS, dk).transpose(1, 2)
        v = self.linear_v(x).view(b, t, HEADS, dk).transpose(1, 2)
        p = self.linear_pos(pos).view(1, 2 * t - 1, HEADS, dk).transpose(1, 2)
        ac = (q + self.pos_bias_u).transpose(1, 2) @ k.transpose(-1, -2)
        bd_full = (q + self.pos_bias_v).transpose(1, 2) @ p.transpose(-1, -2)  # [b,h,t,2t-1]
        # score[i, j] uses the row of relative position i - j, which is row (t - 1) - (i - j).
        idx = torch.tensor([[(t - 1) - (i - j) for j in range(t)] for i in range(t)])
        bd = torch.gather(bd_full, 3, idx.expand(b, HEADS, t, t))
        scores = (ac + bd) / math.sqrt(dk)
        rows = torch.arange(t)
        block_end = (rows // BLOCK + 1) * BLOCK
        allowed = (rows[None, :] < block_end[:, None])[None] & valid[:, None, :]  # [b,t,t]
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        attn = torch.softmax(scores, -1).masked_fill(~allowed[:, None], 0.0)
        out = (attn @ v).transpose(1, 2).reshape(b, t, D)
        return self.linear_out(out)


class FeedForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(D, FFN), nn.Linear(FFN, D)

    def forward(self, x):
        return self.w_2(F.silu(self.w_1(x)))


class EncoderLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.feed_forward = RelAttention(), FeedForward()
        self.norm_ff, self.norm_mha = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)

    def forward(self, x, valid, pos):
        x = x + self.self_attn(self.norm_mha(x), valid, pos)
        return x + self.feed_forward(self.norm_ff(x))


def rel_positions(t):
    """Rows for relative positions t-1 ... -(t-1): sin at even, cos at odd columns."""
    rel = torch.arange(t - 1, -t, -1, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, D, 2, dtype=torch.float64) * -(math.log(10000.0) / D))
    pe = torch.zeros(2 * t - 1, D)
    pe[:, 0::2] = torch.sin(rel * div)
    pe[:, 1::2] = torch.cos(rel * div)
    return pe[None]


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Module()
        self.embed.out = nn.Sequential(nn.Linear(D, D), nn.LayerNorm(D, eps=1e-5))
        self.encoders = nn.ModuleList([EncoderLayer() for _ in range(BLOCKS)])
        self.after_norm = nn.LayerNorm(D, eps=1e-5)

    def forward(self, x, valid):
        x = self.embed.out(x) * math.sqrt(D)
        pos = rel_positions(x.shape[1])
        for layer in self.encoders:
            x = layer(x, valid, pos)
        return self.after_norm(x)


class Regulator(nn.Module):
    def __init__(self, n=2):
        super().__init__()
        mods = []
        for _ in range(n):
            mods += [nn.Conv1d(MEL, MEL, 3, 1, 1), nn.GroupNorm(1, MEL), nn.Mish()]
        mods.append(nn.Conv1d(MEL, MEL, 1, 1))
        self.model = nn.Sequential(*mods)

    def forward(self, x, mel_lens):
        out_len = int(mel_lens.max())
        t_in = x.shape[1]
        src = torch.tensor([min(int(math.floor(i * (t_in / out_len))), t_in - 1) for i in range(out_len)])
        x = x[:, src, :].transpose(1, 2)
        mask = (torch.arange(out_len)[None] < mel_lens[:, None]).to(torch.get_default_dtype())[:, None]
        return self.model(x) * mask  # [b, 80, T]


# ---------------------------------------------------------------- estimator (U-Net)
class Block1D(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.Mish())

    def forward(self, x, mask):
        return self.block(x * mask) * mask


class ResnetBlock1D(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(temb, cout))
        self.block1, self.block2 = Block1D(cin, cout), Block1D(cout, cout)
        self.res_conv = nn.Conv1d(cin, cout, 1)

    def forward(self, x, mask, temb):
        h = self.block1(x, mask) + self.mlp(temb)[:, :, None]
        return self.block2(h, mask) + self.res_conv(x * mask)


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        inner = E_HEADS * HEAD_DIM
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x, bias):
        b, t, _ = x.shape
        q = self.to_q(x).view(b, t, E_HEADS, HEAD_DIM).transpose(1, 2)
        k = self.to_k(x).view(b, t, E_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.to_v(x).view(b, t, E_HEADS, HEAD_DIM).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM) + bias[:, None]
        out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, E_HEADS * HEAD_DIM)
        return self.to_out[0](out)


class GeluProj(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x):
        return F.gelu(self.proj(x))


class TransformerBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim)
        self.ff = nn.Module()
        self.ff.net = nn.ModuleList([GeluProj(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x, bias):
        x = x + self.attn1(self.norm1(x), bias)
        h = self.norm3(x)
        for m in self.ff.net:
            h = m(h)
        return x + h


def time_embedding(t, dim=320):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000) / (half - 1))).to(t.dtype)
    e = 1000 * t[:, None] * freqs[None]
    return torch.cat([e.sin(), e.cos()], -1)


class Estimator(nn.Module):
    def __init__(self):
        super().__init__()
        temb = CHANNELS[0] * 4
        self.time_mlp = nn.Module()
        self.time_mlp.linear_1, self.time_mlp.linear_2 = nn.Linear(320, temb), nn.Linear(temb, temb)
        self.down_blocks, self.mid_blocks, self.up_blocks = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cout = 320
        for i, c in enumerate(CHANNELS):
            cin, cout = cout, c
            last = i == len(CHANNELS) - 1
            down = nn.Conv1d(cout, cout, 3, padding=1) if last else nn.Module()
            if not last:
                down.conv = nn.Conv1d(cout, cout, 3, 2, 1)
            self.down_blocks.append(nn.ModuleList([
                ResnetBlock1D(cin, cout, temb),
                nn.ModuleList([TransformerBlock(cout) for _ in range(N_BLOCKS)]),
                down]))
        for _ in range(MID):
            self.mid_blocks.append(nn.ModuleList([
                ResnetBlock1D(CHANNELS[-1], CHANNELS[-1], temb),
                nn.ModuleList([TransformerBlock(CHANNELS[-1]) for _ in range(N_BLOCKS)])]))
        ups = tuple(reversed(CHANNELS)) + (CHANNELS[0],)
        for i in range(len(ups) - 1):
            last = i == len(ups) - 2
            cout = ups[i + 1]
            up = nn.Conv1d(cout, cout, 3, padding=1) if last else nn.Module()
            if not last:
                up.conv = nn.ConvTranspose1d(cout, cout, 4, 2, 1)
            self.up_blocks.append(nn.ModuleList([
                ResnetBlock1D(ups[i] * 2, cout, temb),
                nn.ModuleList([TransformerBlock(cout) for _ in range(N_BLOCKS)]),
                up]))
        self.final_block = Block1D(ups[-1], ups[-1])
        self.final_proj = nn.Conv1d(ups[-1], MEL, 1)

    @staticmethod
    def _apply(m, x):
        return m.conv(x) if hasattr(m, "conv") else m(x)

    def _transformers(self, blocks, x, mask):
        bias = mask.transpose(1, 2) @ mask  # [b, t, t] of 0/1, added to the scores
        x = x.transpose(1, 2)
        for blk in blocks:
            x = blk(x, bias)
        return x.transpose(1, 2)

    def forward(self, x, mask, mu, t, spks, cond):
        temb = self.time_mlp.linear_2(F.silu(self.time_mlp.linear_1(time_embedding(t))))
        x = torch.cat([x, mu, spks[:, :, None].expand(-1, -1, x.shape[-1]), cond], 1)
        hiddens, masks = [], [mask]
        for resnet, blocks, down in self.down_blocks:
            m = masks[-1]
            x = self._transformers(blocks, resnet(x, m, temb), m)
            hiddens.append(x)
            x = self._apply(down, x * m)
            masks.append(m[:, :, ::2])
        masks = masks[:-1]
        m = masks[-1]
        for resnet, blocks in self.mid_blocks:
            x = self._transformers(blocks, resnet(x, m, temb), m)
        for resnet, blocks, up in self.up_blocks:
            m = masks.pop()
            skip = hiddens.pop()
            x = torch.cat([x[:, :, :skip.shape[-1]], skip], 1)
            x = self._transformers(blocks, resnet(x, m, temb), m)
            x = self._apply(up, x * m)
        x = self.final_block(x, m)
        return self.final_proj(x * m) * mask


class Flow(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_embedding = nn.Embedding(VOCAB, D)
        self.spk_embed_affine_layer = nn.Linear(192, MEL)
        self.encoder = Encoder()
        self.encoder_proj = nn.Linear(D, MEL)
        self.length_regulator = Regulator()
        self.decoder = nn.Module()
        self.decoder.estimator = Estimator()

    def mu(self, tokens, token_lens, mel_lens):
        valid = torch.arange(tokens.shape[1])[None] < token_lens[:, None]
        x = self.input_embedding(tokens) * valid[:, :, None].to(x_dtype(self))
        h = self.encoder_proj(self.encoder(x, valid))
        return h, self.length_regulator(h, mel_lens)

    def spks(self, b):
        # F.normalize(zeros) is zeros, so the speaker term is the affine layer's bias.
        return self.spk_embed_affine_layer(torch.zeros(b, 192))

    def loss(self, x1, mask, mu, spks, cond, t, z, keep):
        t = (1 - torch.cos(t * 0.5 * math.pi))[:, None, None]
        y = (1 - (1 - SIGMA) * t) * z + t * x1
        u = x1 - (1 - SIGMA) * z
        keep = keep.to(x1.dtype)
        pred = self.decoder.estimator(y, mask, mu * keep[:, None, None], t[:, 0, 0],
                                      spks * keep[:, None], cond * keep[:, None, None])
        return ((pred * mask - u * mask) ** 2).sum() / (mask.sum() * u.shape[1])

    def solve(self, mu, mask, spks, cond, z, steps, cfg=0.7):
        ts = 1 - torch.cos(torch.linspace(0, 1, steps + 1) * 0.5 * math.pi)
        x = z
        est = self.decoder.estimator
        for i in range(steps):
            t = ts[i].reshape(1).expand(mu.shape[0])
            v = est(x, mask, mu, t, spks, cond)
            v0 = est(x, mask, torch.zeros_like(mu), t, torch.zeros_like(spks), torch.zeros_like(cond))
            x = x + (ts[i + 1] - ts[i]) * ((1 + cfg) * v - cfg * v0)
        return x


# ---------------------------------------------------------------- HiFT
wn = nn.utils.weight_norm


class Snake(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.alpha = nn.Parameter(1.0 + 0.3 * torch.rand(c))

    def forward(self, x):
        a = self.alpha[None, :, None]
        return x + 1.0 / (a + 1e-9) * torch.sin(x * a) ** 2


class ResBlock(nn.Module):
    def __init__(self, c, k, dil):
        super().__init__()
        self.convs1 = nn.ModuleList([wn(nn.Conv1d(c, c, k, 1, dilation=d, padding=(k * d - d) // 2)) for d in dil])
        self.convs2 = nn.ModuleList([wn(nn.Conv1d(c, c, k, 1, dilation=1, padding=(k - 1) // 2)) for _ in dil])
        self.activations1 = nn.ModuleList([Snake(c) for _ in dil])
        self.activations2 = nn.ModuleList([Snake(c) for _ in dil])

    def forward(self, x):
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = x + c2(a2(c1(a1(x))))
        return x


class F0Predictor(nn.Module):
    def __init__(self):
        super().__init__()
        mods = []
        for i in range(5):
            mods += [wn(nn.Conv1d(MEL if i == 0 else F0_COND, F0_COND, 3, padding=1)), nn.ELU()]
        self.condnet = nn.Sequential(*mods)
        self.classifier = nn.Linear(F0_COND, 1)

    def forward(self, mel):
        return torch.abs(self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1))


class Hift(nn.Module):
    def __init__(self):
        super().__init__()
        self.m_source = nn.Module()
        self.m_source.l_linear = nn.Linear(9, 1)
        self.conv_pre = wn(nn.Conv1d(MEL, HIFT_BASE, 7, 1, padding=3))
        self.ups = nn.ModuleList([wn(nn.ConvTranspose1d(HIFT_BASE // 2 ** i, HIFT_BASE // 2 ** (i + 1), 16, 8, padding=4))
                                  for i in range(2)])
        self.source_downs = nn.ModuleList([nn.Conv1d(18, HIFT_BASE // 2, 16, 8, padding=4), nn.Conv1d(18, HIFT_BASE // 4, 1, 1)])
        self.source_resblocks = nn.ModuleList([ResBlock(HIFT_BASE // 2, 7, [1, 3, 5]), ResBlock(HIFT_BASE // 4, 11, [1, 3, 5])])
        self.resblocks = nn.ModuleList([ResBlock(HIFT_BASE // 2 ** (i + 1), k, [1, 3, 5]) for i in range(2) for k in (3, 7, 11)])
        self.conv_post = wn(nn.Conv1d(HIFT_BASE // 4, 18, 7, 1, padding=3))
        self.f0_predictor = F0Predictor()
        self.window = torch.hann_window(16, periodic=True)

    def source(self, f0, phase, noise):
        """f0 [b, frames] -> harmonic source [b, 1, frames * 256]. phase [b, 9], noise [b, 9, n]."""
        f = f0.repeat_interleave(256, dim=1)  # nearest upsampling
        harmonics = torch.stack([f * (i + 1) / SR for i in range(9)], 1)
        theta = 2 * math.pi * (torch.cumsum(harmonics, -1) % 1)
        sine = 0.1 * torch.sin(theta + phase[:, :, None])
        uv = (f > 10).to(f.dtype)[:, None]
        amp = uv * 0.003 + (1 - uv) * 0.1 / 3
        waves = sine * uv + amp * noise
        return torch.tanh(self.m_source.l_linear(waves.transpose(1, 2))).transpose(1, 2)

    def decode(self, mel, s):
        spec = torch.stft(s[:, 0], 16, 4, 16, window=self.window, return_complex=True)
        s_stft = torch.cat([spec.real, spec.imag], 1)
        x = self.conv_pre(mel)
        for i in range(2):
            x = self.ups[i](F.leaky_relu(x, 0.1))
            if i == 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            x = sum(self.resblocks[i * 3 + j](x) for j in range(3)) / 3
        x = self.conv_post(F.leaky_relu(x))
        mag = torch.clamp(torch.exp(x[:, :9]), max=1e2)
        phase = torch.sin(x[:, 9:])
        wav = torch.istft(torch.complex(mag * torch.cos(phase), mag * torch.sin(phase)), 16, 4, 16, window=self.window)
        return torch.clamp(wav, -0.99, 0.99)


def randomize(module, scale):
    """Weights that give well-conditioned outputs (not the trained statistics)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("alpha") or "pos_bias" in name:
                continue
            if name.endswith("weight_g"):
                p.copy_(0.3 + 0.4 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1 and ("norm" in name or ".block.1." in name or "model.1." in name or "model.4." in name):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) * scale / math.sqrt(max(fan_in, 1)))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1986)
    with open(os.path.join(OUT, "config.yaml"), "w") as f:
        f.write(CONFIG_YAML)
    flow, hift = Flow(), Hift()
    randomize(flow, 1.0)
    randomize(hift, 1.0)
    flow.eval(), hift.eval()
    save_file({k: v.float().contiguous() for k, v in flow.state_dict().items()}, os.path.join(OUT, "flow.safetensors"))
    save_file({k: v.float().contiguous() for k, v in hift.state_dict().items()}, os.path.join(OUT, "hift.safetensors"))
    # Run the reference on the float32-rounded weights, as the Rust side sees them.
    with torch.no_grad():
        for m in (flow, hift):
            for p in m.parameters():
                p.copy_(p.float().double())

    ref = {}
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        # Encoder + regulator on a padded batch of two (token lengths 8 and 5).
        tokens = torch.randint(0, VOCAB, (2, 8), generator=g)
        token_lens = torch.tensor([8, 5])
        mel_lens = torch.tensor([55, 34])  # ~6.89 frames per token
        h, mu = flow.mu(tokens, token_lens, mel_lens)
        ref.update(tokens=tokens.int(), token_lens=token_lens.int(), mel_lens=mel_lens.int(), encoder_out=h, mu=mu)
        # Estimator on the same padded batch.
        T = 55
        mask = (torch.arange(T)[None] < mel_lens[:, None]).double()[:, None]
        x = torch.randn(2, MEL, T, generator=g)
        cond = torch.randn(2, MEL, T, generator=g) * mask
        cond[:, :, 20:] = 0
        t = torch.tensor([0.3, 0.85])
        spks = flow.spks(2)
        ref.update(est_x=x, est_mask=mask, est_cond=cond, est_t=t, spks=spks,
                   estimator_out=flow.decoder.estimator(x, mask, mu, t, spks, cond))
        # CFM loss for fixed t (before the cosine map), noise and CFG keep-mask.
        x1 = torch.randn(2, MEL, T, generator=g) * mask
        z = torch.randn(2, MEL, T, generator=g)
        t_raw = torch.tensor([0.4, 0.7])
        keep = torch.tensor([True, False])
        ref.update(x1=x1, z=z, t_raw=t_raw, keep=keep.int(),
                   flow_loss=flow.loss(x1, mask, mu, spks, cond, t_raw, z, keep).reshape(1))
        # Euler solve (3 steps, CFG 0.7) for one utterance without padding.
        mask1 = torch.ones(1, 1, 40)
        _, mu1 = flow.mu(tokens[:1, :6], torch.tensor([6]), torch.tensor([40]))
        z1 = torch.randn(1, MEL, 40, generator=g)
        ref.update(solve_tokens=tokens[:1, :6].int(), solve_z=z1, solve_mu=mu1,
                   solve_out=flow.solve(mu1, mask1, flow.spks(1), torch.zeros(1, MEL, 40), z1, 3))

        # HiFT: F0 predictor, then the waveform for a fixed F0 track, phases and noise.
        frames = 12
        mel = torch.randn(1, MEL, frames, generator=g) - 4.0
        f0 = torch.tensor([[0, 0, 120, 125, 130, 140, 150, 160, 5, 0, 210, 220]], dtype=torch.float64)
        phase = (torch.rand(1, 9, generator=g) * 2 - 1) * math.pi
        phase[:, 0] = 0
        noise = torch.randn(1, 9, frames * 256, generator=g)
        s = hift.source(f0, phase, noise)
        ref.update(hift_mel=mel, f0_pred=hift.f0_predictor(mel), hift_f0=f0, hift_phase=phase,
                   hift_noise=noise, hift_source=s, hift_wave=hift.decode(mel, s))

    save_file({k: (v.float() if v.dtype == torch.float64 else v).contiguous() for k, v in ref.items()},
              os.path.join(OUT, "reference.safetensors"))
    for k, v in ref.items():
        print(f"{k:16s} {tuple(v.shape)} max|x| {v.double().abs().max().item():.4g}")


if __name__ == "__main__":
    main()
