#!/usr/bin/python3
"""make_head_fixture.py - a test model that carries a default Siamese head.

Copies tests/data/model/tiny_resnet18.safetensors (random weights) and adds
the tensors libsiamidx/head/head.c reads from a model file:
  head.mean [D], head.std [D], head.w [D + 1] (features "sq,cos"),
  head.params [bias, platt_a, platt_b, threshold, attr_scale, attr_unknown]
and the metadata key head.features. The weights are chosen by hand, not
trained: a squared difference lowers the logit and the cosine raises it, so
an image paired with itself is "same artist" with P ~ 0.98.

  /usr/bin/python3 tools/make_head_fixture.py
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "tests", "data", "model", "tiny_resnet18.safetensors")
DST = os.path.join(HERE, "..", "tests", "data", "model", "tiny_resnet18_head.safetensors")


def main():
    with open(SRC, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dim = int(meta["embedding_dim"])
    extra = {
        "head.mean": np.zeros(dim, np.float32),
        "head.std": np.ones(dim, np.float32),
        "head.w": np.concatenate([-np.ones(dim, np.float32), [1.0]]).astype(np.float32),
        "head.params": np.array([0.0, 1.0, 0.0, 0.5, 1.0, 0.0], np.float32),
    }
    blob = bytearray(data)
    for name, arr in extra.items():
        begin = len(blob)
        blob += arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [begin, len(blob)]}
    meta["head.features"] = "sq,cos"
    out = {"__metadata__": dict(sorted(meta.items()))}
    out.update(header)
    h = json.dumps(out, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(DST, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(blob)
    print(f"wrote {DST} ({8 + len(h) + len(blob)} bytes)")


if __name__ == "__main__":
    main()
