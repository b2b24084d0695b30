#!/usr/bin/python3
"""Independent safetensors reader/writer (struct + json + torch), to cross-check mmb's.

  safetensors_ref.py write PATH   writes fixed tensors with a hand-built header
  safetensors_ref.py read PATH    prints {"name": [dtype, shape, sum as float64]} as JSON
"""
import json
import struct
import sys

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
          "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


def fixed_tensors():
    g = torch.Generator().manual_seed(5)
    return {
        "w.f32": torch.randn(3, 4, generator=g),
        "w.bf16": torch.randn(5, generator=g).to(torch.bfloat16),
        "w.f16": torch.randn(2, 2, generator=g).to(torch.float16),
        "ids.i64": torch.arange(-3, 7, dtype=torch.int64),
        "mask.bool": torch.tensor([True, False, True]),
    }


def write(path):
    header, blobs, off = {"__metadata__": {"writer": "python"}}, [], 0
    for name, t in fixed_tensors().items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool \
            else t.to(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load(path):
    """All tensors of a file, as a dict name -> torch tensor (an independent reader)."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = bytearray(data[8 + n + b:8 + n + end])
        dt = DTYPES[e["dtype"]]
        if not buf:
            out[name] = torch.zeros(e["shape"], dtype=dt)
        elif dt == torch.bool:
            out[name] = torch.frombuffer(buf, dtype=torch.uint8).to(torch.bool).reshape(e["shape"])
        else:
            out[name] = torch.frombuffer(buf, dtype=dt).reshape(e["shape"])
    return out


def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool \
            else t.to(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = bytearray(data[base + b:base + end])
        dt = DTYPES[e["dtype"]]
        if dt == torch.bool:
            t = torch.frombuffer(buf, dtype=torch.uint8).to(torch.bool) if buf else torch.zeros(0, dtype=torch.bool)
        else:
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.zeros(0, dtype=dt)
        t = t.reshape(e["shape"])
        out[name] = [e["dtype"], list(e["shape"]), float(t.to(torch.float64).sum())]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    {"write": write, "read": read}[sys.argv[1]](sys.argv[2])
