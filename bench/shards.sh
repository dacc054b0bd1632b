#!/bin/bash
# shards.sh - the speed-up of embedding a collection with N parallel shard
# builds (`siamidx build --shard I/N`, what the Slurm array runs) on this
# machine, against one build:
#
#   N=1, --threads T     one build with every core (T = nproc)
#   N=1, --threads 1     one build, one thread
#   N=P, --threads T/P   P shard builds at once, the cores split between them
#   N=P, --threads 1     P shard builds at once, one thread each (P = nproc: the same as above)
#
# then the merge of the P shards, and a shard re-run (nothing to embed: it
# only stats its own images and hashes every other one, which is what each
# Slurm task pays for the content-hash partition).
# Each configuration runs REPEAT times (default 2) and the fastest counts (a
# shared machine's load only ever slows a run). Prints wall time, images/s,
# CPU time (user + system of all builds: on a loaded machine the wall-clock
# speed-up measures the share of the cores the builds got, CPU time per
# image what the work costs), the speed-up over one build with all threads
# and over one with one thread, and the load average before and after.
#
#   bench/shards.sh [COLLECTION.csv] [N_IMAGES] [BUILD_DIR]
#       default: ../shared/data/paintings/index.csv, 240 images (every k-th row,
#       so that every artist is in), $SIAMIDX_BUILD or ./build; the default model.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
CSV=${1:-$SRC/../shared/data/paintings/index.csv}
N_IMAGES=${2:-240}
BUILD=${3:-${SIAMIDX_BUILD:-$SRC/build}}
BIN=$BUILD/siamidx
MODEL=${SIAMIDX_MODEL:-$SRC/models/default.safetensors}
CORES=$(nproc)
P=${P:-$CORES}
[ -x "$BIN" ] || { echo "no $BIN: build first" >&2; exit 1; }
[ -f "$CSV" ] || { echo "no $CSV" >&2; exit 1; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/shards_bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
root=$(cd "$(dirname "$CSV")" && pwd)
python3 - "$CSV" "$N_IMAGES" "$root" > "$DIR/subset.csv" <<'PY'
import csv, sys, os
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
n, root = int(sys.argv[2]), sys.argv[3]
step = max(1, len(rows) // n)
w = csv.writer(sys.stdout)
w.writerow(["filename", "artist"])
for r in rows[::step][:n]:
    w.writerow([os.path.join(root, r["filename"]), r["artist"]])
PY
n=$(($(wc -l < "$DIR/subset.csv") - 1))
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "collection: $n images of $CSV; model $MODEL; $CORES cores; load average $(load)"
# Reads every image once so that the first timed run does not pay the page cache.
cat $(tail -n +2 "$DIR/subset.csv" | cut -d, -f1) > /dev/null 2>&1 || true

secs() { python3 -c "import time; print(time.time())"; }
REPEAT=${REPEAT:-2}
# run NAME SHARDS THREADS: SHARDS builds at once (1: no --shard); prints the
# wall seconds and the CPU seconds (user + system, every build together) of
# the fastest of REPEAT fresh runs.
run() {
    local best="" t
    for ((r = 0; r < REPEAT; r++)); do
        t=$(run_once "$@")
        best=$(python3 -c "
r = [tuple(map(float, x.split(':'))) for x in '$best $t'.split()]
print('%.2f:%.2f' % min(r))")
    done
    echo "$best"
}
run_once() {
    local TIMEFORMAT='%R:%U:%S' t
    t=$( { time run_builds "$@" > /dev/null; } 2>&1 | tail -n 1)
    python3 -c "w, u, s = map(float, '$t'.split(':')); print('%.2f:%.2f' % (w, u + s))"
}
run_builds() {
    local shards=$2 threads=$3
    rm -rf "$DIR/$1".*
    if [ "$shards" = 1 ]; then
        "$BIN" build "$DIR/subset.csv" -i "$DIR/$1.idx" -m "$MODEL" --threads "$threads" --quiet > "$DIR/$1.log"
    else
        local pids=()
        for ((i = 0; i < shards; i++)); do
            "$BIN" build "$DIR/subset.csv" -i "$DIR/$1.$i.idx" -m "$MODEL" --shard $i/$shards \
                --threads "$threads" --quiet > "$DIR/$1.$i.log" &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p"; done
    fi
}
wall() { echo "${1%%:*}"; }
cpu() { echo "${1##*:}"; }
rate() { python3 -c "print('%.1f' % ($n / $(wall "$1")))"; }
per() { python3 -c "print('%.1f' % (1000 * $(cpu "$1") / $n))"; }
ratio() { python3 -c "print('%.2f' % ($(wall "$1") / $(wall "$2")))"; }
row() { # BUILDS THREADS RESULT SPEEDUP
    echo "| $1 | $2 | $(wall "$3") | $(rate "$3") | $(cpu "$3") | $(per "$3") | $4 |"
}

t_1_all=$(run one_all 1 "$CORES")
t_1_one=$(run one_one 1 1)
split=$((CORES / P > 0 ? CORES / P : 1))
t_p_split=$(run par_split "$P" "$split")
t_p_one=$t_p_split
[ "$split" = 1 ] || t_p_one=$(run par_one "$P" 1)
shards=()
for ((i = 0; i < P; i++)); do shards+=("$DIR/par_split.$i.idx"); done
t0=$(secs)
"$BIN" merge -i "$DIR/merged.idx" "${shards[@]}" --quiet > "$DIR/merge.log"
t_merge=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
t0=$(secs)
"$BIN" build "$DIR/subset.csv" -i "$DIR/par_split.0.idx" -m "$MODEL" --shard 0/$P --threads 1 --quiet > "$DIR/rerun.log"
t_rerun=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
"$BIN" dump -i "$DIR/one_all.idx" | cut -f1-3 | sort > "$DIR/a"
"$BIN" dump -i "$DIR/merged.idx" | cut -f1-3 | sort > "$DIR/b"
cmp -s "$DIR/a" "$DIR/b" || { echo "the merged index holds other records than the single build" >&2; exit 1; }

echo
echo "| builds at once | threads each | wall s | images/s | CPU s | CPU ms/image | speed-up (wall) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"
row 1 "$CORES" "$t_1_all" "1.00"
row 1 1 "$t_1_one" "$(ratio "$t_1_all" "$t_1_one") over 1 x $CORES threads"
row "$P" "$split" "$t_p_split" "$(ratio "$t_1_all" "$t_p_split") over 1 x $CORES threads, $(ratio "$t_1_one" "$t_p_split") over 1 x 1 thread"
[ "$split" = 1 ] || row "$P" 1 "$t_p_one" "$(ratio "$t_1_all" "$t_p_one") over 1 x $CORES threads, $(ratio "$t_1_one" "$t_p_one") over 1 x 1 thread"
echo
echo "merge of the $P shards: $t_merge s ($(cat "$DIR/merge.log"))"
echo "shard 0/$P re-run, nothing to embed: $t_rerun s ($(cat "$DIR/rerun.log"))"
echo "load average after: $(load)"
