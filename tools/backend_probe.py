#!/usr/bin/env python3
"""Does a linear back end on the embeddings separate pairs better than the raw cosine?

    tools/backend_probe.py WORKDIR MODEL [--bin SIAMIDX] [--pairs N] [--seed S]

WORKDIR is a protocol directory (`tools/eval_protocol.sh --prepare-only WORKDIR
COLLECTION...`). Every image of WORKDIR/all.csv is embedded with MODEL (`siamidx
embed`, cached in WORKDIR/backend-<fingerprint>.npy). Each back end is fitted on
the embeddings of the encoder's own images (all.csv less seen_test.txt and the
unseen artists) and scored by the cosine of the transformed embeddings, on pairs
drawn as the protocol draws them (same-artist pairs round-robin over artists; each
negative pairs the first image with one by another artist of the same source, (a),
or the same source and top folder of source_path, (b)), for the held-out images
of the training artists ("seen") and the unseen artists.

Back ends: raw cosine; centred; PCA whitening; within-class whitening (the
inverse square root of the within-artist scatter, regularised by eps times its
largest eigenvalue); LDA to k dimensions. It measures an idea before it goes into
the library; `siamidx eval` (through the trained head) is the protocol's figure.
Needs numpy (Debian's python3-numpy).
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np


def read_protocol(work):
    rows = list(csv.DictReader(open(os.path.join(work, "all.csv"), encoding="utf-8")))

    def names(f):
        path = os.path.join(work, f)
        return {l.strip() for l in open(path, encoding="utf-8") if l.strip() and not l.startswith("#")}

    unseen, seen_test = names("unseen_artists.txt"), names("seen_test.txt")
    art = np.array([r["artist"] for r in rows])
    src = np.array([r.get("source_repo", "") for r in rows])
    style = np.array([r.get("source_repo", "") + "/" + r.get("source_path", "").split("/")[0] for r in rows])
    is_unseen = np.array([a in unseen for a in art])
    is_test = np.array([r["filename"] in seen_test for r in rows])
    return rows, art, src, style, is_unseen, is_test


def embed(rows, model, binary, cache):
    if os.path.exists(cache):
        return np.load(cache)
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(rows), 1000):  # argument lists stay short
            out = os.path.join(tmp, "part.npy")
            files = [r["filename"] for r in rows[i:i + 1000]]
            subprocess.run([binary, "embed", "-m", model, "--format", "npy", "-o", out] + files, check=True)
            parts.append(np.load(out))
    x = np.concatenate(parts)
    np.save(cache, x)
    return x


def auc(pos, neg):
    s = np.concatenate([pos, neg])
    order = np.argsort(s, kind="mergesort")
    rank = np.empty(len(s))
    rank[order] = np.arange(1, len(s) + 1)
    ordered = np.sort(s)
    for v in np.unique(ordered[1:][np.diff(ordered) == 0]):  # ties: their mean rank
        rank[s == v] = rank[s == v].mean()
    return (rank[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def draw_pairs(mask, art, src, style, n, seed):
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(mask)
    by_artist = {}
    for i in idx:
        by_artist.setdefault(art[i], []).append(i)
    artists = sorted(a for a in by_artist if len(by_artist[a]) >= 2)
    pos = np.array([rng.choice(by_artist[artists[k % len(artists)]], 2, replace=False) for k in range(n)])
    neg_a, neg_b = [], []
    for i, _ in pos:
        other = idx[art[idx] != art[i]]
        same_src = other[src[other] == src[i]]
        same_style = same_src[style[same_src] == style[i]]
        neg_a.append((i, rng.choice(same_src)))
        neg_b.append((i, rng.choice(same_style if len(same_style) else same_src)))
    return pos, np.array(neg_a), np.array(neg_b)


def unit(z):
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def back_ends(xt, yt):
    mu = xt.mean(0)
    means = {a: xt[yt == a].mean(0) for a in np.unique(yt)}
    resid = xt - np.array([means[a] for a in yt])
    sw = resid.T @ resid / len(resid)
    w_sw, v_sw = np.linalg.eigh(sw)
    w_all, v_all = np.linalg.eigh(np.cov((xt - mu).T))
    between = np.array(list(means.values())) - mu
    sb = between.T @ between / len(between)

    def whiten(w, v, eps):
        return lambda z: unit((z - mu) @ v / np.sqrt(w + eps * w.max()))

    def lda(k, eps=1e-3):
        w, v = np.linalg.eigh(sw + eps * np.trace(sw) / len(sw) * np.eye(len(sw)))
        wh = v / np.sqrt(w)
        _, u = np.linalg.eigh(wh.T @ sb @ wh)
        proj = wh @ u[:, ::-1][:, :k]
        return lambda z: unit((z - mu) @ proj)

    out = {"raw cosine": unit, "centred": lambda z: unit(z - mu), "PCA whitening": whiten(w_all, v_all, 1e-3)}
    for eps in (0.01, 0.05, 0.2):
        out[f"within-class whitening, eps {eps}"] = whiten(w_sw, v_sw, eps)
    for k in (64, 128):
        if k < xt.shape[1]:
            out[f"LDA to {k} dimensions"] = lda(k)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work")
    ap.add_argument("model")
    ap.add_argument("--bin", default=os.environ.get("SIAMIDX_BIN", "siamidx"))
    ap.add_argument("--pairs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rows, art, src, style, is_unseen, is_test = read_protocol(a.work)
    fp = subprocess.run([a.bin, "model-info", a.model], check=True, capture_output=True, text=True).stdout
    fp = next((l.split()[1] for l in fp.splitlines() if l.startswith("fingerprint:")), "model")[:16]
    x = embed(rows, a.model, a.bin, os.path.join(a.work, f"backend-{fp}.npy")).astype(np.float64)
    train = ~is_unseen & ~is_test
    print(f"{len(x)} images: fitted on {train.sum()}, seen test {is_test.sum()}, unseen {is_unseen.sum()}")
    pops = {"seen": is_test, "unseen": is_unseen}
    pairs = {p: draw_pairs(m, art, src, style, a.pairs, a.seed) for p, m in pops.items()}
    print("| back end | seen AUC (a) | seen AUC (b) | unseen AUC (a) | unseen AUC (b) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, f in back_ends(x[train], art[train]).items():
        z = f(x)
        cos = lambda p: np.sum(z[p[:, 0]] * z[p[:, 1]], axis=1)
        cells = []
        for p in pops:
            pos, neg_a, neg_b = pairs[p]
            cells += [auc(cos(pos), cos(neg_a)), auc(cos(pos), cos(neg_b))]
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
