#!/bin/bash
# test_crash_merge.sh - kill -9 at random moments of `siamidx merge` of 12
# shards: each shard is one transaction, so after a kill OUT holds exactly
# the shards (in command-line order) that committed -- a prefix of them --
# and verifies clean; a re-run adds the rest and the result equals a single
# build of the collection. Then the same with shards split into many small
# transactions (the MDB_TXN_FULL path): any count, still verify-clean and
# completed by a re-run. A test hook (SIAMIDX_TEST_MERGE_SLEEP_US) pauses
# after each record inside a shard's transaction so the kills can land
# there; the shard builds themselves are real.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/crash_merge.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$T"
python3 "$SRC/tools/make_test_bmps.py" col 6 30
TOTAL=180
N=12
images() { "$BIN" info -i "$1" 2>/dev/null | awk '/^images/ {print $2}'; }
"$BIN" build col -i clean.idx -m "$MODEL" --threads 2 --quiet > /dev/null 2>&1 || fail "clean build"
"$BIN" dump -i clean.idx > clean.tsv
shards=""
prefix=" 0 " # the image counts OUT may hold after a kill: sums of the first k shards
sum=0
for i in $(seq 0 $((N - 1))); do
    "$BIN" build col -i s$i.idx -m "$MODEL" --shard $i/$N --threads 2 --quiet > /dev/null 2>&1 ||
        fail "shard $i build"
    shards="$shards s$i.idx"
    sum=$((sum + $(images s$i.idx)))
    prefix="$prefix$sum "
done
[ $sum = $TOTAL ] || fail "shards hold $sum images"
same_as_clean() { # idx: the records of a single build (embeddings within 1e-6)
    "$BIN" dump -i "$1" > merged.tsv
    python3 - clean.tsv merged.tsv <<'PY'
import sys
def load(p):
    rows = {}
    for line in open(p):
        f = line.rstrip("\n").split("\t")
        rows[f[0]] = (f[1:4], [float(x) for x in f[4:]])
    return rows
a, b = load(sys.argv[1]), load(sys.argv[2])
assert len(a) == 180 and a.keys() == b.keys(), (len(a), len(b))
for k in a:
    assert a[k][0] == b[k][0], k
    assert max(abs(x - y) for x, y in zip(a[k][1], b[k][1])) <= 1e-6, k
PY
}
after_kill() { # what: OUT verifies clean
    "$BIN" verify -i m.idx > v 2>&1 || fail "$1: verify after kill -9: $(cat v)"
}

# One transaction per shard: a kill leaves a prefix of whole shards. The pause
# (3 ms a record, ~45 ms a shard, ~0.6 s in all) spreads the commits out;
# kills at random moments until three landed mid-merge (at most 20 rounds).
RANDOM=$$
landed=0 round=0
while [ $landed -lt 3 ] && [ $round -lt 20 ]; do
    round=$((round + 1))
    rm -rf m.idx
    # shellcheck disable=SC2086
    SIAMIDX_TEST_MERGE_SLEEP_US=3000 "$BIN" merge -i m.idx $shards --quiet > /dev/null 2>&1 &
    pid=$!
    sleep 0.$((RANDOM % 6 + 1))$((RANDOM % 10))
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    rc=$?
    n=$(images m.idx)
    echo "round $round: exit $rc, killed at ${n:-none} of $TOTAL images"
    [ -z "$n" ] && continue # killed before OUT existed
    case "$prefix" in *" $n "*) ;; *) fail "round $round: $n images is not a prefix of whole shards ($prefix)" ;; esac
    after_kill "round $round"
    [ $rc = 137 ] && [ "$n" -gt 0 ] && [ "$n" -lt $TOTAL ] && landed=$((landed + 1))
    # shellcheck disable=SC2086
    "$BIN" merge -i m.idx $shards --quiet > out 2>&1 || fail "round $round: rerun: $(cat out)"
    grep -q "added $((TOTAL - n)), replaced 0, unchanged $n," out || fail "round $round: rerun: $(cat out)"
    "$BIN" verify -i m.idx > v 2>&1 || fail "round $round: verify after rerun: $(cat v)"
    same_as_clean m.idx || fail "round $round: merged index differs from a single build"
done
echo "whole shards: $landed of $round kills landed mid-merge"
[ $landed -ge 1 ] || fail "no kill landed mid-merge"

# Shards split into transactions of a few records (write 13 of a transaction
# fails as MDB_TXN_FULL would): a kill may leave part of a shard.
landed=0
for round in 1 2 3 4; do
    rm -rf m.idx
    # shellcheck disable=SC2086
    SIAMIDX_TEST_TXN_PUTS=12 SIAMIDX_TEST_MERGE_SLEEP_US=3000 "$BIN" merge -i m.idx $shards --quiet > /dev/null 2>&1 &
    pid=$!
    sleep 0.$((RANDOM % 8 + 1))
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    n=$(images m.idx)
    echo "split round $round: killed at ${n:-none} of $TOTAL images"
    [ -z "$n" ] && continue
    [ "$n" -gt 0 ] && [ "$n" -lt $TOTAL ] && landed=$((landed + 1))
    after_kill "split round $round"
    # shellcheck disable=SC2086
    SIAMIDX_TEST_TXN_PUTS=12 "$BIN" merge -i m.idx $shards --quiet > out 2>&1 || fail "split round $round: rerun: $(cat out)"
    grep -q "added $((TOTAL - n))," out || fail "split round $round: rerun: $(cat out)"
    same_as_clean m.idx || fail "split round $round: merged index differs from a single build"
done
echo "split shards: $landed of 4 kills landed mid-merge"
[ $landed -ge 1 ] || fail "no kill landed mid-merge of split shards"
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
