#!/usr/bin/env python3
"""Writes a copy of a siamidx model file with some metadata changed.

    tools/set_model_metadata.py IN.safetensors OUT.safetensors [--drop-head] KEY=VALUE...

For example, the same trained encoder read out with style pooling (the
per-channel mean and std of layer3 and layer4):

    tools/set_model_metadata.py m.safetensors m-style.safetensors --drop-head \\
        pooling=style style_stages=3,4 embedding_dim=768

KEY= (empty value) removes the key. --drop-head removes the default head
(head.* tensors and metadata), which was fitted on the old embedding and no
longer fits a new pooling. The tensors are copied byte for byte; the file is
written to OUT.tmp and renamed. Plain python3, no dependencies.
"""
import json
import os
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        sys.exit(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        sys.exit(f"{path}: not a safetensors file (header length {n})")
    header = json.loads(blob[8:8 + n])
    return header, blob[8 + n:]


def write(path, header, tensors):
    meta = header.pop("__metadata__", {})
    out_header, data, offset = {"__metadata__": meta}, [], 0
    for name in sorted(tensors, key=lambda t: header[t]["data_offsets"][0]):
        info, raw = header[name], tensors[name]
        out_header[name] = {"dtype": info["dtype"], "shape": info["shape"],
                            "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(data))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv):
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        sys.exit(__doc__)
    src, dst, rest = argv[0], argv[1], argv[2:]
    drop_head = "--drop-head" in rest
    header, data = read(src)
    meta = dict(header.get("__metadata__", {}))
    for kv in (a for a in rest if a != "--drop-head"):
        key, sep, value = kv.partition("=")
        if not sep or not key:
            sys.exit(f"set_model_metadata.py: expected KEY=VALUE, got {kv!r}")
        if value:
            meta[key] = value
        else:
            meta.pop(key, None)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or (drop_head and name.startswith("head.")):
            continue
        a, b = info["data_offsets"]
        tensors[name] = data[a:b]
    if drop_head:
        meta = {k: v for k, v in meta.items() if not k.startswith("head.")}
    header["__metadata__"] = meta
    write(dst, header, tensors)


if __name__ == "__main__":
    main(sys.argv[1:])
