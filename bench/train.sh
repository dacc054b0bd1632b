#!/bin/bash
# train.sh - training images/s of `siamidx train-encoder` against PyTorch for
# the same architecture, width, batch and crop size, THREADS threads each,
# both training from the real JPEGs of the paintings collection.
#
#   bench/train.sh [BUILD_DIR]        (default: $SIAMIDX_BUILD, then ./build)
#
# Needs BUILD_DIR/siamidx, the collection ($SIAMIDX_SHARED/data/paintings,
# default ../shared) and Debian's /usr/bin/python3 with torch, torchvision and
# PIL; exits 77 (skipped) without either. Knobs (environment):
#   ROUNDS   (5)      rounds of A B per configuration
#   CONFIGS  ("resnet18:0.5:32:128 resnet50:0.25:32:128")  ARCH:WIDTH:BATCH:CROP
#   STEPS    (28)     steps of the long run
#   SHORT    (8)      steps of the short run (subtracted)
#   THREADS  (2)
#   PEER_DATA (1)     0: PyTorch trains on one in-memory batch (no data loading)
#   OMP_WAIT_POLICY (passive)  for both sides
# Smoke test (a few minutes on a loaded machine):
#   ROUNDS=1 STEPS=3 SHORT=1 CONFIGS=resnet18:0.5:8:64 bench/train.sh build
#
# Method (bench/common.sh): per configuration and round, siamidx then
# PyTorch, each as two whole processes -- STEPS and SHORT steps -- and the
# rate is (STEPS - SHORT) * BATCH / (t_long - t_short): start-up, reading the
# collection, the first slow steps and writing the checkpoint cancel. Both
# train from the files: siamidx with its producer thread (decode, crop, flip),
# PyTorch through a DataLoader with one worker doing the same (train_peer.py).
# Peak RSS is the long run's.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/common.sh"
BUILD=${1:-${SIAMIDX_BUILD:-./build}}
BIN=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")/siamidx
SHARED=${SIAMIDX_SHARED:-$SRC/../shared}
DATA=$SHARED/data/paintings
ROUNDS=${ROUNDS:-5}
CONFIGS=${CONFIGS:-"resnet18:0.5:32:128 resnet50:0.25:32:128"}
STEPS=${STEPS:-28}
SHORT=${SHORT:-8}
THREADS=${THREADS:-2}
PEER_DATA=${PEER_DATA:-1}
[ -x "$BIN" ] || { echo "train.sh: $BIN not found (build first)" >&2; exit 1; }
[ -d "$DATA" ] || { echo "train.sh: skipped: $DATA not found (../shared)" >&2; exit 77; }
bench_need_torch train.sh
[ "$STEPS" -gt "$SHORT" ] || { echo "train.sh: STEPS must exceed SHORT" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Both sides: passive OpenMP waiting (spinning threads lose badly on shared cores).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=$THREADS
[ -n "${OPENBLAS_CORETYPE+set}" ] || { c=$(bench_cpu_class); [ -z "$c" ] || export OPENBLAS_CORETYPE=$c; }

# Both sides read the JPEGs from the page cache, whatever ran before: a
# first long run reading them from disk would time the disk.
find "$DATA" -type f -exec cat {} + >/dev/null

goal_for() { case $1 in resnet18:0.5:32:128|resnet50:0.25:32:128) echo 1.5 ;; *) echo "" ;; esac; }
peer_data=(--data "$DATA")
peer_says="PyTorch trains from the same JPEGs through a DataLoader (1 worker: decode, crop, flip)"
if [ "$PEER_DATA" = 0 ]; then
    peer_data=()
    peer_says="PyTorch trains on ONE IN-MEMORY BATCH (no data loading; siamidx decodes and crops)"
fi

bench_header "$BIN"
echo "method: $ROUNDS rounds of (siamidx, PyTorch) per row; each side's rate = ($STEPS - $SHORT) steps x batch / (t($STEPS steps) - t($SHORT steps)), whole processes"
echo "data: $DATA; $peer_says"
echo

declare -A row_ours row_theirs row_ratio row_rss_ours row_rss_theirs
for cfg in $CONFIGS; do
    IFS=: read -r arch width batch input <<<"$cfg"
    work=$(( (STEPS - SHORT) * batch ))
    ours=() theirs=() ratios=()
    for r in $(seq 1 "$ROUNDS"); do
        siam() {
            rm -f "$TMP"/m.safetensors*
            bench_run "$BIN" train-encoder "$DATA" -o "$TMP/m.safetensors" --arch "$arch" --width "$width" \
                --batch "$batch" --input-size "$input" --threads "$THREADS" --epochs 100 \
                --max-steps "$1" --log-seconds 0
        }
        peer() {
            bench_run $PY "$SRC/bench/train_peer.py" --arch "$arch" --width "$width" --batch "$batch" \
                --input "$input" --threads "$THREADS" --steps "$1" "${peer_data[@]}"
        }
        siam "$STEPS"; ol=$RUN_S rss_o=$RUN_MB
        siam "$SHORT"; os=$RUN_S
        peer "$STEPS"; tl=$RUN_S rss_t=$RUN_MB
        peer "$SHORT"; ts=$RUN_S
        o=$(bench_rate "$work" "$ol" "$os") t=$(bench_rate "$work" "$tl" "$ts")
        ours+=("$o") theirs+=("$t") ratios+=("$(bench_ratio "$o" "$t")")
        printf '  %s round %d: siamidx %6.1f img/s (%.1f-%.1f s), torch %6.1f img/s (%.1f-%.1f s), ratio %s\n' \
            "$cfg" "$r" "$o" "$ol" "$os" "$t" "$tl" "$ts" "$(bench_fmt %.2fx "${ratios[-1]}")"
    done
    row_ours[$cfg]=$(bench_median "${ours[@]}") row_theirs[$cfg]=$(bench_median "${theirs[@]}")
    row_ratio[$cfg]=$(bench_median "${ratios[@]}")
    row_rss_ours[$cfg]=$rss_o row_rss_theirs[$cfg]=$rss_t
done

echo
echo "| arch | width | batch | crop | siamidx img/s | PyTorch img/s | ratio (median of rounds) | goal | peak RSS siamidx | peak RSS PyTorch |"
echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"
for cfg in $CONFIGS; do
    IFS=: read -r arch width batch input <<<"$cfg"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s MB | %s MB |\n' "$arch" "$width" "$batch" "$input" \
        "$(bench_fmt %.1f "${row_ours[$cfg]}")" "$(bench_fmt %.1f "${row_theirs[$cfg]}")" \
        "$(bench_fmt %.2fx "${row_ratio[$cfg]}")" "$(bench_goal "${row_ratio[$cfg]}" "$(goal_for "$cfg")")" \
        "${row_rss_ours[$cfg]}" "${row_rss_theirs[$cfg]}"
done
[ "$PEER_DATA" = 1 ] && echo "(PyTorch's peak RSS is the larger of its main process and its DataLoader worker, not their sum)"
echo
echo "load average after: $(bench_loadavg) (includes this benchmark's own runs)"
bench_load_note after
