#!/bin/bash
# test_layers.sh - the library's layers depend one way (libsiamidx/LAYERS,
# docs/layers.md): tools/check_layers.py parses every #include of the library
# and the CLI, reads the calls between the built objects with nm, and fails
# on a layer using one it may not, on any cycle between modules, and on the
# CLI reaching past siamidx.h / siamidx_ext.h. The checker is first shown to
# catch each kind of violation on a copy of the sources.
set -u
SRC=${SIAMIDX_SOURCE:?}
BUILD=${SIAMIDX_BUILD:-}
T="${SIAMIDX_TMP:-/tmp}/test_layers"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }
CHECK="python3 $SRC/tools/check_layers.py"

# ---- the tree as it is ----
if command -v nm >/dev/null && [ -n "$BUILD" ] && [ -d "$BUILD/CMakeFiles/siamidx_objects.dir" ]; then
    out=$($CHECK "$SRC" "$BUILD" 2>&1) || fail "layer rule broken:"$'\n'"$out"
    [[ $out == *"calls checked"* ]] || fail "calls were not checked: $out"
else
    echo "note: no nm or no build objects: includes only"
    out=$($CHECK "$SRC" 2>&1) || fail "layer rule broken:"$'\n'"$out"
fi

# ---- the checker catches what it must (on copies of the sources) ----
copy() {
    rm -rf "$T" && mkdir -p "$T" && cp -r "$SRC/libsiamidx" "$SRC/include" "$SRC/cli" "$T/"
}
expect_violation() { # what, pattern
    local got
    got=$($CHECK "$T" 2>&1) && { fail "$1 not caught"; return; }
    [[ $got == *"$2"* ]] || fail "$1: expected '$2' in: $got"
}
copy
sed -i '0,/#include "nn\/model.h"/s//#include "nn\/model.h"\n#include "head\/head.h"/' "$T/libsiamidx/nn/model.c"
expect_violation "a lower layer including a higher one" "nn/model.c: includes head/head.h: layer nn may not use head"
copy
echo '#include "head/head_train.h"' >> "$T/libsiamidx/head/head.h"
expect_violation "an include cycle inside a layer" "head/head <-> head/head_train"
copy
printf 'index head\n' >> "$T/libsiamidx/LAYERS" # index may not be redeclared to use head...
sed -i 's/^head  *base data nn$/head      base data nn index/' "$T/libsiamidx/LAYERS"
expect_violation "a cycle between layers" "LAYERS: cycle"
copy
echo '#include "store/store.h"' >> "$T/cli/cli.h"
expect_violation "the CLI including an internal header" "cli/cli.h: includes \"store/store.h\""
copy
mkdir -p "$T/libsiamidx/misc" && echo 'int x;' > "$T/libsiamidx/misc/x.c"
expect_violation "a file outside the layer folders" "misc/x.c: not in a layer folder"
rm -rf "$T"

[ $failures -eq 0 ] && echo ok || { echo "$failures failure(s)"; exit 1; }
