#!/bin/sh
# Builds the libFuzzer targets of fuzz/ (clang, ASan+UBSan, in build-fuzz) and
# runs each for SECONDS (default 60), two at a time. Fails when any target
# reports a crash, a leak, a sanitizer finding, a timeout or running out of
# memory; the input that did it is kept in build-fuzz/artifacts/TARGET/.
#   tools/fuzz.sh [SECONDS] [TARGET...]     e.g. tools/fuzz.sh 600 fuzz_image
# SIAMIDX_FUZZ_JOBS (default 2) sets how many run at once. The corpus grows in
# build-fuzz/corpus/TARGET across runs; seeds are regenerated each time.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
jobs=${SIAMIDX_FUZZ_JOBS:-2}
b=build-fuzz

cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DSIAMIDX_FUZZ=ON -DSIAMIDX_BUILD_TESTS=OFF -DSIAMIDX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$b" -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_all
rm -rf "$b/seeds"
python3 fuzz/make_seeds.py "$b/seeds"

targets=${*:-$(cd "$b/fuzz" && ls fuzz_* | grep -v '\.' )}
mkdir -p "$b/logs"
# One fuzzer per core: OpenMP and OpenBLAS stay single-threaded inside it.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# A fixed libFuzzer seed (SIAMIDX_FUZZ_SEED, default 1) keeps CI's runs close to
# repeatable; 0 lets libFuzzer pick one, for longer runs that should explore.
export SIAMIDX_FUZZ_B="$b" SIAMIDX_FUZZ_SECS="$secs" SIAMIDX_FUZZ_SEED="${SIAMIDX_FUZZ_SEED:-1}"
# -rss_limit_mb also caps single allocations (malloc_limit_mb defaults to it):
# a small input that makes the library allocate gigabytes is a finding.
printf '%s\n' $targets | xargs -P "$jobs" -I{} sh -c '
    t={}; b=$SIAMIDX_FUZZ_B
    mkdir -p "$b/corpus/$t" "$b/artifacts/$t"
    dict=""; [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
    "$b/fuzz/$t" -max_total_time="$SIAMIDX_FUZZ_SECS" -seed="$SIAMIDX_FUZZ_SEED" -rss_limit_mb=2048 -timeout=25 \
        -print_final_stats=1 -artifact_prefix="$b/artifacts/$t/" $dict \
        "$b/corpus/$t" "$b/seeds/$t" > "$b/logs/$t.log" 2>&1
    echo $? > "$b/logs/$t.rc"' || true

failed=0
for t in $targets; do
    rc=$(cat "$b/logs/$t.rc" 2>/dev/null || echo 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$b/logs/$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$b/logs/$t.log" | tail -1)
    if [ "$rc" = 0 ]; then
        echo "fuzz: $t: ok (${runs:-?} inputs, $cov)"
    else
        failed=1
        echo "fuzz: $t: FAILED (exit $rc); log $b/logs/$t.log, input(s):" >&2
        ls "$b/artifacts/$t" >&2
        grep -E "ERROR|runtime error|FUZZ_CHECK|SUMMARY|#[0-9]+ 0x" "$b/logs/$t.log" | head -30 >&2
    fi
done
exit $failed
