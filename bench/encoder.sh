#!/bin/bash
# encoder.sh - siamidx's ResNet forward pass against PyTorch's: the same
# weights, the same input tensor, the same batch, THREADS threads each.
#
#   bench/encoder.sh [BUILD_DIR]        (default: $SIAMIDX_BUILD, then ./build)
#
# Builds nothing: BUILD_DIR/siamidx must exist. Needs Debian's /usr/bin/python3
# with torch, torchvision, numpy and PIL (exit 77 without them) and bc.
#
# Knobs (environment):
#   ROUNDS   (5)                   rounds of A B per configuration
#   ARCHS    ("resnet18 resnet50")
#   BATCHES  ("1 16")
#   IMAGES   (32)                  timed images per run (rounded up to a multiple of the batch)
#   THREADS  (2)
#   MEMORY   (1)                   0: skip the JPEG embedding (peak RSS, decode included)
#   OMP_WAIT_POLICY (passive)      for both sides
# Smoke test (about a minute): ROUNDS=1 ARCHS=resnet18 BATCHES=1 IMAGES=4 MEMORY=0 bench/encoder.sh build
#
# Method (bench/common.sh): per configuration and round, siamidx then
# PyTorch, each as two whole processes over the same tensor -- a long one of
# B + IMAGES images and a short one of the first B -- and the rate is
# IMAGES / (t_long - t_short): process start, imports, loading the weights
# and the cold first batch cancel. The medians of each side's rates and of
# the per-round ratios are printed, with the goals. Peak RSS is the long
# run's (/usr/bin/time). The sgemm peak (numpy's OpenBLAS, 2048^3, the same
# kernels and threads) is measured in every round, after the two sides;
# GFLOP/s of siamidx use the nominal cost of the network at 224x224.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/bench/common.sh"
BUILD=${1:-${SIAMIDX_BUILD:-./build}}
BIN=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")/siamidx
PEER=$SRC/bench/encoder_peer.py
ROUNDS=${ROUNDS:-5}
ARCHS=${ARCHS:-"resnet18 resnet50"}
BATCHES=${BATCHES:-"1 16"}
IMAGES=${IMAGES:-32}
THREADS=${THREADS:-2}
MEMORY=${MEMORY:-1}
[ -x "$BIN" ] || { echo "encoder.sh: $BIN not found (build first)" >&2; exit 1; }
bench_need_torch encoder.sh
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
# siamidx picks its kernels itself (it re-executes with OPENBLAS_CORETYPE when
# OpenBLAS misreads the CPU); the Python processes get the same class.
[ -n "${OPENBLAS_CORETYPE+set}" ] || { c=$(bench_cpu_class); [ -z "$c" ] || export OPENBLAS_CORETYPE=$c; }

# Nominal cost of one 224x224 image, 2 FLOP per multiply-add (torchvision's GMACs).
gflop_per_image() { case $1 in resnet18) echo 3.628 ;; resnet34) echo 7.328 ;; resnet50) echo 8.178 ;; *) echo "" ;; esac; }
goal_for() { # ARCH BATCH
    case $1 in resnet18|resnet50) ;; *) echo ""; return ;; esac
    case $2 in 1) echo 1.0 ;; 16) echo 1.2 ;; *) echo "" ;; esac
}

bench_header "$BIN"
echo "method: $ROUNDS rounds of (siamidx, PyTorch) per row; each side's rate = IMAGES / (t(B+IMAGES images) - t(B images)), whole processes"
echo

declare -A row_ours row_theirs row_ratio row_rss_ours row_rss_theirs row_diff
sgemm_all=()
for arch in $ARCHS; do
    $PY "$SRC/tools/convert_torchvision.py" --arch "$arch" --random-seed 1 \
        -o "$TMP/$arch.safetensors" >/dev/null
    for b in $BATCHES; do
        n=$(( (IMAGES + b - 1) / b * b ))
        $PY "$PEER" write-input --n $((b + n)) -o "$TMP/long.npy"
        $PY -c 'import sys, numpy as np; np.save(sys.argv[2], np.load(sys.argv[1])[:int(sys.argv[3])])' \
            "$TMP/long.npy" "$TMP/short.npy" "$b"
        ours=() theirs=() ratios=() diff=""
        for r in $(seq 1 "$ROUNDS"); do
            siam() { bench_run "$BIN" embed -m "$TMP/$arch.safetensors" --threads "$THREADS" --batch "$b" \
                         --tensor "$TMP/$1.npy" --output pooled -o "$TMP/c.npy"; }
            siam long; ol=$RUN_S rss_o=$RUN_MB
            siam short; os=$RUN_S
            check=()
            [ "$r" -eq 1 ] && check=(--check "$TMP/c.npy") # c.npy: the short run's pooled output
            peer() { bench_run $PY "$PEER" run --arch "$arch" --seed 1 --batch "$b" --threads "$THREADS" \
                         --input "$TMP/$1.npy" "${check[@]}"; }
            peer long; tl=$RUN_S rss_t=$RUN_MB
            [ "$r" -eq 1 ] && diff=$(awk '/max_abs_diff/ { print $2 }' "$TMP/out")
            check=()
            peer short; ts=$RUN_S
            o=$(bench_rate "$n" "$ol" "$os") t=$(bench_rate "$n" "$tl" "$ts")
            ours+=("$o") theirs+=("$t") ratios+=("$(bench_ratio "$o" "$t")")
            g=$($PY "$PEER" sgemm --iters 5 | awk '/sgemm_gflops/ { print $2 }')
            sgemm_all+=("$g")
            printf '  %-9s batch %-3d round %d: siamidx %7.2f img/s (%.2f-%.2f s), torch %7.2f img/s (%.2f-%.2f s), ratio %s, sgemm %s GFLOP/s\n' \
                "$arch" "$b" "$r" "$o" "$ol" "$os" "$t" "$tl" "$ts" "$(bench_fmt %.2fx "${ratios[-1]}")" "$g"
        done
        k="$arch $b"
        row_ours[$k]=$(bench_median "${ours[@]}") row_theirs[$k]=$(bench_median "${theirs[@]}")
        row_ratio[$k]=$(bench_median "${ratios[@]}") row_diff[$k]=${diff:--}
        row_rss_ours[$k]=$rss_o row_rss_theirs[$k]=$rss_t
    done
done
sgemm=$(bench_median "${sgemm_all[@]}")

echo
echo "| arch | batch | siamidx img/s | PyTorch img/s | ratio (median of rounds) | goal | siamidx GFLOP/s | % of sgemm | peak RSS siamidx | peak RSS PyTorch | max abs diff |"
echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
for arch in $ARCHS; do
    for b in $BATCHES; do
        k="$arch $b" f=$(gflop_per_image "$arch")
        gf=$(awk -v r="${row_ours[$k]}" -v f="$f" 'BEGIN { if (f == "" || r == "nan") print "-"; else printf "%.1f", r * f }')
        pct=$(awk -v g="$gf" -v s="$sgemm" 'BEGIN { if (g == "-" || s == "nan") print "-"; else printf "%.0f%%", 100 * g / s }')
        printf '| %s | %d | %s | %s | %s | %s | %s | %s | %s MB | %s MB | %s |\n' "$arch" "$b" \
            "$(bench_fmt %.2f "${row_ours[$k]}")" "$(bench_fmt %.2f "${row_theirs[$k]}")" \
            "$(bench_fmt %.2fx "${row_ratio[$k]}")" \
            "$(bench_goal "${row_ratio[$k]}" "$(goal_for "$arch" "$b")")" "$gf" "$pct" \
            "${row_rss_ours[$k]}" "${row_rss_theirs[$k]}" "${row_diff[$k]}"
    done
done
echo
echo "sgemm peak (numpy/OpenBLAS 2048^3 float32, $THREADS threads, median of ${#sgemm_all[@]} runs in the rounds): $sgemm GFLOP/s"
r50=$(awk -v r="${row_ours[resnet50 16]:-nan}" -v s="$sgemm" 'BEGIN { if (r == "nan" || s == "nan") print "?"; else printf "%.0f", 100 * r * 8.178 / s }')
[ "$r50" = "?" ] || echo "resnet50 batch 16: $r50% of the sgemm peak (goal >= 65%: $([ "$r50" -ge 65 ] && echo met || echo NOT met))"

if [ "$MEMORY" = 1 ]; then
    # Decode + preprocess + embed of 64 synthetic 800x600 JPEGs, resnet50, batch 16.
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
    bench_run "$BIN" embed -m "$TMP/resnet50.safetensors" --threads "$THREADS" --batch 16 \
        --format npy -o "$TMP/e.npy" "$TMP"/img/*.jpg
    ow=$RUN_S om=$RUN_MB
    bench_run $PY "$PEER" embed --arch resnet50 --seed 1 --batch 16 --threads "$THREADS" "$TMP"/img/*.jpg
    tw=$RUN_S tm=$RUN_MB
    echo
    echo "64 JPEGs (800x600), resnet50, batch 16, decode + preprocess + embed, one run each (wall includes start-up):"
    echo "| tool | peak RSS | wall |"
    echo "|---|---:|---:|"
    printf '| siamidx embed | %s MB | %.1f s |\n| PyTorch + PIL + torchvision transforms | %s MB | %.1f s |\n' "$om" "$ow" "$tm" "$tw"
fi
echo
echo "load average after: $(bench_loadavg) (includes this benchmark's own runs)"
bench_load_note after
