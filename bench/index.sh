#!/bin/bash
# index.sh - siamidx's index against raw FAISS in one process: N random 512-d
# unit vectors added (siamidx: one LMDB transaction per 10,000, then the FAISS
# update) and 1,000 queries searched (k = 10), flat and hnsw; prints both
# throughputs, their ratio and the peak resident memory.
#
#   bench/index.sh [N_FLAT] [N_HNSW] [BUILD_DIR]
#       N_FLAT default 1000000, N_HNSW default 100000 (an HNSW build of 1M
#       vectors on 2 cores takes hours); BUILD_DIR default $SIAMIDX_BUILD, ./build.
#
# Builds the index_bench target in BUILD_DIR. The index goes to $TMPDIR
# (N_FLAT vectors take ~2.1 GB in LMDB plus a 2 GB snapshot).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
N_FLAT=${1:-1000000}
N_HNSW=${2:-100000}
BUILD=${3:-${SIAMIDX_BUILD:-./build}}
cmake --build "$BUILD" --target index_bench -j2 > /dev/null
# The benchmark programs do not re-execute themselves as `siamidx` does: give
# OpenBLAS the CPU's kernels here (docs/performance.md, BLAS kernels).
. "$(dirname "$0")/common.sh"
[ -n "${OPENBLAS_CORETYPE+set}" ] || { c=$(bench_cpu_class); [ -z "$c" ] || export OPENBLAS_CORETYPE=$c; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/index_bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
echo "threads: OMP_NUM_THREADS=${OMP_NUM_THREADS:-all} on $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/index_bench" "$N_FLAT" "$N_HNSW" "$DIR/idx"
