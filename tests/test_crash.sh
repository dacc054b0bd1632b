#!/bin/bash
# test_crash.sh - kill -9 at random moments of a build, of train (the head
# written into the index) and of remove: each kill must land mid-operation
# (checked: for build, some records committed and fewer than all), after
# each the index verifies clean, and a rerun completes; the rebuilt index
# holds the same records (paths, artists, hashes, embeddings) as a clean one.
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
TOTAL=180
build() { "$BIN" build col -i "$1" -m "$MODEL" --threads 2 --batch 7 --quiet; }
images() { "$BIN" info -i "$1" 2>/dev/null | awk '/^images/ {print $2}'; }
same_as_clean() { # idx: same records as clean.idx
    "$BIN" dump -i "$1" > crashed.tsv
    python3 - clean.tsv crashed.tsv <<'PY'
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
}
after_kill() { # what idx: the index verifies clean
    "$BIN" verify -i "$2" > v 2>&1 || fail "$1: verify after kill -9: $(cat v)"
}

build clean.idx > /dev/null 2>&1 || fail "clean build"
"$BIN" dump -i clean.idx > clean.tsv

# build: kill once a random number of images (7..150) is committed, so the
# kill lands anywhere among embedding, commits and snapshot writing.
RANDOM=$$
for round in 1 2 3 4 5 6; do
    rm -rf b.idx
    "$BIN" build col -i b.idx -m "$MODEL" --threads 2 --batch 7 --quiet > /dev/null 2>&1 &
    pid=$! # the siamidx process itself, not a subshell
    want=$((RANDOM % 144 + 7))
    for _ in $(seq 400); do
        n=$(images b.idx)
        [ "${n:-0}" -ge $want ] && break
        sleep 0.02
    done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    n=$(images b.idx)
    echo "build round $round: killed at ${n:-0} of $TOTAL images"
    [ "${n:-0}" -gt 0 ] && [ "$n" -lt $TOTAL ] || fail "build round $round: the kill did not land mid-build ($n)"
    after_kill "build round $round" b.idx
    build b.idx > out 2>&1 || fail "build round $round: rerun: $(cat out)"
    grep -q "indexed $((TOTAL - n)), unchanged $n" out || fail "build round $round: rerun: $(cat out)"
    same_as_clean b.idx || fail "build round $round: index differs from a clean build"
done
build b.idx > out 2>&1
grep -q "indexed 0, unchanged $TOTAL" out || fail "a build after the reruns is not a no-op: $(cat out)"

# train: the head is written into the index at the end of a training run.
# On idle cores a train of this index takes only ~0.05 s, so kills at random
# moments up to 0.05 s are tried until two have landed (at most 20 rounds); a
# run the kill missed must have finished cleanly.
landed=0 round=0
while [ $landed -lt 2 ] && [ $round -lt 20 ]; do
    round=$((round + 1))
    "$BIN" train -i b.idx --epochs 200 --seed $round > /dev/null 2>&1 &
    pid=$!
    sleep 0.0$((RANDOM % 5 + 1))
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    rc=$?
    if [ $rc = 137 ]; then landed=$((landed + 1)); else [ $rc = 0 ] || fail "train round $round: exit $rc"; fi
    after_kill "train round $round" b.idx
done
echo "train: $landed of $round kills landed mid-train"
[ $landed -ge 1 ] || fail "no kill landed during train"
"$BIN" train -i b.idx --epochs 5 > out 2>&1 || fail "train rerun: $(cat out)"
"$BIN" verify -i b.idx > v 2>&1 || fail "verify after train: $(cat v)"

# remove: 150 paths, one small transaction each (the test hook), killed at a
# random moment; a rerun removes the rest. How long the start-up takes
# varies with the machine's load (and the CLI may re-execute itself once for
# OpenBLAS's kernels, cli/main.c), so the window of the random moment grows
# with the round until a kill has landed (at least 3 rounds, at most 12).
paths=$(for a in 1 2 3 4 5; do for i in $(seq 0 29); do echo col/artist_$a/img_$i.bmp; done; done)
landed=0 round=0
while [ $round -lt 3 ] || { [ $landed -lt 1 ] && [ $round -lt 12 ]; }; do
    round=$((round + 1))
    SIAMIDX_TEST_TXN_PUTS=8 "$BIN" remove -i b.idx $paths > /dev/null 2>&1 &
    pid=$!
    sleep "$(awk -v r=$RANDOM -v k=$round 'BEGIN { printf "%.3f", 0.01 + (r % 1000) / 1000 * 0.03 * k }')"
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    n=$(images b.idx)
    echo "remove round $round: killed at ${n:-?} images left"
    [ "${n:-0}" -gt 30 ] && [ "$n" -lt $TOTAL ] && landed=$((landed + 1))
    after_kill "remove round $round" b.idx
    "$BIN" remove -i b.idx $paths > out 2>&1
    [ "$(images b.idx)" = 30 ] || fail "remove round $round: rerun left $(images b.idx): $(cat out)"
    "$BIN" verify -i b.idx > v 2>&1 || fail "remove round $round: verify after rerun: $(cat v)"
    build b.idx > out 2>&1 || fail "remove round $round: rebuild: $(cat out)"
done
echo "remove: $landed of $round kills landed mid-remove"
[ $landed -ge 1 ] || fail "no kill landed during remove"
same_as_clean b.idx || fail "index differs from a clean build after the remove rounds"
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
