#!/usr/bin/python3
"""torch_reference.py - run a siamidx model file through torchvision (development checks).

  torch_reference.py run MODEL.safetensors --n 2 --height 96 --width 128 --seed 5 DIR
      writes DIR/input.npy [n, 3, h, w], DIR/pooled.npy, DIR/logits.npy (when fc)
  torch_reference.py compare GOT.npy WANT.npy
      exits 1 unless max |got - want| < 1e-4 * max |want|

The safetensors file is decoded here with numpy (not with libsiamidx), so the
two sides share nothing but the file. Used by tests/test_converter.sh.
"""
import json
import os
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        raw = data[base + t["data_offsets"][0]:base + t["data_offsets"][1]]
        if t["dtype"] == "F32":
            arr = np.frombuffer(raw, "<f4")
        elif t["dtype"] == "F16":
            arr = np.frombuffer(raw, "<f2").astype(np.float32)
        else:  # BF16: the upper half of a float32
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr.reshape(t["shape"]).copy()
    return tensors, meta


def torchvision_model(path):
    import torch
    import torchvision
    tensors, meta = read_safetensors(path)
    classes = tensors["fc.weight"].shape[0] if "fc.weight" in tensors else 1000
    model = getattr(torchvision.models, meta["arch"])(weights=None, num_classes=classes)
    state = model.state_dict()
    for name in state:
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("fc.") and "fc.weight" not in tensors:
            continue
        state[name] = torch.from_numpy(tensors[name])
    model.load_state_dict(state)
    return model.eval(), "fc.weight" in tensors


def run(path, n, h, w, seed, out_dir):
    import torch
    model, has_fc = torchvision_model(path)
    x = np.random.default_rng(seed).uniform(-2, 2, (n, 3, h, w)).astype(np.float32)
    np.save(os.path.join(out_dir, "input.npy"), x)
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        pooled = torch.flatten(trunk(torch.from_numpy(x)), 1)
        np.save(os.path.join(out_dir, "pooled.npy"), pooled.numpy())
        if has_fc:
            np.save(os.path.join(out_dir, "logits.npy"), model.fc(pooled).numpy())


def compare(got_path, want_path):
    got, want = np.load(got_path), np.load(want_path)
    if got.shape != want.shape:
        print(f"shape {got.shape} != {want.shape}")
        return 1
    diff = float(np.abs(got.astype(np.float64) - want).max())
    limit = 1e-4 * float(np.abs(want).max())
    print(f"{os.path.basename(want_path)}: max |diff| {diff:.3g} (limit {limit:.3g})")
    return 0 if diff < limit else 1


def main(argv):
    if len(argv) >= 2 and argv[0] == "run":
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("model")
        p.add_argument("out_dir")
        p.add_argument("--n", type=int, default=2)
        p.add_argument("--height", type=int, default=96)
        p.add_argument("--width", type=int, default=128)
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(argv[1:])
        run(a.model, a.n, a.height, a.width, a.seed, a.out_dir)
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
