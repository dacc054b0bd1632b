"""resnet_fixture.py - ResNet tensor layout and a portable deterministic weight generator.

tests/fixture_model.h implements exactly the same generator in C, so a test can
rebuild, bit for bit, the weights that tools/make_fixtures.py fed to torchvision
without committing them:

  per tensor  seed = FNV-1a-64(name) ^ global_seed
  value i     x = splitmix64 output number i+1 started from seed
              u = (x >> 40) * 2^-24             (exact, in [0, 1))
              v = float32(lo + (hi - lo) * u)   (double arithmetic, one rounding)
  ranges      conv / fc weights (ndim >= 2): +-sqrt(3 / fan_in)
              1-d *.weight and *.running_var: [0.5, 1.5]  (BatchNorm scale)
              other 1-d tensors (bias, running_mean): [-0.1, 0.1]
  inputs      image j of an h x w batch: tensor "input.{h}x{w}.{j}" in [-2, 2]

Only numpy is needed here.
"""
import math

import numpy as np

ARCHS = {  # name: (bottleneck, blocks per stage)
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
    "resnet101": (True, (3, 4, 23, 3)),
    "resnet152": (True, (3, 8, 36, 3)),
}

FIXTURE_SEED = 2024
MASK64 = (1 << 64) - 1


def _bn(prefix, c, folded):
    if folded:
        return []
    return [(f"{prefix}.{f}", (c,)) for f in ("weight", "bias", "running_mean", "running_var")]


def _conv(name, cout, cin, k, folded):
    shapes = [(f"{name}.weight", (cout, cin, k, k))]
    if folded:
        shapes.append((f"{name}.bias", (cout,)))
    return shapes


def state_dict_shapes(arch, width=64, num_classes=1000, stages=4, fc=True, folded=False):
    """(name, shape) in torchvision state_dict order, num_batches_tracked left out.

    width: channels of the stem (64 in torchvision); stage s has width * 2^(s-1)
    planes. folded: BatchNorm already folded into conv biases (no bn tensors).
    """
    bottleneck, blocks = ARCHS[arch]
    exp = 4 if bottleneck else 1
    out = _conv("conv1", width, 3, 7, folded) + _bn("bn1", width, folded)
    cin = width
    for s in range(1, stages + 1):
        planes = width << (s - 1)
        for b in range(blocks[s - 1]):
            p = f"layer{s}.{b}"
            stride = 2 if s > 1 and b == 0 else 1
            if bottleneck:
                convs = [(cin, planes, 1), (planes, planes, 3), (planes, planes * exp, 1)]
            else:
                convs = [(cin, planes, 3), (planes, planes, 3)]
            for k, (ci, co, ks) in enumerate(convs, 1):
                out += _conv(f"{p}.conv{k}", co, ci, ks, folded) + _bn(f"{p}.bn{k}", co, folded)
            if stride != 1 or cin != planes * exp:
                out += _conv(f"{p}.downsample.0", planes * exp, cin, 1, folded)
                out += _bn(f"{p}.downsample.1", planes * exp, folded)
            cin = planes * exp
    if fc and stages == 4:
        out += [("fc.weight", (num_classes, cin)), ("fc.bias", (num_classes,))]
    return out


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def uniform01(seed, n):
    """n exact uniforms in [0, 1) from splitmix64 started at `seed`."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed & MASK64) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(
            0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) * (2.0 ** -24)


def uniform(name, seed, n, lo, hi):
    u = uniform01(fnv1a64(name) ^ seed, n)
    return (lo + (hi - lo) * u).astype(np.float32)


def tensor_range(name, shape):
    if len(shape) >= 2:
        a = math.sqrt(3.0 / int(np.prod(shape[1:])))
        return -a, a
    if name.endswith(".weight") or name.endswith(".running_var"):
        return 0.5, 1.5
    return -0.1, 0.1


def generate(shapes, seed):
    """[(name, float32 array)] for a list of (name, shape)."""
    out = []
    for name, shape in shapes:
        lo, hi = tensor_range(name, shape)
        n = int(np.prod(shape))
        out.append((name, uniform(name, seed, n, lo, hi).reshape(shape)))
    return out


def make_input(n, h, w, seed):
    """[n, 3, h, w] float32 in [-2, 2]; image j does not depend on n."""
    imgs = [uniform(f"input.{h}x{w}.{j}", seed, 3 * h * w, -2.0, 2.0) for j in range(n)]
    return np.stack(imgs).reshape(n, 3, h, w)
