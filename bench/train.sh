#!/bin/bash
# train.sh - training images/s of `siamidx train-encoder` against PyTorch for
# the same architecture, width, batch and input size, 2 threads, side by side.
#
#   bench/train.sh [BUILD_DIR]        (default: $SIAMIDX_BUILD, then ./build)
#
# Needs BUILD_DIR/siamidx (or BUILD_DIR/siamidx-train), the paintings
# collection ($SIAMIDX_SHARED/data/paintings, default ../shared) and
# /usr/bin/python3 with torch. Env knobs: THREADS (2), STEPS (20),
# CONFIGS ("resnet18:0.5:32:128 resnet18:0.5:32:160 resnet50:0.25:32:128").
#
# siamidx: the median of the per-step images/s that train-encoder prints
# (--log-seconds 0), steps 6.. (the first ones decode images cold); it
# includes the producer thread that crops and decodes the next batch.
# PyTorch (bench/train_peer.py): the median over STEPS steps of the same
# network, AdamW and loss on one in-memory batch -- no data loading at all.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${SIAMIDX_BUILD:-./build}}
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/siamidx
[ -x "$BIN" ] || BIN=$BUILD/siamidx-train
PY=/usr/bin/python3
SHARED=${SIAMIDX_SHARED:-$SRC/../shared}
DATA=$SHARED/data/paintings
THREADS=${THREADS:-2}
STEPS=${STEPS:-20}
CONFIGS=${CONFIGS:-"resnet18:0.5:32:128 resnet18:0.5:32:160 resnet50:0.25:32:128"}
[ -x "$BIN" ] || { echo "train.sh: no siamidx binary in $BUILD (build first)" >&2; exit 1; }
[ -d "$DATA" ] || { echo "train.sh: $DATA not found" >&2; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Both sides: passive OpenMP waiting (spinning threads lose badly on shared cores).
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=$THREADS

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads: $THREADS; $($PY -c 'import torch; print("torch", torch.__version__)')"
printf '\n%-9s %6s %5s %5s %14s %12s %7s\n' arch width batch input "siamidx img/s" "torch img/s" ratio
for cfg in $CONFIGS; do
    IFS=: read -r arch width batch input <<<"$cfg"
    "$BIN" train-encoder "$DATA" -o "$TMP/m.safetensors" --arch "$arch" --width "$width" \
        --batch "$batch" --input-size "$input" --threads "$THREADS" --epochs 100 \
        --max-steps $((STEPS + 5)) --log-seconds 0 2>"$TMP/log" || { cat "$TMP/log" >&2; exit 1; }
    ours=$(grep -o '[0-9.]* img/s' "$TMP/log" | tail -n "$STEPS" | cut -d' ' -f1 | sort -g |
           awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}')
    theirs=$($PY "$SRC/bench/train_peer.py" "$arch" "$width" "$batch" "$input" "$THREADS" "$STEPS")
    printf '%-9s %6s %5s %5s %14.1f %12.1f %6.2fx\n' "$arch" "$width" "$batch" "$input" "$ours" \
           "$theirs" "$(echo "$ours / $theirs" | bc -l)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
