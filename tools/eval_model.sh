#!/bin/sh
# Measures a model the way docs/evaluation.md reports it: index a collection,
# fit the Siamese head, and run `siamidx eval` twice, once with every artist
# seen by the head and once with 15 whole artists held out (unseen artists).
# History: this is the earlier measure (`siamidx eval --legacy`, random negatives
# across sources); tools/eval_protocol.sh runs the current protocol.
#   tools/eval_model.sh MODEL [COLLECTION] [WORKDIR]
# COLLECTION defaults to ../shared/data/paintings, WORKDIR to a fresh temp dir.
# Prints both `siamidx eval --json` reports; leaves the indexes in WORKDIR.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SIAMIDX_BIN:-$here/build/siamidx}
model=${1:?usage: tools/eval_model.sh MODEL [COLLECTION] [WORKDIR]}
collection=${2:-$here/../shared/data/paintings}
work=${3:-$(mktemp -d)}
seed=${SEED:-1}
holdout=${HOLDOUT_ARTISTS:-15}

mkdir -p "$work"
rm -rf "$work/seen.idx" "$work/holdout.idx"
set +e
"$bin" build "$collection" -i "$work/seen.idx" -m "$model" --quiet
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc
# Same embeddings for both runs: copy the index (no writer is active).
cp -r "$work/seen.idx" "$work/holdout.idx"

"$bin" train -i "$work/seen.idx" --seed "$seed" >&2
"$bin" eval -i "$work/seen.idx" --legacy --json >"$work/seen.json"
"$bin" train -i "$work/holdout.idx" --seed "$seed" --holdout-artists "$holdout" >&2
"$bin" eval -i "$work/holdout.idx" --legacy --json >"$work/holdout.json"
echo "== every artist seen by the head (seed $seed) =="
cat "$work/seen.json"
echo "== $holdout artists held out (seed $seed) =="
cat "$work/holdout.json"
