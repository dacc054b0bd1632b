#!/bin/bash
# test_crash.sh - kill -9 a build at random moments: after each kill the index
# verifies and a rerun completes; the final index holds the same records
# (paths, artists, hashes, embeddings) as a clean build.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/crash.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$T"
python3 "$SRC/tools/make_test_bmps.py" col 6 30
build() { "$BIN" build col -i "$1" -m "$MODEL" --threads 2 --batch 7 --quiet; }

build clean.idx > /dev/null 2>&1 || fail "clean build"
"$BIN" dump -i clean.idx > clean.tsv

RANDOM=$$
for round in 1 2 3 4 5 6; do
    "$BIN" build col -i crashed.idx -m "$MODEL" --threads 2 --batch 7 --quiet > /dev/null 2>&1 &
    pid=$! # the siamidx process itself, not a subshell
    d=$((RANDOM % 25 + 5)) # 0.5 to 2.9 s: model load, embedding, commits, snapshot
    sleep "$((d / 10)).$((d % 10))"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    [ -d crashed.idx ] || continue
    "$BIN" verify -i crashed.idx > v 2>&1 || fail "round $round: verify after kill -9: $(cat v)"
    n=$("$BIN" info -i crashed.idx 2>/dev/null | awk '/^images/ {print $2}')
    echo "round $round: killed with ${n:-0} images committed"
done
build crashed.idx > out 2>&1 || fail "rerun after crashes: $(cat out)"
"$BIN" verify -i crashed.idx > v 2>&1 || fail "final verify: $(cat v)"
build crashed.idx > out 2>&1
grep -q "indexed 0, unchanged 180" out || fail "third build not a no-op: $(cat out)"
"$BIN" dump -i crashed.idx > crashed.tsv
python3 - clean.tsv crashed.tsv <<'PY' || fail "crashed index differs from a clean build"
import sys
def load(p):
    rows = {}
    for line in open(p):
        f = line.rstrip("\n").split("\t")
        rows[f[0]] = (f[1], f[2], f[3], [float(x) for x in f[4:]])
    return rows
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == 180, len(a)
assert a.keys() == b.keys(), "paths differ"
for k in a:
    assert a[k][:3] == b[k][:3], k
    assert len(a[k][3]) == len(b[k][3]) and all(abs(x - y) < 1e-4 for x, y in zip(a[k][3], b[k][3])), k
PY
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
