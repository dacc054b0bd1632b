#!/bin/bash
# test_install.sh - an installed siamidx serves outside programs.
#
# Installs the build ($SIAMIDX_BUILD, else a fresh configure+build of the
# library and CLI) into a temporary prefix, builds examples/pair_check.c and
# examples/attribute.c against it twice -- with a plain
# `cc x.c $(pkg-config --cflags --libs siamidx)` and with an outside CMake
# project using find_package(siamidx) -- runs them without LD_LIBRARY_PATH on
# the tiny head-carrying model, fixture images and a synthetic index, and
# checks their answers equal the CLI's (`siamidx pair --json`, `siamidx query
# --json`) for the same inputs; then imports the installed Python package with
# Debian's /usr/bin/python3 and checks it against the installed CLI.
set -u
SRC=${SIAMIDX_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=${SIAMIDX_TEST_DATA:-$SRC/tests/data}
mkdir -p "${SIAMIDX_TMP:-/tmp}" 2>/dev/null
TMP=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/install.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M=$DATA/model/tiny_resnet18_head.safetensors
M0=$DATA/model/tiny_resnet18.safetensors       # same encoder, no head
M50=$DATA/model/tiny_resnet50.safetensors      # another encoder
IMG=$DATA/images
PREFIX=$TMP/prefix
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }
unset LD_LIBRARY_PATH # the programs must find libsiamidx through their rpath

for tool in cmake pkg-config python3 "${CC:-cc}"; do
    command -v "$tool" >/dev/null || { echo "skip: $tool not found" >&2; exit 77; }
done

# ---- install ----
BUILD=${SIAMIDX_BUILD:-}
if [ -z "$BUILD" ]; then
    BUILD=$TMP/build
    cmake -S "$SRC" -B "$BUILD" -DSIAMIDX_BUILD_TESTS=OFF -DSIAMIDX_BUILD_EXAMPLES=OFF \
        >"$TMP/configure.log" 2>&1 || die "configure: $(tail -5 "$TMP/configure.log")"
    cmake --build "$BUILD" -j2 --target siamidx siamidx_cli >"$TMP/build.log" 2>&1 ||
        die "build: $(tail -5 "$TMP/build.log")"
fi
# An ASan/UBSan library only runs in programs built with the sanitizers too.
if grep -q '^SIAMIDX_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "skip: sanitizer build; install a plain build" >&2
    exit 77
fi
cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1 ||
    die "cmake --install: $(tail -5 "$TMP/install.log")"
BIN=${SIAMIDX_BIN:-$PREFIX/bin/siamidx}
[ -x "$PREFIX/bin/siamidx" ] || fail "no bin/siamidx installed"
"$PREFIX/bin/siamidx" --version >/dev/null || fail "installed CLI does not run"
# The public API and its documented, less stable extension (what the CLI uses).
[ "$(ls "$PREFIX/include" | tr '\n' ' ')" = "siamidx.h siamidx_ext.h " ] ||
    fail "include/ holds: $(ls "$PREFIX/include")"
pc=$(find "$PREFIX" -name siamidx.pc)
[ -n "$pc" ] || die "no siamidx.pc installed"
LIBDIR=$(dirname "$(dirname "$pc")")
[ -e "$LIBDIR/libsiamidx.so" ] || fail "libsiamidx.so is not beside pkgconfig/ in $LIBDIR"
[ -e "$LIBDIR/cmake/siamidx/siamidxConfig.cmake" ] || fail "no siamidxConfig.cmake in $LIBDIR"
if [ -e "$SRC/models/default.safetensors" ]; then
    [ -e "$PREFIX/share/siamidx/default.safetensors" ] || fail "default model not under the prefix"
fi
# --prefix moves everything: nothing may land outside it
outside=$(grep -v "^$PREFIX/" "$BUILD/install_manifest.txt" 2>/dev/null)
[ -z "$outside" ] || fail "installed outside --prefix: $outside"

# Only the public API leaves the library: no FAISS or sx_* symbols.
if command -v nm >/dev/null; then
    leaked=$(nm -D --defined-only "$LIBDIR/libsiamidx.so" | awk '$3 !~ /^siamidx_/ { print $3 }')
    [ -z "$leaked" ] || fail "non-API symbols exported: $(echo "$leaked" | head -3 | tr '\n' ' ')"
fi

# ---- build the examples both ways ----
export PKG_CONFIG_PATH=$(dirname "$pc")
mkdir -p "$TMP/pc"
for ex in pair_check attribute; do
    # shellcheck disable=SC2046 # pkg-config's output is meant to split
    "${CC:-cc}" -std=c11 -Wall -Wextra -Werror "$SRC/examples/$ex.c" \
        $(pkg-config --cflags --libs siamidx) -o "$TMP/pc/$ex" 2>"$TMP/pc/$ex.log" ||
        fail "cc $ex.c with pkg-config: $(head -5 "$TMP/pc/$ex.log")"
done
pkg-config --libs siamidx | grep -qE -- '-l(openblas|lmdb|faiss|gomp|stdc\+\+)' &&
    fail "private dependencies leak into pkg-config Libs: $(pkg-config --libs siamidx)"

mkdir -p "$TMP/proj"
cat >"$TMP/proj/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.18)
project(outside C)
find_package(siamidx 0.1 REQUIRED)
foreach(ex pair_check attribute)
  add_executable(\${ex} "$SRC/examples/\${ex}.c")
  target_link_libraries(\${ex} PRIVATE siamidx::siamidx)
endforeach()
EOF
if cmake -S "$TMP/proj" -B "$TMP/cm" -DCMAKE_PREFIX_PATH="$PREFIX" >"$TMP/cm.log" 2>&1 &&
    cmake --build "$TMP/cm" >>"$TMP/cm.log" 2>&1; then
    :
else
    fail "find_package(siamidx) project: $(grep -iE 'error|undefined' "$TMP/cm.log" | head -5)"
fi

for dir in "$TMP/pc" "$TMP/cm"; do
    [ -x "$dir/pair_check" ] || continue
    ldd "$dir/pair_check" | grep -q "libsiamidx.so.* => $PREFIX" ||
        fail "$dir/pair_check does not load the installed libsiamidx: $(ldd "$dir/pair_check" | grep siamidx)"
done

# ---- the answers equal the CLI's ----
# "P(same artist) = P, threshold T: VERDICT" from `siamidx pair --json`
pair_expect() {
    python3 -c 'import json, sys
d = json.load(sys.stdin)
print("P(same artist) = %.6f, threshold %.6f: %s" % (d["probability"], d["threshold"],
      "same artist" if d["same_artist"] else "different artists"))'
}
# "P  ARTIST" lines for the first K artists, then the unknown share, from `siamidx query --json`
query_expect() {
    python3 -c 'import json, sys
d, k = json.load(sys.stdin), int(sys.argv[1])
for a in d["artists"][:k]: print("%.6f  %s" % (a["probability"], a["artist"]))
if d["unknown"] > 0: print("%.6f  (unknown)" % d["unknown"])' "$1"
}
compare() { # what, got, expected
    [ -n "$3" ] || { fail "$1: no CLI answer"; return; }
    [ "$2" = "$3" ] || fail "$1: example says '$2', CLI says '$3'"
}
# pair_check with the model's head (-m) and with the index's trained head (-i)
check_pair() { # dir, image a, image b
    compare "pair_check -m ($1)" "$("$1/pair_check" -m "$M" "$2" "$3")" \
        "$("$BIN" pair "$2" "$3" -m "$M" --json | pair_expect)"
    compare "pair_check -i ($1)" "$("$1/pair_check" -m "$M" -i "$TMP/idx" "$2" "$3")" \
        "$("$BIN" pair "$2" "$3" -m "$M" -i "$TMP/idx" --json | pair_expect)"
}

A=$IMG/photo_480x360.jpg
B=$IMG/grad_300x180.png
C=$IMG/gray_90x70.jpg
python3 "$SRC/tools/make_test_bmps.py" "$TMP/col" 3 8 || die "make_test_bmps.py"
"$BIN" build "$TMP/col" -i "$TMP/idx" -m "$M" --quiet >/dev/null 2>&1 || die "siamidx build"
"$BIN" train -i "$TMP/idx" --val-fraction 0.5 --seed 3 >/dev/null 2>&1 || die "siamidx train"
X=$TMP/col/artist_1/img_2.bmp

checked=0
for dir in "$TMP/pc" "$TMP/cm"; do
    [ -x "$dir/pair_check" ] && [ -x "$dir/attribute" ] || continue
    check_pair "$dir" "$A" "$B"
    check_pair "$dir" "$B" "$C"
    check_pair "$dir" "$C" "$C"
    check_pair "$dir" "$X" "$A"
    for q in "$X" "$A"; do
        for k in 1 3; do
            got=$("$dir/attribute" -m "$M" -i "$TMP/idx" -k $k "$q")
            compare "attribute -k $k ($dir)" "$got" \
                "$("$BIN" query "$q" -m "$M" -i "$TMP/idx" -k $k --json | query_expect $k)"
            [ "$(echo "$got" | grep -vc unknown)" -eq $k ] || fail "attribute -k $k: $got"
        done
    done
    # failures: named, exit 1; usage: exit 2
    err=$("$dir/pair_check" -m "$M0" "$A" "$B" 2>&1 >/dev/null); rc=$?
    [ $rc -eq 1 ] && [[ $err == *"no trained head"* ]] || fail "pair_check without head: $rc $err"
    err=$("$dir/attribute" -m "$M50" -i "$TMP/idx" "$A" 2>&1 >/dev/null); rc=$?
    [ $rc -eq 1 ] && [[ $err == *"was built with model"* ]] || fail "attribute, other model: $rc $err"
    err=$("$dir/pair_check" -m "$M" "$A" "$TMP/nope.jpg" 2>&1 >/dev/null); rc=$?
    [ $rc -eq 1 ] && [[ $err == *nope.jpg* ]] || fail "pair_check, missing image: $rc $err"
    "$dir/pair_check" -m "$M" "$A" >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ] || fail "pair_check with one image: exit $rc"
    checked=$((checked + 1))
done
[ $checked -eq 2 ] || fail "only $checked of 2 builds of the examples could be run"

# ---- the Python package: where Debian's python3 finds it for the prefix ----
# /usr/bin/python3 with the prefix's site directories (what it searches for P:
# site.getsitepackages([P])) imports the installed package, which loads the
# installed library (no SIAMIDX_LIBRARY), and answers as the installed CLI does.
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    SIAMIDX_LIBRARY= PYTHONPATH= /usr/bin/python3 - "$PREFIX" "$BIN" "$M" "$A" "$B" "$TMP/idx" <<'PY' ||
import json, os, site, subprocess, sys
prefix, cli, model_path, a, b, index = sys.argv[1:]
os.environ.pop("SIAMIDX_LIBRARY", None)
for d in site.getsitepackages([prefix]):
    site.addsitedir(d)
import siamidx  # first: it picks OpenBLAS's kernels as the CLI does (docs/performance.md)
import numpy as np
assert siamidx.__file__.startswith(prefix + "/"), siamidx.__file__
assert siamidx._lib._name.startswith(prefix + "/"), siamidx._lib._name
m = siamidx.Model(model_path)
got = m.embed([a, b])
rows = subprocess.run([cli, "embed", "-m", model_path, a, b], capture_output=True, check=True).stdout
want = np.array([[float(v) for v in l.split("\t")[1:]] for l in rows.decode().splitlines()], np.float32)
assert got.shape == want.shape and np.abs(got - want).max() < 1e-5, np.abs(got - want).max()
with siamidx.Index(index, model=m) as idx:
    q = idx.query(a, k=3)
    cq = json.loads(subprocess.run([cli, "query", a, "-i", index, "-m", model_path, "-k", "3", "--json"],
                                   capture_output=True, check=True).stdout)
    assert q == cq, (q, cq)
print("python: installed package ok")
PY
        fail "the installed Python package (see above)"
    find "$PREFIX" -path '*dist-packages/siamidx/__init__.py' | grep -q . || fail "no siamidx package under $PREFIX"
else
    echo "note: /usr/bin/python3 has no numpy (python3-numpy): the Python package is not checked" >&2
fi

[ $failures -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok"
