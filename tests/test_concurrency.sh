#!/bin/bash
# test_concurrency.sh - readers during a build see committed data; a second
# writer gets the lock error, or waits with --wait; nothing is corrupted.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/concurrency.XXXXXX" 2>/dev/null || mktemp -d)
trap 'kill $builder 2>/dev/null; rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$T"
python3 "$SRC/tools/make_test_bmps.py" col 6 30
export SIAMIDX_INDEX=$T/c.idx
# A first small batch so that there is something to query early.
"$BIN" add col/artist_0/img_0.bmp col/artist_0/img_1.bmp --artist artist_0 -m "$MODEL" > /dev/null ||
    fail "seed add"

"$BIN" build col -m "$MODEL" --threads 1 --batch 5 --quiet > build.out 2>&1 &
builder=$!
queries=0 locked=0 verified=0
while kill -0 $builder 2>/dev/null; do
    # A query during the build: results only from committed records.
    if "$BIN" query col/artist_3/img_7.bmp -m "$MODEL" -k 50 --json > q.json 2> q.err; then
        queries=$((queries + 1))
        n_before=$(python3 -c "import json; print(len(json.load(open('q.json'))['neighbors']))")
        [ "$n_before" -ge 1 ] || fail "query returned nothing"
    else
        fail "query during build: $(cat q.err)"
    fi
    if "$BIN" verify > v 2>&1; then verified=$((verified + 1)); else fail "verify during build: $(cat v)"; fi
    # A second writer is refused with a clear message.
    "$BIN" build col -m "$MODEL" --quiet > /dev/null 2> l.err
    rc=$?
    if kill -0 $builder 2>/dev/null || [ $rc = 1 ]; then
        if [ $rc = 1 ] && grep -q "being written by process $builder" l.err; then locked=$((locked + 1)); fi
    fi
done
wait $builder || fail "build: $(cat build.out)"
echo "during the build: $queries queries, $verified verifies, $locked lock refusals"
[ $queries -ge 1 ] || fail "no query ran during the build"
[ $locked -ge 1 ] || fail "the second writer was never refused"

# --wait: two writers at once both finish, one after the other.
"$BIN" remove --artist artist_5 > /dev/null || fail "remove"
"$BIN" build col -m "$MODEL" --batch 5 --quiet --wait > w1.out 2>&1 &
w1=$!
sleep 0.3
"$BIN" build col -m "$MODEL" --batch 5 --quiet --wait > w2.out 2>&1 || fail "waiting writer: $(cat w2.out)"
wait $w1 || fail "first writer: $(cat w1.out)"
cat w1.out w2.out | grep -q "indexed 30," || fail "artist_5 not re-indexed: $(cat w1.out w2.out)"
"$BIN" verify > v || fail "final verify: $(cat v)"
[ "$("$BIN" info | awk '/^images/ {print $2}')" = 180 ] || fail "final image count"
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
