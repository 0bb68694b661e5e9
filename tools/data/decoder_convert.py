#!/usr/bin/env python3
"""Convert a GLM-4-Voice-Decoder directory between PyTorch pickles and safetensors.

arp-train reads and writes `flow.safetensors` / `hift.safetensors` with the reference state-dict
names; the GLM-4-Voice demo loads `flow.pt` / `hift.pt` with `torch.load` + `load_state_dict`.
The tensors and names are the same, so conversion is a plain re-serialization (HiFT's weight-norm
pairs `weight_g` / `weight_v` are kept as they are).

Usage:
  python tools/data/decoder_convert.py to-pt DIR            # DIR/flow.safetensors -> DIR/flow.pt (and hift)
  python tools/data/decoder_convert.py to-safetensors DIR   # DIR/flow.pt -> DIR/flow.safetensors (and hift)
Needs torch and safetensors (pip install torch safetensors).
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("to-pt", "to-safetensors"):
        sys.exit(__doc__)
    mode, directory = sys.argv[1], sys.argv[2]
    for part in ("flow", "hift"):
        st, pt = os.path.join(directory, f"{part}.safetensors"), os.path.join(directory, f"{part}.pt")
        if mode == "to-pt":
            state = load_file(st)
            torch.save(state, pt)
            print(f"{st} -> {pt} ({len(state)} tensors)")
        else:
            state = torch.load(pt, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                sys.exit(f"{pt}: expected a state dict, found {type(state).__name__}")
            state = {k: v.float().contiguous() for k, v in state.items() if torch.is_tensor(v)}
            save_file(state, st, metadata={"format": "pt"})
            print(f"{pt} -> {st} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
