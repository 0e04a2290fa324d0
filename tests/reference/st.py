"""Minimal safetensors reader/writer (no dependency on the `safetensors` package).

File layout:
  8 bytes   little-endian uint64 N (header length)
  N bytes   UTF-8 JSON header: {name: {"dtype", "shape", "data_offsets": [begin, end]},
                                "__metadata__": {str: str}}   (padded with spaces to a multiple of 8)
  data      tensor bytes; offsets are relative to the first byte after the header

Supported dtypes: F32, F16, BF16 (BF16 goes through torch's bfloat16 <-> int16 view).
"""
import json
import struct

import numpy as np
import torch

_TORCH_TO_ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
_ST_TO_TORCH = {v: k for k, v in _TORCH_TO_ST.items()}
_ST_SIZE = {"F32": 4, "F16": 2, "BF16": 2}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.float32:
        return t.numpy().astype("<f4", copy=False).tobytes()
    if t.dtype == torch.float16:
        return t.numpy().astype("<f2", copy=False).tobytes()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    raise ValueError(f"unsupported dtype {t.dtype}")


def save_file(tensors, path, metadata=None):
    """Write an ordered dict {name: torch tensor} to `path` (tensors laid out in insertion order)."""
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _TORCH_TO_ST:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        b = _tensor_bytes(t)
        header[name] = {
            "dtype": _TORCH_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (-len(hjson)) % 8
    hjson += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    return n, header


def load_file(path, upcast=False):
    """Read every tensor of `path` into {name: torch tensor} (file dtype, or float32 if upcast)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in _ST_SIZE:
            raise ValueError(f"{name}: unsupported dtype {dt}")
        b0, b1 = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if b1 - b0 != count * _ST_SIZE[dt]:
            raise ValueError(f"{name}: byte size mismatch")
        buf = raw[base + b0: base + b1]
        if dt == "F32":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<f4").copy())
        elif dt == "F16":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<f2").copy())
        else:
            t = torch.from_numpy(np.frombuffer(buf, dtype="<i2").copy()).view(torch.bfloat16)
        t = t.reshape(shape)
        out[name] = t.float() if upcast else t
    return out


def metadata(path):
    return read_header(path)[1].get("__metadata__", {})
