#!/usr/bin/python3
"""train_peer.py - PyTorch's training images/s for bench/train.sh.

The same network as `siamidx train-encoder` (torchvision ResNet layout,
channels scaled by --width, BasicBlock or Bottleneck), AdamW, softmax
cross-entropy with label smoothing 0.1, batch of random inputs already in
memory. Prints the median images/s over the timed steps.

usage: train_peer.py ARCH WIDTH BATCH INPUT THREADS [STEPS] [CLASSES]
"""
import statistics
import sys
import time

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


def main():
    arch, width, batch, size, threads = (sys.argv[1], float(sys.argv[2]), int(sys.argv[3]),
                                         int(sys.argv[4]), int(sys.argv[5]))
    steps = int(sys.argv[6]) if len(sys.argv) > 6 else 20
    classes = int(sys.argv[7]) if len(sys.argv) > 7 else 89
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = make_net(arch, width, classes).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))
    rates = []
    for step in range(steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        if step >= 3:  # warm-up steps excluded
            rates.append(batch / (time.perf_counter() - t0))
    print("%.2f" % statistics.median(rates))


if __name__ == "__main__":
    main()
