#!/bin/bash
# test_build_signal.sh - SIGINT and SIGTERM during a build: it stops after the
# batch in progress with exit 130, the batches done are committed, the FAISS
# snapshot of that state is saved (the next open loads it, no rebuild), the
# index verifies, and a rerun indexes exactly the rest.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/signal.XXXXXX" 2>/dev/null || mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT
pid=
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$T"
python3 "$SRC/tools/make_test_bmps.py" col 6 30
images() { "$BIN" info -i "$1" 2>/dev/null | awk '/^images/ {print $2}'; }
generation() { "$BIN" info -i "$1" 2>/dev/null | awk '/^generation/ {print $2}'; }

for sig in INT TERM; do
    idx=$sig.idx
    # A background job of a script starts with SIGINT ignored (and siamidx keeps
    # an ignored signal ignored): restore the default, then exec siamidx.
    python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
        "$BIN" build col -i $idx -m "$MODEL" --threads 1 --batch 5 --quiet > out 2> err &
    pid=$! # becomes the siamidx process itself (exec)
    # Signal once a few batches are in, long before the 180th image.
    for _ in $(seq 300); do
        n=$(images $idx)
        [ "${n:-0}" -ge 10 ] && break
        sleep 0.05
    done
    kill -$sig $pid
    wait $pid
    rc=$?
    pid=
    [ $rc = 130 ] || fail "SIG$sig: exit $rc, want 130: $(cat out err)"
    grep -q "interrupted" err || fail "SIG$sig: no message: $(cat err)"
    n=$(images $idx)
    [ "${n:-0}" -ge 10 ] && [ "$n" -lt 180 ] || fail "SIG$sig: $n images committed, want 10..179"
    [ $((n % 5)) = 0 ] || fail "SIG$sig: $n images: a batch half committed"
    grep -q "indexed $n," out || fail "SIG$sig: summary does not say $n: $(cat out)"
    g=$(generation $idx)
    ls $idx/vectors.*."$g".Flat.faiss > /dev/null 2>&1 || fail "SIG$sig: no snapshot of generation $g: $(ls $idx)"
    "$BIN" verify -i $idx > v 2> e || fail "SIG$sig: verify: $(cat v e)"
    [ -s e ] && fail "SIG$sig: the snapshot was not usable: $(cat e)"
    "$BIN" build col -i $idx -m "$MODEL" --threads 2 --quiet > out 2>&1 || fail "SIG$sig: rerun: $(cat out)"
    grep -q "indexed $((180 - n)), unchanged $n" out || fail "SIG$sig: rerun: $(cat out)"
    [ "$(images $idx)" = 180 ] || fail "SIG$sig: rerun did not complete"
done
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
