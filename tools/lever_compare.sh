#!/bin/sh
# Short, equal-compute comparison of encoder-training levers on a seeded subset
# (issue 10: "compare levers in short runs of equal compute, then give the winner
# one long run"). Figures it produced are in docs/evaluation.md ("Levers").
#
#   tools/lever_compare.sh WORKDIR [EPOCHS] [LEVER...]
#
# 1. WORKDIR/subset.csv: ARTISTS (default 70) artists drawn with seed 7 from
#    ../shared/data/paintings and ../shared/data/paintings-extra, at most
#    PER_ARTIST (default 40) images each (absolute paths, provenance kept;
#    nothing copied).
# 2. tools/eval_protocol.sh --prepare-only --unseen UNSEEN (default 20): kept out
#    of training entirely (WORKDIR/prep/train.csv is what every encoder trains on).
# 3. Per LEVER (default: base cosface_processing), one train-encoder run of
#    EPOCHS (default 8) at resnet18 width 0.5, 128 px crops, batch 32, seed 1,
#    then the whole protocol (`--pairs 2000`) in WORKDIR/LEVER/.
# Levers: base (softmax), cosface (--objective cosface), processing
# (--augment processing), cosface_processing (both), processing_both
# (--augment processing --objective both: softmax plus the pair BCE),
# processing_ema (--augment processing --ema 0.999), processing_w075 (--width
# 0.75: about 2.25x the cost of a step) and processing_160 (--input-size 160:
# about 1.56x). EPOCHS is one figure for every lever of a call: give the costlier
# levers their own call with EPOCHS divided by their cost, for equal compute.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SIAMIDX_BIN:-$here/build/siamidx}
shared=${SIAMIDX_SHARED:-$here/../shared}
work=$1
epochs=${2:-8}
[ $# -ge 2 ] && shift 2 || shift 1
levers=${*:-base cosface_processing}
artists=${ARTISTS:-70}
per_artist=${PER_ARTIST:-40}
unseen=${UNSEEN:-20}
mkdir -p "$work"
python3 - "$shared" "$work/subset.csv" "$artists" "$per_artist" <<'PY'
import csv, os, random, sys
shared, out = sys.argv[1], sys.argv[2]
n_artists, per_artist = int(sys.argv[3]), int(sys.argv[4])
rows = {}
for coll in ("paintings", "paintings-extra"):
    d = os.path.join(shared, "data", coll)
    with open(os.path.join(d, "index.csv"), newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["artist"], []).append(
                (os.path.join(d, r["filename"]), r["artist"], r.get("source_repo", ""), r.get("source_path", "")))
rng = random.Random(7)
artists = sorted(rows)
rng.shuffle(artists)
with open(out, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["filename", "artist", "source_repo", "source_path"])
    for a in sorted(artists[:n_artists]):
        imgs = sorted(rows[a])
        rng.shuffle(imgs)
        for r in sorted(imgs[:per_artist]):
            w.writerow(r)
PY
SIAMIDX_BIN=$bin "$here/tools/eval_protocol.sh" --prepare-only --unseen "$unseen" --seed 1 "$work/prep" "$work/subset.csv"
for lever in $levers; do
    width=0.5 input=128
    case $lever in
    base) opts= ;;
    cosface) opts="--objective cosface" ;;
    processing) opts="--augment processing" ;;
    cosface_processing) opts="--objective cosface --augment processing" ;;
    processing_both) opts="--augment processing --objective both" ;;
    processing_ema) opts="--augment processing --ema 0.999" ;;
    processing_w075) opts="--augment processing" width=0.75 ;;
    processing_160) opts="--augment processing" input=160 ;;
    *) echo "lever_compare.sh: unknown lever $lever" >&2; exit 2 ;;
    esac
    mkdir -p "$work/$lever"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" train-encoder "$work/prep/train.csv" -o "$work/$lever/model.safetensors" \
        --arch resnet18 --width "$width" --input-size "$input" --epochs "$epochs" --batch 32 --seed 1 \
        --threads 2 --no-head --log-seconds 60 $opts > "$work/$lever/train.log" 2>&1
    echo "$lever: trained in $(( $(date +%s) - start )) s"
    SIAMIDX_BIN=$bin "$here/tools/eval_protocol.sh" -m "$work/$lever/model.safetensors" \
        --unseen "$unseen" --seed 1 --pairs 2000 "$work/$lever" "$work/subset.csv" > "$work/$lever/protocol.log" 2>&1
    echo "$lever: evaluated ($work/$lever/eval.json)"
done
