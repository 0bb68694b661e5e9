#!/usr/bin/env python3
"""Weights for the tiny "original" GLM-4-Voice-Decoder in models/tiny/glm-4-voice-decoder/.

The real GLM-4-Voice-Decoder directory holds config.yaml, flow.pt and hift.pt; arp-train reads
them as flow.safetensors / hift.safetensors (tools/decoder_convert.py to-safetensors). The tiny
recipe's `decoder.init` points at this directory, so the decoupling ablation `freeze: [decoder]`
has a decoder to keep. The weights are random (seeded), drawn by the independent PyTorch modules
of tools/decoder_reference.py resized to the tiny config.yaml beside them; the names are the
reference state-dict names (HiFT with weight_g / weight_v pairs, as in the published hift.pt).

Usage: /path/to/venv/bin/python tools/make_tiny_decoder.py   (torch, safetensors)
"""
import os

import torch
from safetensors.torch import save_file

import decoder_reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "tiny", "glm-4-voice-decoder")

# The sizes of models/tiny/glm-4-voice-decoder/config.yaml (the reference modules read these
# module-level names when they are built).
ref.D, ref.HEADS, ref.FFN, ref.BLOCKS, ref.BLOCK = 32, 2, 64, 2, 10
ref.VOCAB = 16384
ref.CHANNELS, ref.HEAD_DIM, ref.N_BLOCKS, ref.MID, ref.E_HEADS = (32, 32), 16, 1, 1, 2
ref.HIFT_BASE, ref.F0_COND = 32, 32


def main():
    torch.manual_seed(2024)
    flow, hift = ref.Flow(), ref.Hift()
    for module in (flow, hift):
        ref.randomize(module, 1.0)
    save_file({k: v.float().contiguous() for k, v in flow.state_dict().items()},
              os.path.join(OUT, "flow.safetensors"))
    save_file({k: v.float().contiguous() for k, v in hift.state_dict().items()},
              os.path.join(OUT, "hift.safetensors"))
    n_flow = sum(v.numel() for v in flow.state_dict().values())
    n_hift = sum(v.numel() for v in hift.state_dict().values())
    print(f"wrote {OUT}: flow {n_flow} values, hift {n_hift} values")


if __name__ == "__main__":
    main()
