#!/bin/sh
# Installs what is missing, builds siamidx twice (Release, and ASan+UBSan) and
# runs the whole test suite: every test in the Release build, the unit tests
# again under the sanitizers. This is the command README.md and .ci/run name.
set -eu
cd "$(dirname "$0")/.."

tools/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DSIAMIDX_SANITIZE=ON >/dev/null
cmake --build build-sanitize -j "$jobs"
# Sanitizers slow the encoder ~20x: run the unit tests (label "unit") there.
(cd build-sanitize && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j "$jobs" -L unit)
echo "siamidx: all tests passed"
