#!/usr/bin/env python3
"""Extract Resemblyzer's GE2E speaker encoder weights into safetensors, without torch.

The PyPI package `resemblyzer` (0.1.4, Apache-2.0) ships `resemblyzer/pretrained.pt`, a legacy
(pre-zip) torch.save file holding {"model_state": state_dict, "optimizer_state": ..., "step": ...}.
This script reads it with the standard library only (torch_free.py: pickle with the torch
classes replaced by small stand-ins) and writes the model tensors, float32, to a safetensors
file that `arp-train eval` loads:

    lstm.weight_ih_l{0,1,2}  [1024, 40 | 256]     PyTorch gate order i, f, g, o
    lstm.weight_hh_l{0,1,2}  [1024, 256]
    lstm.bias_ih_l{0,1,2}    [1024]
    lstm.bias_hh_l{0,1,2}    [1024]
    linear.weight            [256, 256]
    linear.bias              [256]

Usage (needs pip and network access to PyPI, or a downloaded wheel):

    python3 tools/data/resemblyzer_weights.py                       # -> the user data directory
    python3 tools/data/resemblyzer_weights.py --wheel Resemblyzer-0.1.4-py3-none-any.whl --out enc.safetensors
    python3 tools/data/resemblyzer_weights.py --pt path/to/pretrained.pt

The user data directory is $ARP_TRAIN_DATA, else $XDG_DATA_HOME/arp-train, else
~/.local/share/arp-train; the file is speaker-encoders/resemblyzer.safetensors there.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_free  # noqa: E402
import wheels  # noqa: E402
from user_data import default_weights  # noqa: E402

DEFAULT_OUT = default_weights("resemblyzer.safetensors")
PACKAGE = "resemblyzer==0.1.4"
MEMBER = "resemblyzer/pretrained.pt"
# The tensors VoiceEncoder.load_state_dict uses (strict=False skips the GE2E loss scalars).
KEEP_PREFIXES = ("lstm.", "linear.")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help="a downloaded Resemblyzer wheel (default: pip download it)")
    parser.add_argument("--pt", help="a pretrained.pt file instead of the wheel")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output safetensors path")
    args = parser.parse_args()

    blob, source = wheels.member_bytes(args, PACKAGE, MEMBER)
    checkpoint = torch_free.load(blob)
    state = checkpoint["model_state"]
    tensors = {k: v for k, v in state.items() if k.startswith(KEEP_PREFIXES)}
    skipped = sorted(set(state) - set(tensors))
    params = sum(t.numel() for t in tensors.values())
    torch_free.write_safetensors(args.out, tensors, {
        "source": f"{source}:{MEMBER}",
        "model": "Resemblyzer VoiceEncoder (GE2E d-vector), Apache-2.0",
        "step": str(checkpoint.get("step", "")),
    })
    print(f"wrote {args.out}: {len(tensors)} tensors, {params} parameters (skipped {', '.join(skipped) or 'none'})")


if __name__ == "__main__":
    main()
