#!/bin/sh
# Installs what is missing, builds siamidx four ways and runs the whole test
# suite: every test in the Release build, the unit tests again under
# ASan+UBSan, the libFuzzer targets for a bounded time each (tools/fuzz.sh),
# and the threaded tests under ThreadSanitizer. This is the command README.md
# and .ci/run name; docs/hardening.md has the time each step takes.
#   tools/test.sh                 every step
#   tools/test.sh tsan fuzz       only those steps (release sanitize fuzz tsan)
#   SIAMIDX_FUZZ_SECONDS          seconds per fuzz target (default 60; 0 skips fuzzing)
set -eu
cd "$(dirname "$0")/.."

tools/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

release() {
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j "$jobs"
    (cd build && ctest --output-on-failure -j "$jobs")
}

sanitize() {
    cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DSIAMIDX_SANITIZE=ON >/dev/null
    cmake --build build-sanitize -j "$jobs"
    # Sanitizers slow the encoder ~20x: run the unit tests (label "unit") there.
    (cd build-sanitize && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j "$jobs" -L unit)
}

fuzz() {
    seconds=${SIAMIDX_FUZZ_SECONDS:-60}
    [ "$seconds" -gt 0 ] || return 0
    tools/fuzz.sh "$seconds"
}

# ThreadSanitizer on every test labelled "threads" (tests/CMakeLists.txt).
# Reports go to files, so a test that ignores a child's exit status cannot
# hide one; any file there fails the step. OpenMP runs one thread per region
# (OMP_THREAD_LIMIT=1): libgomp is not instrumented, and TSan would report
# its barriers as races (tools/tsan.supp, docs/hardening.md).
tsan() {
    # Only what the tests run: the CLI and the test programs (not the shared
    # library, which would compile every file a second time, nor the examples).
    cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSIAMIDX_TSAN=ON -DSIAMIDX_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build build-tsan -j "$jobs" --target siamidx_cli siamidx_tests
    logs=$PWD/build-tsan/tsan-logs
    rm -rf "$logs" && mkdir -p "$logs"
    tsan_rc=0
    # SIAMIDX_MAP_SIZE: TSan's shadow memory leaves no room for the default 1 TiB
    # LMDB map (every process of the step gets the same size).
    (cd build-tsan && OMP_THREAD_LIMIT=1 SIAMIDX_MAP_SIZE=2G \
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/../tools/tsan.supp log_path=$logs/report" \
        ctest --output-on-failure -j "$jobs" -L threads) || tsan_rc=1
    if [ -n "$(ls "$logs")" ]; then
        cat "$logs"/* >&2
        echo "siamidx: ThreadSanitizer reports above (build-tsan/tsan-logs)" >&2
        tsan_rc=1
    fi
    return $tsan_rc
}

steps=${*:-release sanitize fuzz tsan}
for s in $steps; do
    case $s in
    release | sanitize | fuzz | tsan) ;;
    *) echo "tools/test.sh: unknown step '$s' (release sanitize fuzz tsan)" >&2; exit 2 ;;
    esac
done
# A step is called as a plain command, so set -e stops at its first failure
# (inside `step || ...` it would not); the trap names the step.
current=
trap '[ $? = 0 ] || echo "siamidx: step ${current:-?} FAILED" >&2' EXIT
start=$(date +%s)
for s in $steps; do
    current=$s
    t0=$(date +%s)
    $s
    echo "siamidx: step '$s' took $(( $(date +%s) - t0 )) s"
done
echo "siamidx: all tests passed (steps: $steps; $(( $(date +%s) - start )) s)"
