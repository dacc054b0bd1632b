#!/usr/bin/python3
"""encoder_peer.py - the PyTorch side of bench/encoder.sh.

  encoder_peer.py run --arch resnet50 --seed 1 --batch 16 --input x.npy [--check c.npy]
      the same net over every image of x.npy in batches of --batch, then exits:
      what `siamidx embed --tensor x.npy --batch B` does, for whole-process
      timing (bench/encoder.sh subtracts a short run); with --check, prints the
      largest difference of the first batch from siamidx's pooled output c.npy.
  encoder_peer.py write-input --n 32 -o x.npy
  encoder_peer.py embed --arch resnet50 --seed 1 --batch 16 IMAGE...
      what `siamidx embed` does, in PyTorch (for the peak-memory comparison).
  encoder_peer.py sgemm [--iters 10]
      GFLOP/s of a 2048^3 float32 matmul in numpy (OpenBLAS, OPENBLAS_NUM_THREADS
      threads, the kernels of OPENBLAS_CORETYPE), the GEMM peak.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))


def build_model(arch, seed):
    import torch
    import torchvision
    import resnet_fixture as rf
    model = getattr(torchvision.models, arch)()
    shapes = rf.state_dict_shapes(arch, 64, 1000, 4, True)
    state = {name: torch.from_numpy(arr) for name, arr in rf.generate(shapes, seed)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"encoder_peer: weights do not match {arch}: {missing[:3]} {unexpected[:3]}")
    return model.eval()


def cmd_run(args):
    import torch
    torch.set_num_threads(args.threads)
    model = build_model(args.arch, args.seed)
    model.fc = torch.nn.Identity()
    x = torch.from_numpy(np.load(args.input))
    b = args.batch
    with torch.no_grad():
        for i in range(0, len(x), b):
            y = model(x[i:i + b])
            if i == 0 and args.check:
                c = np.load(args.check)[:len(y)]
                print(f"max_abs_diff {float(np.abs(c - y.numpy()).max()):.3g}")


def cmd_write_input(args):
    import resnet_fixture as rf
    np.save(args.output, rf.make_input(args.n, args.size, args.size, 7))


def cmd_embed(args):
    import torch
    import torchvision.transforms as T
    from PIL import Image
    torch.set_num_threads(args.threads)
    model = build_model(args.arch, args.seed)
    model.fc = torch.nn.Identity()
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    out = []
    with torch.no_grad():
        for i in range(0, len(args.images), args.batch):
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p in args.images[i:i + args.batch]])
            out.append(torch.nn.functional.normalize(model(x)))
    print(f"embedded {sum(len(o) for o in out)} images")


def cmd_sgemm(args):
    n = 2048
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    t0 = time.perf_counter()
    for _ in range(args.iters):
        a @ a
    print(f"sgemm_gflops {2.0 * n ** 3 * args.iters / (time.perf_counter() - t0) / 1e9:.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--arch", required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--batch", type=int, required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--check")
    r.add_argument("--threads", type=int, default=2)
    w = sub.add_parser("write-input")
    w.add_argument("--n", type=int, required=True)
    w.add_argument("--size", type=int, default=224)
    w.add_argument("-o", "--output", required=True)
    e = sub.add_parser("embed")
    e.add_argument("--arch", required=True)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--batch", type=int, default=16)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("images", nargs="+")
    g = sub.add_parser("sgemm")
    g.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    {"run": cmd_run, "write-input": cmd_write_input, "embed": cmd_embed,
     "sgemm": cmd_sgemm}[args.cmd](args)


if __name__ == "__main__":
    main()
