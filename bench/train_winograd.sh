#!/bin/bash
# train_winograd.sh - the trainer with and without Winograd (SIAMIDX_WINOGRAD=4
# against =0), the same binary, alternating, as whole train-encoder processes.
#
#   bench/train_winograd.sh [BUILD_DIR]      (default: $SIAMIDX_BUILD, then ./build)
#
# Knobs: ROUNDS (3), STEPS (28), ARCH (resnet18), WIDTH (0.5), BATCH (32),
# CROP (128), THREADS (2). Needs ../shared (exits 77 without it). Prints each
# pair's wall times and their ratio, then the median ratio: an ablation of one
# lever, not a comparison with PyTorch (that is bench/train.sh).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${SIAMIDX_BUILD:-./build}}
BIN=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")/siamidx
DATA=${SIAMIDX_SHARED:-$SRC/../shared}/data/paintings
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-28}
[ -x "$BIN" ] || { echo "train_winograd.sh: $BIN not found (build first)" >&2; exit 1; }
[ -d "$DATA" ] || { echo "train_winograd.sh: skipped: $DATA not found (../shared)" >&2; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${THREADS:-2}
run() { # SIAMIDX_WINOGRAD value -> seconds on stdout
    local s e
    s=$(date +%s.%N)
    SIAMIDX_WINOGRAD=$1 "$BIN" train-encoder "$DATA" -o "$TMP/m.safetensors" --arch "${ARCH:-resnet18}" \
        --width "${WIDTH:-0.5}" --batch "${BATCH:-32}" --input-size "${CROP:-128}" \
        --threads "${THREADS:-2}" --epochs 100 --max-steps "$STEPS" --log-seconds 0 >/dev/null 2>"$TMP/err" ||
        { cat "$TMP/err" >&2; exit 1; }
    e=$(date +%s.%N)
    rm -f "$TMP"/m.safetensors*
    echo "$e - $s" | bc -l
}
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ratios=()
for r in $(seq 1 "$ROUNDS"); do
    on=$(run 4)
    off=$(run 0)
    ratio=$(echo "$off / $on" | bc -l)
    ratios+=("$ratio")
    printf 'round %d: Winograd %.1f s, im2col+GEMM %.1f s, speed-up %.2fx\n' "$r" "$on" "$off" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
printf 'median speed-up of %d-step processes: %.2fx; load average after: %s\n' "$STEPS" "$median" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
