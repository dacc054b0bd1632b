#!/bin/sh
# Installs what is missing, builds siamidx four ways and runs the whole test
# suite: every test in the Release build, the unit tests again under
# ASan+UBSan, the libFuzzer targets for a bounded time each (tools/fuzz.sh),
# and the threaded tests under ThreadSanitizer. This is the command README.md
# and .ci/run name; docs/hardening.md has the time each step takes.
#   SIAMIDX_FUZZ_SECONDS  seconds per fuzz target (default 60; 0 skips fuzzing)
set -eu
cd "$(dirname "$0")/.."

tools/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
step=$start
took() { # prints how long the step since the last call took
    now=$(date +%s)
    echo "siamidx: $1 took $((now - step)) s"
    step=$now
}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")
took "Release build + all tests"

cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DSIAMIDX_SANITIZE=ON >/dev/null
cmake --build build-sanitize -j "$jobs"
# Sanitizers slow the encoder ~20x: run the unit tests (label "unit") there.
(cd build-sanitize && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j "$jobs" -L unit)
took "ASan+UBSan build + unit tests"

fuzz_seconds=${SIAMIDX_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
    tools/fuzz.sh "$fuzz_seconds"
    took "fuzz build + targets (${fuzz_seconds} s each, two at a time)"
fi

# ThreadSanitizer on every test labelled "threads" (tests/CMakeLists.txt).
# Reports go to files, so a test that ignores a child's exit status cannot
# hide one; any file there fails the step. OpenMP runs one thread per region
# (OMP_THREAD_LIMIT=1): libgomp is not instrumented, and TSan would report
# its barriers as races (tools/tsan.supp, docs/hardening.md).
# Only what the tests run: the CLI and the test programs (not the shared
# library, which would compile every file a second time, nor the examples).
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSIAMIDX_TSAN=ON -DSIAMIDX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-tsan -j "$jobs" --target siamidx_cli siamidx_tests
logs=$PWD/build-tsan/tsan-logs
rm -rf "$logs" && mkdir -p "$logs"
tsan_rc=0
(cd build-tsan && OMP_THREAD_LIMIT=1 \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/../tools/tsan.supp log_path=$logs/report" \
    ctest --output-on-failure -j "$jobs" -L threads) || tsan_rc=1
if [ -n "$(ls "$logs")" ]; then
    cat "$logs"/* >&2
    echo "siamidx: ThreadSanitizer reports above (build-tsan/tsan-logs)" >&2
    tsan_rc=1
fi
[ $tsan_rc = 0 ] || exit 1
took "TSan build + threads tests"
echo "siamidx: all tests passed in $(( $(date +%s) - start )) s"
