#!/bin/sh
# The main job, from nothing: install dependencies, build, index a collection
# of paintings with the default model and ask it who painted one of them.
#   tools/quickstart.sh [COLLECTION] [QUERY_IMAGE]
# COLLECTION defaults to ../shared/data/paintings; the model is $SIAMIDX_MODEL
# or the bundled models/default.safetensors.
set -eu
cd "$(dirname "$0")/.."

tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"

collection=${1:-../shared/data/paintings}
model=${SIAMIDX_MODEL:-models/default.safetensors}
if [ ! -f "$model" ]; then
    echo "siamidx: built, but no default model is bundled yet ($model does not exist)." >&2
    echo "siamidx: pass one with SIAMIDX_MODEL=FILE (see tools/convert_torchvision.py) and rerun." >&2
    exit 1
fi
if [ ! -e "$collection" ]; then
    echo "siamidx: collection '$collection' not found: give a folder of artist folders or a CSV" >&2
    exit 1
fi
query=${2:-}
if [ -z "$query" ]; then
    query=$(find "$collection" -type f \( -iname '*.jpg' -o -iname '*.png' \) | sort | head -n 1)
fi
index=build/quickstart.idx
set +e
build/siamidx build "$collection" -i "$index" -m "$model"
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc
build/siamidx info -i "$index" -m "$model"
build/siamidx query "$query" -i "$index" -m "$model" -k 5
