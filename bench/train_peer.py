#!/usr/bin/python3
"""train_peer.py - the PyTorch side of bench/train.sh: what `siamidx train-encoder` does, in PyTorch.

The same network (torchvision's ResNet layout, channels scaled by --width,
BasicBlock or Bottleneck), AdamW (lr 1e-3, weight decay 0.05), softmax
cross-entropy with label smoothing 0.1, --steps steps of --batch images, then
exit: bench/train.sh times whole processes and subtracts a short run.

With --data COLLECTION (a folder of artist folders of images, as
train-encoder reads it) the batches come from the real files through a
torch DataLoader (--workers worker processes, default 1: train-encoder has
one producer thread): each image decoded by PIL, brought to a shorter side of
at most max(224, --input) (Pillow's bicubic filter), enlarged just enough if
smaller than the crop, a random --input x --input crop and a horizontal flip,
ImageNet normalisation; images drawn with weight count(artist)^-0.5, as
train-encoder's balanced sampling. train-encoder keeps the decoded images in
a cache; over the few hundred images of a benchmark run nearly every draw is
a first decode on both sides. Without --data: one random batch kept in
memory and reused (no data loading at all).

usage: train_peer.py --arch resnet18 --width 0.5 --batch 32 --input 128 --steps 28 [--data DIR]
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def scaled(c, width):
    return max(1, int(c * width + 0.5))


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (self.down(x) if self.down is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.down(x) if self.down is not None else x))


LAYOUT = {"resnet18": (Basic, [2, 2, 2, 2]), "resnet34": (Basic, [3, 4, 6, 3]),
          "resnet50": (Bottleneck, [3, 4, 6, 3])}


def make_net(arch, width, classes):
    block, counts = LAYOUT[arch]
    c0 = scaled(64, width)
    layers = [nn.Conv2d(3, c0, 7, 2, 3, bias=False), nn.BatchNorm2d(c0), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    cin = c0
    for s, n in enumerate(counts):
        planes = scaled(64 << s, width)
        for j in range(n):
            layers.append(block(cin, planes, 2 if (j == 0 and s > 0) else 1))
            cin = planes * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class Collection(torch.utils.data.Dataset):
    """Images of a folder of artist folders, train-encoder's crop and flip."""

    def __init__(self, root, crop, resize=224):
        self.items, self.artists = [], sorted(
            d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        for label, artist in enumerate(self.artists):
            d = os.path.join(root, artist)
            self.items += [(os.path.join(d, f), label) for f in sorted(os.listdir(d))
                           if f.lower().endswith(IMAGE_EXT)]
        self.crop, self.scale = crop, max(resize, crop)

    def __len__(self):
        return len(self.items)

    def sample_weights(self):  # count(artist)^-0.5 per image
        counts = [0] * len(self.artists)
        for _, label in self.items:
            counts[label] += 1
        return [counts[label] ** -0.5 for _, label in self.items]

    def __getitem__(self, i):
        import torchvision.transforms.functional as TF
        from PIL import Image
        path, label = self.items[i]
        im = Image.open(path).convert("RGB")
        short = min(im.size)
        if short > self.scale or short < self.crop:  # to the training scale / just enough
            target = self.scale if short > self.scale else self.crop
            im = im.resize((max(target, round(im.size[0] * target / short)),
                            max(target, round(im.size[1] * target / short))), Image.BICUBIC)
        x0 = int(torch.randint(0, im.size[0] - self.crop + 1, ()))
        y0 = int(torch.randint(0, im.size[1] - self.crop + 1, ()))
        im = im.crop((x0, y0, x0 + self.crop, y0 + self.crop))
        if torch.rand(()) < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        x = TF.normalize(TF.to_tensor(im), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        return x, label


def batches_from(args):
    """An endless iterator of (x, y) batches."""
    if not args.data:
        x = torch.randn(args.batch, 3, args.input, args.input)
        y = torch.randint(0, 89, (args.batch,))
        while True:
            yield x, y
    ds = Collection(args.data, args.input)
    sampler = torch.utils.data.WeightedRandomSampler(ds.sample_weights(), args.batch * args.steps)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, sampler=sampler, drop_last=True,
                                         num_workers=args.workers)
    yield from loader


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=sorted(LAYOUT))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--data", help="collection folder (else one in-memory batch)")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    classes = len(Collection(args.data, args.input).artists) if args.data else 89
    net = make_net(args.arch, args.width, classes).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    batches = batches_from(args)
    for step in range(args.steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
    print(f"steps {args.steps} loss {loss.item():.4f}")


if __name__ == "__main__":
    sys.exit(main())
