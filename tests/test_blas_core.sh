#!/bin/bash
# test_blas_core.sh - OpenBLAS runs the kernels this CPU supports, and a
# user's OPENBLAS_CORETYPE is honoured.
#
# A DYNAMIC_ARCH OpenBLAS fixes its kernels at load time and takes CPU models
# newer than its table for old ones (Debian 12's 0.3.21 runs "Prescott" SSE3
# kernels on AVX-512 Xeons of family 6 model 207); `siamidx` then re-executes
# itself once with OPENBLAS_CORETYPE set (cli/main.c). Checked for real, on
# what OpenBLAS reports (OPENBLAS_VERBOSE=2 prints "Core: NAME" from its
# constructor, once per load) against the CPU's class read here from
# /proc/cpuinfo, independently of the library's own rule:
#   - unset: the core in use is at least the CPU's class, at most two loads
#     happened (one re-exec, no loop), and a first load that was already good
#     is not re-executed; argv and exit codes pass through the re-exec;
#   - set (Prescott, Haswell): honoured, never replaced, one load;
#   - the Python module: imported first it gets the CPU's class; imported
#     after numpy on a CPU OpenBLAS misreads it warns that it is too late.
# Every other CLI test runs through the re-exec too on such a machine (ctest
# leaves OPENBLAS_CORETYPE unset but in the *_avx2 variants): signals
# (test_build_signal, test_crash), pipes and exit codes.
# Passes where OpenBLAS detects the CPU correctly (no re-exec) and on
# AVX2-only CPUs; skips (77) off x86-64 or without DYNAMIC_ARCH.
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TMP:?}"
BIN=$SIAMIDX_BIN
T=$SIAMIDX_TMP/test_blas_core
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
unset OPENBLAS_CORETYPE
[ "$(uname -m)" = x86_64 ] || { echo "skip: not x86-64"; exit 77; }
version=$(timeout 60 "$BIN" --version) || { echo "FAIL: --version exit $?"; exit 1; }
[[ $version == *DYNAMIC_ARCH* ]] || { echo "skip: OpenBLAS without DYNAMIC_ARCH: $version"; exit 77; }

flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { for f in "$@"; do [[ $flags == *" $f "* ]] || return 1; done; }
if has avx512f avx512bw avx512dq avx512vl; then cls=SkylakeX; good="SkylakeX Cooperlake SapphireRapids"
elif has avx2 fma; then cls=Haswell; good="Haswell Zen SkylakeX Cooperlake SapphireRapids"
else cls=""; good=""; fi
echo "cpu class: ${cls:-none}"

in_list() { local w; for w in $2; do [ "$1" = "$w" ] && return 0; done; return 1; }
core_of() { sed -n 's/^blas: core \([^;]*\);.*/\1/p' <<<"$1"; }
loads() { grep -c '^Core: ' <<<"$1"; }

# ---- unset: the CPU's kernels, after at most one re-exec --------------------
out=$(OPENBLAS_VERBOSE=2 timeout 60 "$BIN" --version 2>&1) || fail "--version exit $?: $out"
core=$(core_of "$out")
[ -n "$core" ] || fail "--version names no BLAS core: $out"
first=$(sed -n 's/^Core: //p' <<<"$out" | head -n1)
n=$(loads "$out")
echo "unset: OpenBLAS chose ${first:-?} first, runs $core ($n loads)"
[ -n "$cls" ] && ! in_list "$core" "$good" && fail "core $core in use, though the CPU supports $cls"
[[ $out == *"is weaker"* ]] && fail "--version says the core in use is weaker: $out"
[ "$n" -le 2 ] || fail "OpenBLAS loaded $n times: a re-exec loop? $out"
if [ -n "$first" ] && in_list "$first" "$good"; then
    [ "$n" -eq 1 ] || fail "re-executed although OpenBLAS's own choice $first was good"
fi
# argv and the exit status pass through (an unknown command is a usage error naming it)
timeout 60 "$BIN" no-such-command-xyz 2>err; rc=$?
[ $rc -eq 2 ] || fail "unknown command: exit $rc (expected 2)"
grep -q "no-such-command-xyz" err || fail "argv lost: $(cat err)"
timeout 60 "$BIN" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no arguments: exit $rc (expected 2)"
# stdout into a pipe, stdin from one: descriptors survive (nothing read or written before)
v=$(echo unread | timeout 60 "$BIN" --version | head -n1)
[[ $v == "siamidx "* ]] || fail "--version through pipes: '$v'"

# Where a re-exec happens: the process keeps its name (ps, pgrep: not "exe"), its
# pid (a signal sent to the started pid reaches it) and its descriptors. It
# blocks opening a FIFO, past the re-exec, until it is fed or killed.
if [ "$n" -eq 2 ]; then
    mkfifo fifo
    "$BIN" model-info fifo >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 200); do # until the second image runs (its environment has the variable)
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q '^OPENBLAS_CORETYPE=' && break
        sleep 0.05
    done
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q "^OPENBLAS_CORETYPE=$cls\$" ||
        fail "the re-executed process has no OPENBLAS_CORETYPE=$cls"
    comm=$(cat "/proc/$pid/comm" 2>/dev/null)
    [ "$comm" = "$(basename "$BIN" | cut -c1-15)" ] || fail "re-executed process named '$comm'"
    kill -TERM $pid
    wait $pid; rc=$?
    [ $rc -eq 143 ] || fail "SIGTERM to the started pid: exit $rc (expected 143)"
fi

# ---- set: honoured, never overridden -----------------------------------------
for want in Prescott Haswell; do
    [ $want = Haswell ] && [ -z "$cls" ] && continue # no AVX2: Haswell would be refused
    out=$(OPENBLAS_CORETYPE=$want OPENBLAS_VERBOSE=2 timeout 60 "$BIN" --version 2>&1) ||
        fail "OPENBLAS_CORETYPE=$want: exit $?"
    core=$(core_of "$out")
    [ "$core" = $want ] || fail "OPENBLAS_CORETYPE=$want not honoured: core $core"
    [ "$(loads "$out")" -eq 1 ] || fail "OPENBLAS_CORETYPE=$want: re-executed anyway: $out"
done
# an empty value is the user's too: not replaced (OpenBLAS then detects as usual)
out=$(OPENBLAS_CORETYPE= OPENBLAS_VERBOSE=2 timeout 60 "$BIN" --version 2>&1)
[ "$(loads "$out")" -eq 1 ] || fail "OPENBLAS_CORETYPE='' was replaced: $out"

# ---- the Python module ----------------------------------------------------------
PY=/usr/bin/python3
if [ -n "${SIAMIDX_SOURCE:-}" ] && [ -n "${SIAMIDX_BUILD:-}" ] && $PY -c 'import numpy' 2>/dev/null; then
    export PYTHONPATH=$SIAMIDX_SOURCE/python SIAMIDX_LIBRARY=$SIAMIDX_BUILD/libsiamidx.so
    $PY - "$cls" "$good" <<'PY' || fail "Python: siamidx imported first (see above)"
import os, sys, warnings
cls, good = sys.argv[1], sys.argv[2].split()
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import siamidx
b = siamidx.blas_core()
print("python, siamidx first:", b["core"], "OPENBLAS_CORETYPE=%s" % os.environ.get("OPENBLAS_CORETYPE"))
assert not w, [str(x.message) for x in w]
assert not b["weaker"], b
assert not cls or b["core"] in good, (b, cls)
assert b["cpu_core"] == (cls or None), (b, cls)
PY
    $PY - "$good" <<'PY' || fail "Python: numpy imported first (see above)"
import sys, warnings
import numpy  # loads OpenBLAS, which picks its kernels now
good = sys.argv[1].split()
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import siamidx
b = siamidx.blas_core()
print("python, numpy first:", b["core"], "warnings:", len(w))
if b["weaker"]:  # OpenBLAS misread this CPU: too late to fix, so it must say so
    assert len(w) == 1 and "OPENBLAS_CORETYPE=" in str(w[0].message), [str(x.message) for x in w]
else:
    assert not w, [str(x.message) for x in w]
PY
    OPENBLAS_CORETYPE=Prescott $PY - <<'PY' || fail "Python: OPENBLAS_CORETYPE=Prescott (see above)"
import warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    import siamidx
b = siamidx.blas_core()
assert b["core"] == "Prescott" and b["weaker"] and not w, (b, [str(x.message) for x in w])
PY
else
    echo "note: no numpy or no build tree: Python part not checked"
fi

[ $failures -eq 0 ] && echo "test_blas_core: ok"
[ $failures -eq 0 ]
