"""Read PyTorch checkpoints (torch.save files) and write safetensors with the standard library only.

Both of torch.save's formats are read:
- legacy (before torch 1.6): magic number, protocol, sys info, the pickle, then each storage's raw
  little-endian bytes in the order of a pickled key list;
- zip (torch 1.6 and later): `<root>/data.pkl` is the pickle, `<root>/data/<key>` each storage.
The pickle is loaded with torch's classes replaced by small stand-ins, so no torch is needed. The
speaker-encoder weight scripts (resemblyzer_weights.py, campplus_weights.py) share this module.
"""
import collections
import io
import json
import os
import pickle
import struct
import zipfile

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
        self.data = None  # bytes, filled after the pickle is read


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def contiguous_bytes(self):
        _, size, _ = STORAGE_DTYPES[self.storage.kind]
        expected = []
        acc = 1
        for dim in reversed(self.shape):
            expected.append(acc)
            acc *= dim
        if tuple(reversed(expected)) != self.stride and acc > 1:
            raise SystemExit(f"tensor with shape {self.shape} has non-contiguous strides {self.stride}")
        start = self.offset * size
        data = self.storage.data[start:start + acc * size]
        if len(data) != acc * size:
            raise SystemExit(f"tensor with shape {self.shape} runs past its storage (truncated file?)")
        return data

    def values(self):
        """The elements as a flat list of Python numbers (row-major)."""
        fmt, size, _ = STORAGE_DTYPES[self.storage.kind]
        data = self.contiguous_bytes()
        return list(struct.unpack(f"<{len(data) // size}{fmt}", data))


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    return Tensor(storage, offset, shape, stride)


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream):
        super().__init__(stream)
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name == "device":
            return str
        raise SystemExit(f"the checkpoint's pickle asks for {module}.{name}, which a state dict does not hold")

    def persistent_load(self, pid):
        # legacy: ('storage', storage_type, key, location, numel, view_metadata)
        # zip:    ('storage', storage_type, key, location, numel)
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise SystemExit(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if len(pid) > 5 and pid[5] is not None:
            raise SystemExit("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = Storage(storage_type.name, key, numel)
        return self.storages[key]


def _read_legacy(blob):
    stream = io.BytesIO(blob)
    magic = pickle.load(stream)
    if magic != LEGACY_MAGIC:
        raise SystemExit("not a torch.save file (neither a zip archive nor the legacy magic number)")
    pickle.load(stream)  # protocol version
    pickle.load(stream)  # sys info
    unpickler = _Unpickler(stream)
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


def _read_zip(blob):
    archive = zipfile.ZipFile(io.BytesIO(blob))
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise SystemExit(f"a zip checkpoint holds one */data.pkl; this one has {len(pickles)}")
    root = pickles[0][: -len("data.pkl")]
    unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])))
    result = unpickler.load()
    for key, storage in unpickler.storages.items():
        _, size, _ = STORAGE_DTYPES[storage.kind]
        storage.data = archive.read(f"{root}data/{key}")
        if len(storage.data) < storage.numel * size:
            raise SystemExit(f"storage {key} is truncated")
    return result


def load(blob):
    """The object torch.save wrote into `blob` (bytes), tensors as `Tensor`s."""
    if blob[:4] == b"PK\x03\x04":
        return _read_zip(blob)
    return _read_legacy(blob)


def write_safetensors(path, tensors, metadata):
    """`tensors`: name -> Tensor, written in name order with their own dtypes; atomic."""
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
