#!/bin/bash
# encoder.sh - siamidx's encoder against PyTorch (same weights, same input,
# same batch, 2 threads), then peak memory of embedding 64 JPEGs with each.
#
#   bench/encoder.sh [BUILD_DIR]        (default: $SIAMIDX_BUILD, then ./build)
#
# Builds nothing: BUILD_DIR/siamidx must exist. Needs /usr/bin/python3 with
# torch, torchvision, numpy and PIL (Debian's python3-torch). Env knobs:
# THREADS (2), ARCHS ("resnet18 resnet50"), BATCHES ("1 16"), SKIP_MEMORY=1.
#
# Both sides run the same 1+R batches of one input tensor and report the
# best batch after the first (warm-up) one: `siamidx embed --tensor --time`
# times its batches itself, PyTorch is timed in encoder_peer.py. The best
# batch is what the machine does when other processes leave it alone.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${SIAMIDX_BUILD:-./build}}
BIN=$(cd "$BUILD" && pwd)/siamidx
PY=/usr/bin/python3
PEER=$SRC/bench/encoder_peer.py
THREADS=${THREADS:-2}
ARCHS=${ARCHS:-"resnet18 resnet50"}
BATCHES=${BATCHES:-"1 16"}
[ -x "$BIN" ] || { echo "encoder.sh: $BIN not found (build first)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

now() { date +%s.%N; }
# Seconds one command takes (its output discarded).
timed() { local t0; t0=$(now); "$@" >/dev/null; echo "$(now) - $t0" | bc -l; }

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
     "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads: $THREADS; $($PY -c 'import torch; print("torch", torch.__version__)')"
$PY "$PEER" sgemm

printf '\n%-9s %5s %14s %14s %7s %12s\n' arch batch "siamidx img/s" "torch img/s" ratio "max|diff|"
for arch in $ARCHS; do
    $PY "$SRC/tools/convert_torchvision.py" --arch "$arch" --random-seed 1 \
        -o "$TMP/$arch.safetensors" >/dev/null
    for b in $BATCHES; do
        # R timed batches after the warm-up one
        if [ "$b" -eq 1 ]; then r=8; else r=3; fi
        $PY "$PEER" write-input --n $((b * (r + 1))) -o "$TMP/x.npy"
        ours=$("$BIN" embed -m "$TMP/$arch.safetensors" --threads "$THREADS" --batch "$b" \
                   --tensor "$TMP/x.npy" --output pooled -o "$TMP/c.npy" --time 2>&1 >/dev/null |
               awk -v b="$b" '/^forward:/ { print b / $5 }')
        peer=$($PY "$PEER" speed --arch "$arch" --seed 1 --batch "$b" --iters "$r" \
                   --input "$TMP/x.npy" --check "$TMP/c.npy" --threads "$THREADS")
        theirs=$(echo "$peer" | awk '/torch_img_s/ { print $2 }')
        diff=$(echo "$peer" | awk '/max_abs_diff/ { print $2 }')
        printf '%-9s %5d %14.2f %14.2f %6.2fx %12s\n' "$arch" "$b" "$ours" "$theirs" \
            "$(echo "$ours / $theirs" | bc -l)" "$diff"
    done
done

[ "${SKIP_MEMORY:-0}" = 1 ] && exit 0
# Peak memory: 64 synthetic 800x600 JPEGs, resnet50, batch 16, both embedding all.
mkdir -p "$TMP/img"
$PY - "$TMP/img" <<'EOF'
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(3)
y, x = np.mgrid[0:600, 0:800]
for i in range(64):
    base = np.stack([(x * (i + 1)) % 256, (y * (i + 3)) % 256, (x + y + 7 * i) % 256], -1)
    noise = rng.integers(0, 40, (600, 800, 3))
    Image.fromarray(((base + noise) % 256).astype(np.uint8)).save(f"{sys.argv[1]}/img{i:02d}.jpg", quality=90)
EOF
[ -f "$TMP/resnet50.safetensors" ] ||
    $PY "$SRC/tools/convert_torchvision.py" --arch resnet50 --random-seed 1 -o "$TMP/resnet50.safetensors" >/dev/null
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }'; }
wall() { local t; t=$(timed "$@"); printf '%.1f' "$t"; }
ours_mb=$(rss "$BIN" embed -m "$TMP/resnet50.safetensors" --threads "$THREADS" --batch 16 \
              --format npy -o "$TMP/e.npy" "$TMP"/img/*.jpg)
ours_s=$(wall "$BIN" embed -m "$TMP/resnet50.safetensors" --threads "$THREADS" --batch 16 \
              --format npy -o "$TMP/e.npy" "$TMP"/img/*.jpg)
peer_mb=$(rss $PY "$PEER" embed --arch resnet50 --seed 1 --batch 16 --threads "$THREADS" "$TMP"/img/*.jpg)
peer_s=$(wall $PY "$PEER" embed --arch resnet50 --seed 1 --batch 16 --threads "$THREADS" "$TMP"/img/*.jpg)
printf '\n64 JPEGs (800x600), resnet50, batch 16, decode+preprocess+embed:\n'
printf '%-8s %10s %10s\n' "" "peak RSS" "wall"
printf '%-8s %7s MB %8s s\n' siamidx "$ours_mb" "$ours_s" torch "$peer_mb" "$peer_s"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
