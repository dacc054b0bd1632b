#!/usr/bin/python3
"""head_prototype.py - measure candidate Siamese heads before writing one in C.

Research script for libsiamidx/head/ (head.c, head_train.c) (see docs/evaluation.md). Two steps:

  features  frozen ImageNet ResNet-18 features (conv1..layer3, 256-d global
            average pool) for every painting of a collection, cached to a
            .npz outside the repository;
  compare   ROC AUC / accuracy of candidate heads on balanced pairs of
            seen artists (split by image) and unseen artists (whole artists
            held out), averaged over several seeds.

  /usr/bin/python3 tools/head_prototype.py features \
      --weights /work/shared/models/resnet18_imagenet_torchvision_bnfolded_partial/weights \
      --collection /work/shared/data/paintings --cache /tmp/siamidx_feats.npz
  /usr/bin/python3 tools/head_prototype.py compare --cache /tmp/siamidx_feats.npz

Only numpy/torch are needed; nothing from /work/shared is written into the repo.
"""
import argparse
import csv
import os
import sys

import numpy as np


# ---------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------

def load_partial_resnet18(weight_dir):
    import torch
    import torch.nn.functional as F

    def w(name):
        return torch.from_numpy(np.load(os.path.join(weight_dir, name + ".npy")))

    def conv(x, name, stride, pad):
        return F.conv2d(x, w(name + ".weight"), w(name + ".bias"), stride=stride, padding=pad)

    def block(x, name, stride, down):
        y = F.relu(conv(x, name + ".conv1", stride, 1))
        y = conv(y, name + ".conv2", 1, 1)
        sc = conv(x, name + ".downsample.0", stride, 0) if down else x
        return F.relu(y + sc)

    def forward(x):
        x = F.relu(conv(x, "conv1", 2, 3))
        x = F.max_pool2d(x, 3, 2, 1)
        x = block(x, "layer1.0", 1, False)
        x = block(x, "layer1.1", 1, False)
        x = block(x, "layer2.0", 2, True)
        x = block(x, "layer2.1", 1, False)
        x = block(x, "layer3.0", 2, True)
        x = block(x, "layer3.1", 1, False)
        return x.mean(dim=(2, 3))

    return forward


def cmd_features(args):
    import torch
    from PIL import Image
    import torchvision.transforms as T

    torch.set_num_threads(1)
    forward = load_partial_resnet18(args.weights)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with open(os.path.join(args.collection, "index.csv")) as f:
        rows = list(csv.DictReader(f))
    files = [r["filename"] for r in rows]
    artists = [r["artist"] for r in rows]
    feats = np.zeros((len(files), 256), np.float32)
    bs = 32
    with torch.no_grad():
        for i in range(0, len(files), bs):
            x = torch.stack([tf(Image.open(os.path.join(args.collection, p)).convert("RGB"))
                             for p in files[i:i + bs]])
            feats[i:i + bs] = forward(x).numpy()
            if i % 640 == 0:
                print(f"{i}/{len(files)}", file=sys.stderr, flush=True)
    np.savez(args.cache, feats=feats, files=np.array(files), artists=np.array(artists))
    print(f"wrote {args.cache}: {feats.shape}")


# ---------------------------------------------------------------------------
# pairs and splits
# ---------------------------------------------------------------------------

def balanced_pairs(labels, idx, n_pairs, rng):
    """Half same-artist, half different; artists drawn uniformly so the
    largest ones do not dominate, then images uniformly within the artist
    (every image can appear, none are discarded)."""
    by = {}
    for i in idx:
        by.setdefault(labels[i], []).append(i)
    arts = [a for a in by if len(by[a]) >= 2]
    allarts = list(by)
    pairs, y = [], []
    for k in range(n_pairs):
        if k % 2 == 0:
            a = arts[rng.integers(len(arts))]
            i, j = rng.choice(len(by[a]), 2, replace=False)
            pairs.append((by[a][i], by[a][j])); y.append(1)
        else:
            a, b = rng.choice(len(allarts), 2, replace=False)
            la, lb = by[allarts[a]], by[allarts[b]]
            pairs.append((la[rng.integers(len(la))], lb[rng.integers(len(lb))])); y.append(0)
    return np.array(pairs), np.array(y, np.float64)


def split(labels, n_holdout, val_frac, rng):
    arts = sorted(set(labels))
    held = set(rng.choice(arts, n_holdout, replace=False)) if n_holdout else set()
    seen = [i for i in range(len(labels)) if labels[i] not in held]
    unseen = [i for i in range(len(labels)) if labels[i] in held]
    seen = rng.permutation(seen)
    nv = int(len(seen) * val_frac)
    # val: model selection / calibration; test: reporting (seen artists)
    return seen[2 * nv:], seen[:nv], seen[nv:2 * nv], np.array(unseen)


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------

def auc(score, y):
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s)); r[order] = ranks
    npos = y.sum(); nneg = len(y) - npos
    return (r[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg)


def best_threshold(score, y):
    cand = np.unique(score)
    if len(cand) > 400:
        cand = np.quantile(score, np.linspace(0, 1, 401))
    accs = [((score >= t) == y).mean() for t in cand]
    k = int(np.argmax(accs))
    return cand[k]


# ---------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------

def sigmoid(z):
    return 1 / (1 + np.exp(-np.clip(z, -40, 40)))


def train_logistic(X, y, Xv, yv, l2, epochs=60, lr=0.01, hidden=0, seed=0):
    """Adam on BCE, mini-batches, early stopping on validation AUC."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    if hidden:
        W1 = rng.normal(0, 1 / np.sqrt(d), (d, hidden)); b1 = np.zeros(hidden)
        w = rng.normal(0, 1 / np.sqrt(hidden), hidden); b = 0.0
        params = [W1, b1, w, np.array([b])]
    else:
        params = [np.zeros(d), np.array([0.0])]
    m = [np.zeros_like(p) for p in params]; v = [np.zeros_like(p) for p in params]

    def fwd(Xb, ps):
        if hidden:
            h = np.maximum(Xb @ ps[0] + ps[1], 0)
            return h @ ps[2] + ps[3][0], h
        return Xb @ ps[0] + ps[1][0], None

    best, best_auc, t = [p.copy() for p in params], -1, 0
    bad = 0
    for ep in range(epochs):
        perm = rng.permutation(len(X))
        for s in range(0, len(X), 256):
            bi = perm[s:s + 256]
            Xb, yb = X[bi], y[bi]
            z, h = fwd(Xb, params)
            g = (sigmoid(z) - yb) / len(bi)
            if hidden:
                gw = h.T @ g + l2 * params[2]; gb = g.sum()
                gh = np.outer(g, params[2]) * (h > 0)
                grads = [Xb.T @ gh + l2 * params[0], gh.sum(0), gw, np.array([gb])]
            else:
                grads = [Xb.T @ g + l2 * params[0], np.array([g.sum()])]
            t += 1
            for p, gr, mm, vv in zip(params, grads, m, v):
                mm *= 0.9; mm += 0.1 * gr
                vv *= 0.999; vv += 0.001 * gr * gr
                p -= lr * (mm / (1 - 0.9 ** t)) / (np.sqrt(vv / (1 - 0.999 ** t)) + 1e-8)
        a = auc(fwd(Xv, params)[0], yv)
        if a > best_auc + 1e-4:
            best_auc, best, bad = a, [p.copy() for p in params], 0
        else:
            bad += 1
            if bad >= 8:
                break
    return lambda Xq: fwd(Xq, best)[0]


def l2n(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pair_features(E, P, kind):
    a, b = E[P[:, 0]], E[P[:, 1]]
    cos = (a * b).sum(1, keepdims=True)
    d = np.abs(a - b)
    parts = {"abs": [d], "abs+prod": [d, a * b], "sq": [d * d],
             "abs+cos": [d, cos], "sq+cos": [d * d, cos], "cos": [cos],
             "abs+sq+cos": [d, d * d, cos]}[kind]
    return np.hstack(parts)


def cmd_compare(args):
    z = np.load(args.cache)
    raw, labels = z["feats"].astype(np.float64), list(z["artists"])
    results = {}

    def add(name, part, val):
        results.setdefault((name, part), []).append(val)

    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        tr, va, te, un = split(labels, args.holdout, 0.15, rng)
        Ptr, ytr = balanced_pairs(labels, tr, args.train_pairs, rng)
        Pva, yva = balanced_pairs(labels, va, 6000, rng)
        Pte, yte = balanced_pairs(labels, te, 10000, rng)
        Pun, yun = balanced_pairs(labels, un, 10000, rng)
        # embeddings: as the encoder gives them (L2 of raw pool) and
        # standardised with statistics from the training images only
        E_l2 = l2n(raw)
        mu, sd = E_l2[tr].mean(0), E_l2[tr].std(0) + 1e-6
        E_std = l2n((E_l2 - mu) / sd)
        for ename, E in (("l2", E_l2), ("std", E_std)):
            cos = lambda P: (E[P[:, 0]] * E[P[:, 1]]).sum(1)
            t = best_threshold(cos(Pva), yva)
            add(f"cosine[{ename}]", "seen", auc(cos(Pte), yte))
            add(f"cosine[{ename}]", "unseen", auc(cos(Pun), yun))
            add(f"cosine[{ename}]", "acc_seen", ((cos(Pte) >= t) == yte).mean())
            add(f"cosine[{ename}]", "acc_unseen", ((cos(Pun) >= t) == yun).mean())
            for kind, l2, hidden in args.heads:
                Xtr = pair_features(E, Ptr, kind)
                Xva, Xte, Xun = (pair_features(E, P, kind) for P in (Pva, Pte, Pun))
                f = train_logistic(Xtr, ytr, Xva, yva, l2, hidden=hidden, seed=seed)
                name = f"{kind} l2={l2:g}{' h=%d' % hidden if hidden else ''} [{ename}]"
                s_te, s_un = f(Xte), f(Xun)
                t = best_threshold(f(Xva), yva)
                add(name, "seen", auc(s_te, yte)); add(name, "unseen", auc(s_un, yun))
                add(name, "acc_seen", ((s_te >= t) == yte).mean())
                add(name, "acc_unseen", ((s_un >= t) == yun).mean())
                if kind in ("abs", "sq") and not hidden:
                    # blend: head logit standardised + cosine standardised
                    c_va, c_te, c_un = cos(Pva), cos(Pte), cos(Pun)
                    h_va = f(Xva)
                    zs = lambda s, r: (s - r.mean()) / r.std()
                    bl = lambda h, c: zs(h, h_va) + zs(c, c_va)
                    add(name + " +blend", "seen", auc(bl(s_te, c_te), yte))
                    add(name + " +blend", "unseen", auc(bl(s_un, c_un), yun))
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    names = []
    for (n, _) in results:
        if n not in names:
            names.append(n)
    print(f"{'head':40s} {'AUC seen':>9s} {'AUC unseen':>10s} {'acc seen':>9s} {'acc unseen':>10s}")
    for n in names:
        row = [results.get((n, p)) for p in ("seen", "unseen", "acc_seen", "acc_unseen")]
        cells = [f"{np.mean(r):.4f}" if r else "-" for r in row]
        print(f"{n:40s} {cells[0]:>9s} {cells[1]:>10s} {cells[2]:>9s} {cells[3]:>10s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features")
    f.add_argument("--weights", required=True)
    f.add_argument("--collection", required=True)
    f.add_argument("--cache", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--cache", required=True)
    c.add_argument("--holdout", type=int, default=15)
    c.add_argument("--seeds", type=int, default=3)
    c.add_argument("--train-pairs", type=int, default=40000)
    args = ap.parse_args()
    if args.cmd == "features":
        cmd_features(args)
    else:
        args.heads = [("abs", 1e-4, 0), ("abs", 1e-2, 0), ("abs+prod", 1e-4, 0), ("sq", 1e-4, 0),
                      ("sq", 1e-2, 0), ("abs+cos", 1e-4, 0), ("sq+cos", 1e-4, 0),
                      ("abs+sq+cos", 1e-3, 0), ("abs", 1e-4, 32)]
        cmd_compare(args)


if __name__ == "__main__":
    main()
