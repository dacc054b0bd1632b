#!/bin/bash
# test_shared_index.sh - the real paintings: built via index.csv, info shows
# 8,862 images and 89 artists; building again via the folder embeds nothing
# and takes seconds; verify passes.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
SHARED=${SIAMIDX_SHARED:-$SRC/../shared}
P=$SHARED/data/paintings
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$P/index.csv" ] || { echo "skipped: no $P"; exit 77; }
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/shared_index.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
export SIAMIDX_INDEX=$T/p.idx
info() { "$BIN" info --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['$1'])"; }

start=$(date +%s)
"$BIN" build "$P/index.csv" -m "$MODEL" --threads 2 --quiet > b1.out 2>&1 || fail "build: $(tail -3 b1.out)"
echo "first build (csv): $(tail -1 b1.out)"
[ "$(info n_images)" = 8862 ] || fail "images: $(info n_images)"
[ "$(info n_artists)" = 89 ] || fail "artists: $(info n_artists)"
start=$(date +%s)
"$BIN" build "$P" -m "$MODEL" --threads 2 --quiet > b2.out 2>&1 || fail "folder build: $(cat b2.out)"
secs=$(( $(date +%s) - start ))
echo "second build (folder): $(tail -1 b2.out) [$secs s wall]"
grep -q "indexed 0, unchanged 8862, failed 0 (embedded 0" b2.out || fail "second build: $(cat b2.out)"
[ $secs -le 10 ] || fail "second build took $secs s"
[ "$(info n_images)" = 8862 ] && [ "$(info n_artists)" = 89 ] || fail "counts after folder build"
"$BIN" verify > v || fail "verify: $(cat v)"
"$BIN" query "$P/claude_monet/$(ls "$P/claude_monet" | head -1)" -m "$MODEL" -k 3 --json > q ||
    fail "query"
# an indexed painting is its own exact match (and not its own neighbour)
python3 -c "import json; d=json.load(open('q')); assert d['exact_match']['artist']=='claude_monet'; assert all(n['path'] != d['exact_match']['path'] for n in d['neighbors'])" ||
    fail "query: $(cat q)"
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
