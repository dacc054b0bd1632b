#!/usr/bin/python3
"""make_train_fixture.py - the PyTorch reference for tests/test_train_step.c.

One full training step (forward, loss, backward) of a ResNet-18 at width 1/16
(channels 4/8/16/32), batch 4, 64x64 input, with the `both` objective:
softmax cross-entropy over 5 classes + 0.5 * Siamese BCE on the pairs
(0,1), (2,3) with the head z = w . |fa - fb| + b.

With --supcon-style (tests/data/train/step_supcon_style.safetensors): the
features are the per-channel mean and population std of layer3's and
layer4's outputs (siamidx's style pooling, 96 values), and the loss is
softmax cross-entropy + CONTRAST_WEIGHT * the supervised contrastive loss
(Khosla et al. 2020, L_out) of the L2-normalised features at TEMPERATURE,
labels 1,1,0,0 (every row an anchor); the Siamese head is unused (its
gradient is zero).

Writes tests/data/train/step.safetensors:
  <name>           initial parameters and BN running stats (F16; the values are
                   rounded to fp16 before the step, so storing them is exact)
  grad.<name>      gradient of every parameter after the step (F32)
  after.<name>     running_mean / running_var after the step (F32)
  metadata: loss, ce, bce (repr of the float), labels, and how the input is made.

The input is not stored: both sides compute it from the formula in
input_batch() (exact in float32).

Run: /usr/bin/python3 tools/make_train_fixture.py [--supcon-style] [OUT]
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N, S, CLASSES, WIDTH, SIAMESE_WEIGHT = 4, 64, 5, 1.0 / 16, 0.5
LABELS = [1, 1, 0, 3]
CONTRAST_WEIGHT, TEMPERATURE, SUPCON_LABELS = 0.7, 0.2, [1, 1, 0, 0]
STYLE = False  # --supcon-style


def scaled(c):
    return max(1, int(c * WIDTH + 0.5))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + sc)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout and names, channels scaled by WIDTH."""

    def __init__(self):
        super().__init__()
        c0 = scaled(64)
        self.conv1 = nn.Conv2d(3, c0, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        cin = c0
        for s in range(4):
            cout = scaled(64 << s)
            blocks = [BasicBlock(cin, cout, 2 if s > 0 else 1), BasicBlock(cout, cout, 1)]
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
            cin = cout
        dim = 2 * (scaled(256) + scaled(512)) if STYLE else cin
        self.fc = nn.Linear(dim, CLASSES)
        self.siamese = nn.Linear(dim, 1)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        stats = []
        for s in range(4):
            x = getattr(self, "layer%d" % (s + 1))(x)
            if STYLE and s >= 2:
                # a flat plane (all zero after the ReLU) has std 0, where sqrt has
                # no gradient: siamidx gives it the mean's share only, as here
                var = x.var(dim=(2, 3), unbiased=False)
                sd = torch.where(var > 0, var.clamp_min(1e-30).sqrt(), torch.zeros_like(var))
                stats += [x.mean(dim=(2, 3)), sd]
        return torch.cat(stats, dim=1) if STYLE else x.mean(dim=(2, 3))


def supcon(feat, labels):
    """Mean over anchors of log sum_{a != i} e^{s_ia} - mean_{p in P(i)} s_ip."""
    z = F.normalize(feat, dim=1)
    s = z @ z.t() / TEMPERATURE
    eye = torch.eye(len(labels), dtype=torch.bool)
    s = s.masked_fill(eye, float("-inf"))
    logprob = s - torch.logsumexp(s, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    per = -(logprob.masked_fill(~pos, 0).sum(1)) / pos.sum(1)
    return per[pos.sum(1) > 0].mean()


def input_batch():
    """x[i] = (k - 1000) / 1000 with k = ((i * 1103515245 + 12345) mod 2^31 >> 8) mod 2001."""
    i = np.arange(N * 3 * S * S, dtype=np.uint64)
    v = (i * np.uint64(1103515245) + np.uint64(12345)) % np.uint64(1 << 31)
    k = ((v >> np.uint64(8)) % np.uint64(2001)).astype(np.int64)
    x = (k - 1000).astype(np.float32) / np.float32(1000)
    return torch.from_numpy(x.reshape(N, 3, S, S))


def main():
    global STYLE, LABELS
    args = sys.argv[1:]
    if args and args[0] == "--supcon-style":
        STYLE, LABELS, args = True, SUPCON_LABELS, args[1:]
    default = "step_supcon_style" if STYLE else "step"
    out = args[0] if args else "tests/data/train/%s.safetensors" % default
    torch.manual_seed(0)
    model = ResNet18()
    with torch.no_grad():  # non-trivial BN affine and statistics, fp16-exact
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if "bn" in name or "downsample.1" in name:
                if name.endswith("weight"):
                    t.uniform_(0.5, 1.5)
                elif name.endswith("bias") or name.endswith("running_mean"):
                    t.uniform_(-0.2, 0.2)
                elif name.endswith("running_var"):
                    t.uniform_(0.5, 2.0)
            t.copy_(t.half().float())
    initial = {k: v.clone() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked")}
    model.train()
    x = input_batch()
    labels = torch.tensor(LABELS)
    feat = model.features(x)
    ce = F.cross_entropy(model.fc(feat), labels)
    if STYLE:
        bce = supcon(feat, labels)  # stored as "con"
        loss = ce + CONTRAST_WEIGHT * bce
    else:
        fa, fb = feat[0::2], feat[1::2]
        z = model.siamese((fa - fb).abs()).squeeze(1)
        target = (labels[0::2] == labels[1::2]).float()
        bce = F.binary_cross_entropy_with_logits(z, target)
        loss = ce + SIAMESE_WEIGHT * bce
    loss.backward()

    tensors = []  # (name, dtype, array)
    for name, t in initial.items():
        tensors.append((name, "F16", t.numpy().astype(np.float16)))
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        tensors.append(("grad." + name, "F32", g.numpy().astype(np.float32)))
    for name, t in model.state_dict().items():
        if "running" in name:
            tensors.append(("after." + name, "F32", t.numpy().astype(np.float32)))
    meta = {"loss": repr(loss.item()), "ce": repr(ce.item()), "bce": repr(bce.item()),
            "labels": ",".join(map(str, LABELS)), "classes": str(CLASSES),
            "siamese_weight": str(SIAMESE_WEIGHT), "batch": str(N), "input": str(S),
            "arch": "resnet18", "width": "0.0625", "torch": torch.__version__,
            "input_formula": input_batch.__doc__}
    if STYLE:
        del meta["bce"], meta["siamese_weight"]
        meta.update({"con": repr(bce.item()), "objective": "supcon", "style_stages": "3,4",
                     "contrast_weight": str(CONTRAST_WEIGHT), "temperature": str(TEMPERATURE)})
    write_safetensors(out, meta, tensors)
    print("%s: loss %.6f (ce %.6f, bce %.6f), %d tensors" % (out, loss.item(), ce.item(),
                                                             bce.item(), len(tensors)))


def write_safetensors(path, meta, tensors):
    header, offset, blobs = {"__metadata__": meta}, 0, []
    for name, dtype, arr in tensors:
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
