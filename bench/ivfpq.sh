#!/bin/bash
# ivfpq.sh - flat against IVF-PQ (siamidx's parameters) on clustered synthetic
# vectors: build time, bytes per vector, QPS (batch and single query) and
# recall@10 against flat at several nprobe (bench/ivfpq_bench.c says how the
# vectors are drawn).
#
#   bench/ivfpq.sh [N] [DIM] [QUERIES] [NPROBES] [BUILD_DIR]
#       defaults 1000000 256 1000 4,8,16,32,64,128; BUILD_DIR $SIAMIDX_BUILD, ./build.
#
# 1M 256-d vectors take ~1 GiB for the data and ~1 GiB for the flat index.
set -eu
N=${1:-1000000}
DIM=${2:-256}
QUERIES=${3:-1000}
NPROBES=${4:-4,8,16,32,64,128}
BUILD=${5:-${SIAMIDX_BUILD:-./build}}
cmake --build "$BUILD" --target ivfpq_bench -j2 > /dev/null
# The benchmark programs do not re-execute themselves as `siamidx` does: give
# OpenBLAS the CPU's kernels here (docs/performance.md, BLAS kernels).
. "$(dirname "$0")/common.sh"
[ -n "${OPENBLAS_CORETYPE+set}" ] || { c=$(bench_cpu_class); [ -z "$c" ] || export OPENBLAS_CORETYPE=$c; }
echo "threads: OMP_NUM_THREADS=${OMP_NUM_THREADS:-all} on $(nproc) cores; load before $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "peak RSS %M KiB, %e s wall, %U s user" "$BUILD/ivfpq_bench" "$N" "$DIM" "$QUERIES" "$NPROBES"
echo "load after $(cut -d' ' -f1-3 /proc/loadavg)"
