# common.sh - what bench/encoder.sh and bench/train.sh share (sourced, not run).
#
# Timing is by whole processes: each side runs a long and a short job of the
# same kind back to back, and its rate is the extra work over the extra time,
# so process start, imports, model loading and the cold first batch or steps
# cancel. The two sides alternate (A B A B ...) over ROUNDS rounds on the
# same inputs, and the ratio is taken per round, then its median: on a shared
# machine a single run measures the neighbours, not the code.

PY=${BENCH_PYTHON:-/usr/bin/python3} # Debian's, with python3-torch

bench_need_torch() { # SCRIPT: exit 77 (skipped) without Debian's torch
    $PY -c 'import torch, torchvision, numpy, PIL' 2>/dev/null ||
        { echo "$1: skipped: $PY has no torch/torchvision/numpy/PIL (Debian's python3-torch)" >&2; exit 77; }
}

# The vector extensions of /proc/cpuinfo that decide which kernels run.
bench_cpu_vector_flags() {
    grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
        grep -xE 'sse4_2|avx|avx2|fma|f16c|avx512(f|bw|dq|vl|cd|_vnni|_bf16|_fp16)|avx_vnni|amx_(tile|bf16|int8)' |
        tr '\n' ' ' | sed 's/ $//'
}

# The core name OpenBLAS's constructor would choose here (no OPENBLAS_CORETYPE).
bench_cpu_class() {
    local f; f=" $(bench_cpu_vector_flags) "
    if [[ $f == *" avx512f "* && $f == *" avx512bw "* && $f == *" avx512dq "* && $f == *" avx512vl "* ]]; then
        echo SkylakeX
    elif [[ $f == *" avx2 "* && $f == *" fma "* ]]; then echo Haswell
    else echo ""; fi
}

bench_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The header: machine, extensions, BLAS cores of both sides, load, threads.
bench_header() { # BIN
    local bin=$1 numpy_core
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(hostname)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
         "family $(grep -m1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')" \
         "model $(grep -m1 '^model\s*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), $(nproc) cores"
    echo "vector extensions: $(bench_cpu_vector_flags)"
    echo "siamidx: $("$bin" --version | sed -n 's/^blas: //p')"
    echo "siamidx conv kernel: $("$bin" model-info "$SRC/models/default.safetensors" 2>/dev/null |
        sed -n 's/^conv kernel: *\([a-z0-9]*\).*/\1/p') (SIAMIDX_CPU=${SIAMIDX_CPU:-unset})"
    numpy_core=$(OPENBLAS_VERBOSE=2 $PY -c 'import numpy' 2>&1 | sed -n 's/^Core: //p')
    echo "pytorch side: $($PY -c 'import torch; print("torch", torch.__version__, "(convolutions: oneDNN", torch.backends.mkldnn.is_available(), end=")")');" \
         "numpy/OpenBLAS core ${numpy_core:-?} (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} for the Python processes)" \
         "${ONEDNN_MAX_CPU_ISA:+ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA }${ATEN_CPU_CAPABILITY:+ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY}"
    echo "threads: $THREADS each side; OMP_WAIT_POLICY=$OMP_WAIT_POLICY for both"
    echo "load average before: $(bench_loadavg)"
    bench_load_note before
}

# Percent of all cores busy over the next $1 seconds (default 3), from
# /proc/stat: what other work takes while nothing of the benchmark runs.
# The load average cannot say that: its minute-long memory keeps the
# previous benchmark's (or this one's) processes for minutes after they end.
bench_cpu_busy() {
    local s=${1:-3} a b
    a=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6; exit }' /proc/stat)
    sleep "$s"
    b=$(awk '/^cpu /{ print $2+$3+$4+$7+$8+$9, $5+$6; exit }' /proc/stat)
    echo "$a $b" | awk '{ busy = $3 - $1; idle = $4 - $2;
        all = busy + idle; printf "%.0f", (all > 0 ? 100 * busy / all : 0) }'
}

# A warning when other work runs: the figures then measure the neighbours
# too. $1: "before" (sampled before the first run) or "after" (after the
# last), so that the benchmark's own processes are never in the sample.
# BENCH_IDLE_WAIT=S (default 0) first waits up to S seconds for the cores
# to fall idle, for a benchmark started right after other work.
bench_load_note() {
    local when=$1 busy waited=0 limit=${BENCH_IDLE_WAIT:-0}
    busy=$(bench_cpu_busy 3)
    while [ "$when" = before ] && [ "$busy" -gt 10 ] && [ "$waited" -lt "$limit" ]; do
        sleep 7; waited=$((waited + 10)); busy=$(bench_cpu_busy 3)
    done
    echo "cores busy $when (3 s sample, nothing of this benchmark running): ${busy}%"
    [ "$busy" -le 10 ] ||
        echo "NOTE: other work takes ${busy}% of the cores $when the runs: these figures are not a measurement of the code"
}

# Runs a command (its output kept in $TMP/out and $TMP/err), setting RUN_S
# (wall seconds) and RUN_MB (peak RSS); exits the script when it fails.
bench_run() {
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$TMP/rss" "$@" >"$TMP/out" 2>"$TMP/err" ||
        { echo "failed: $*" >&2; tail -n 20 "$TMP/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    RUN_S=$(echo "$t1 - $t0" | bc -l)
    RUN_MB=$(( $(tail -n1 "$TMP/rss") / 1024 ))
}

# Items per second of the extra work: WORK / (long - short); "nan" when the
# short one took as long (a disturbed round).
bench_rate() { # WORK T_LONG T_SHORT
    awk -v w="$1" -v l="$2" -v s="$3" 'BEGIN { d = l - s; if (d <= 0) print "nan"; else printf "%.3f", w / d }'
}

bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.4f", a / b }'; }

# The median of the numbers given (words), "nan" ignored; "nan" when none.
bench_median() {
    [ $# -gt 0 ] || { echo nan; return; }
    printf '%s\n' "$@" | grep -v nan | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "nan"; else printf "%.4g", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bench_goal() { # RATIO GOAL: "goal >= G: met" or "... NOT met"
    awk -v r="$1" -v g="$2" 'BEGIN { if (g == "") print "-"; else if (r == "nan") print "goal >=" g "x: ?"; else if (r + 0 >= g + 0) print "goal >=" g "x: met"; else print "goal >=" g "x: NOT met" }'
}

bench_fmt() { # PRINTF_FORMAT NUMBER: "nan" stays "nan"
    awk -v f="$1" -v v="$2" 'BEGIN { if (v == "nan" || v == "") print "nan"; else printf f "\n", v }'
}
