#!/usr/bin/env python3
"""Extract Resemblyzer's GE2E speaker encoder weights into safetensors, without torch.

The PyPI package `resemblyzer` (0.1.4, Apache-2.0) ships `resemblyzer/pretrained.pt`, a legacy
(pre-zip) torch.save file holding {"model_state": state_dict, "optimizer_state": ..., "step": ...}.
This script reads it with the standard library only (pickle with the torch classes replaced by
small stand-ins, then the raw little-endian storages that follow the pickles) and writes the
model tensors, float32, to a safetensors file that `arp-train eval` loads:

    lstm.weight_ih_l{0,1,2}  [1024, 40 | 256]     PyTorch gate order i, f, g, o
    lstm.weight_hh_l{0,1,2}  [1024, 256]
    lstm.bias_ih_l{0,1,2}    [1024]
    lstm.bias_hh_l{0,1,2}    [1024]
    linear.weight            [256, 256]
    linear.bias              [256]

Usage (needs pip and network access to PyPI, or a downloaded wheel):

    python3 tools/data/resemblyzer_weights.py                       # -> models/resemblyzer/encoder.safetensors
    python3 tools/data/resemblyzer_weights.py --wheel Resemblyzer-0.1.4-py3-none-any.whl --out enc.safetensors
    python3 tools/data/resemblyzer_weights.py --pt path/to/pretrained.pt
"""
import argparse
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "models", "resemblyzer", "encoder.safetensors")
PACKAGE = "resemblyzer==0.1.4"
MEMBER = "resemblyzer/pretrained.pt"
# The tensors VoiceEncoder.load_state_dict uses (strict=False skips the GE2E loss scalars).
KEEP_PREFIXES = ("lstm.", "linear.")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {  # torch storage class -> (struct format, bytes per element, safetensors dtype)
    "FloatStorage": ("f", 4, "F32"),
    "DoubleStorage": ("d", 8, "F64"),
    "LongStorage": ("q", 8, "I64"),
    "IntStorage": ("i", 4, "I32"),
}


class Storage:
    def __init__(self, kind, key, numel):
        self.kind, self.key, self.numel = kind, key, numel
        self.data = None  # bytes, filled after the pickles


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def contiguous_bytes(self):
        fmt, size, _ = STORAGE_DTYPES[self.storage.kind]
        expected = []
        acc = 1
        for dim in reversed(self.shape):
            expected.append(acc)
            acc *= dim
        if tuple(reversed(expected)) != self.stride and acc > 1:
            raise SystemExit(f"tensor with shape {self.shape} has non-contiguous strides {self.stride}")
        start = self.offset * size
        return self.storage.data[start:start + acc * size]


def rebuild_tensor(storage, offset, shape, stride, *_ignored):
    return Tensor(storage, offset, shape, stride)


class StorageType:
    def __init__(self, name):
        self.name = name


class TorchFreeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name == "device":
            return str
        return super().find_class(module, name)

    def persistent_load(self, pid):
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise SystemExit(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if view is not None:
            raise SystemExit("storage views are not supported")
        storages = self.storages
        if key not in storages:
            storages[key] = Storage(storage_type.name, key, numel)
        return storages[key]


def read_legacy(blob):
    stream = io.BytesIO(blob)
    magic = pickle.load(stream)
    if magic != LEGACY_MAGIC:
        raise SystemExit("not a legacy torch.save file (wrong magic number); is it a zip checkpoint?")
    pickle.load(stream)  # protocol version
    pickle.load(stream)  # sys info
    unpickler = TorchFreeUnpickler(stream)
    unpickler.storages = {}
    result = unpickler.load()
    keys = pickle.load(stream)
    for key in keys:
        storage = unpickler.storages[key]
        (numel,) = struct.unpack("<q", stream.read(8))
        _, size, _ = STORAGE_DTYPES[storage.kind]
        storage.data = stream.read(numel * size)
        if len(storage.data) != numel * size:
            raise SystemExit(f"storage {key} is truncated")
    return result


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    payload = bytearray()
    for name in sorted(tensors):
        tensor = tensors[name]
        data = tensor.contiguous_bytes()
        dtype = STORAGE_DTYPES[tensor.storage.kind][2]
        header[name] = {"dtype": dtype, "shape": list(tensor.shape),
                        "data_offsets": [len(payload), len(payload) + len(data)]}
        payload += data
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        out.write(payload)
    os.replace(tmp, path)


def pretrained_bytes(args):
    if args.pt:
        with open(args.pt, "rb") as f:
            return f.read(), os.path.basename(args.pt)
    wheel = args.wheel
    if wheel is None:
        tmpdir = tempfile.mkdtemp(prefix="resemblyzer-")
        print(f"downloading {PACKAGE} from PyPI (pip download --no-deps) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmpdir, PACKAGE],
                       check=True)
        wheel = os.path.join(tmpdir, next(n for n in os.listdir(tmpdir) if n.endswith(".whl")))
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(MEMBER), os.path.basename(wheel)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help="a downloaded Resemblyzer wheel (default: pip download it)")
    parser.add_argument("--pt", help="a pretrained.pt file instead of the wheel")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output safetensors path")
    args = parser.parse_args()

    blob, source = pretrained_bytes(args)
    checkpoint = read_legacy(blob)
    state = checkpoint["model_state"]
    tensors = {k: v for k, v in state.items() if k.startswith(KEEP_PREFIXES)}
    skipped = sorted(set(state) - set(tensors))
    params = sum(eval_numel(t.shape) for t in tensors.values())
    write_safetensors(args.out, tensors, {
        "source": f"{source}:{MEMBER}",
        "model": "Resemblyzer VoiceEncoder (GE2E d-vector), Apache-2.0",
        "step": str(checkpoint.get("step", "")),
    })
    print(f"wrote {args.out}: {len(tensors)} tensors, {params} parameters (skipped {', '.join(skipped) or 'none'})")


def eval_numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
