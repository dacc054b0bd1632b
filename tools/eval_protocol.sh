#!/bin/sh
# The evaluation protocol of docs/evaluation.md, from collections to figures.
#
#   tools/eval_protocol.sh [OPTIONS] WORKDIR COLLECTION...
#
# COLLECTION: a folder with index.csv, or a CSV (filename,artist and
# optionally source_repo,source_path; filenames relative to the CSV's folder).
#
# 1. Writes, in WORKDIR (pointing at the original image files; nothing is copied):
#      all.csv              every image, absolute paths
#      unseen_artists.txt   a seeded draw of --unseen N artists, spread over
#                           sources and style folders (round-robin over the
#                           (source, top folder) each artist mostly comes from)
#      train.csv            every image of the other artists: give exactly this
#                           to `siamidx train-encoder` so the encoder never sees
#                           the unseen artists either
#      unseen.csv           the unseen artists' images
#      seen_test.csv/.txt   a seeded tenth of each other artist's images (at
#                           least one of 3 or more): the "seen" population
#      encoder.csv          train.csv without seen_test: give exactly this to
#                           `siamidx train-encoder`, so the encoder sees neither
#                           the unseen artists nor the seen test images
# 2. Unless --prepare-only: indexes train.csv with MODEL, trains the head on it
#    with seen_test.txt as its test images (`siamidx train --seed S
#    --test-images`), adds unseen.csv to the index, and runs
#    `siamidx eval --unseen-artists unseen_artists.txt` (eval.json, eval.txt).
#
# Options:
#   -m MODEL                 model to measure (required unless --prepare-only)
#   --unseen N               artists to keep out (default 30)
#   --seed S                 the draw, the head's split and the pairs (default 1)
#   --pairs N                same-artist pairs per population (default 10000)
#   --encoder-collection C   a collection the encoder was already trained on:
#                            its artists are never drawn as unseen (repeatable)
#   --reuse INDEX            start from a copy of INDEX, an index of the same
#                            images built with MODEL (an earlier protocol run,
#                            any draw): the unseen artists' records are removed
#                            and the rest is not embedded again. Same embeddings;
#                            the head's validation draw can differ from a fresh
#                            build's, as record order does
#   --prepare-only           stop after step 1
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SIAMIDX_BIN:-$here/build/siamidx}
python=${PYTHON:-python3}
model= unseen=30 seed=1 pairs=10000 prepare_only=0 encoder_colls= reuse=
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    -m) model=$2; shift 2 ;;
    --unseen) unseen=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --encoder-collection) encoder_colls="$encoder_colls
$2"; shift 2 ;;
    --reuse) reuse=$2; shift 2 ;;
    --prepare-only) prepare_only=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "eval_protocol.sh: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -ge 2 ] || usage
work=$1; shift
[ $prepare_only -eq 1 ] || [ -n "$model" ] || { echo "eval_protocol.sh: -m MODEL is required" >&2; exit 2; }
mkdir -p "$work"

# ---- 1. the draw -------------------------------------------------------------------
ENCODER_COLLECTIONS=$encoder_colls "$python" - "$work" "$unseen" "$seed" "$@" <<'EOF'
import collections, csv, os, random, sys

work, n_unseen, seed, colls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]

def read(coll):
    path = os.path.join(coll, "index.csv") if os.path.isdir(coll) else coll
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            row = {k.strip().lower(): v for k, v in row.items()}
            name = row.get("filename") or row.get("new_filename")
            if not name or not row.get("artist"):
                continue
            yield {"filename": os.path.normpath(os.path.join(base, name)),
                   "artist": row["artist"],
                   "source_repo": row.get("source_repo", ""),
                   "source_path": row.get("source_path", "")}

rows, seen_paths = [], set()
for c in colls:
    for r in read(c):
        if r["filename"] not in seen_paths:
            seen_paths.add(r["filename"])
            rows.append(r)
excluded = set()
for c in filter(None, os.environ.get("ENCODER_COLLECTIONS", "").split("\n")):
    excluded |= {r["artist"] for r in read(c)}

def stratum(r):
    top = r["source_path"].split("/", 1)[0] if "/" in r["source_path"] else ""
    return (r["source_repo"], top)

by_artist = collections.defaultdict(list)
for r in rows:
    by_artist[r["artist"]].append(r)
# Each candidate's home: the (source, style folder) most of its images come from.
strata = collections.defaultdict(list)
for a in sorted(by_artist):
    if a in excluded or len(by_artist[a]) < 2:
        continue
    home = collections.Counter(stratum(r) for r in by_artist[a]).most_common()
    home = min(k for k, n in home if n == home[0][1])
    strata[home].append(a)
rng = random.Random(seed)
keys = sorted(strata)
rng.shuffle(keys)
for k in keys:
    rng.shuffle(strata[k])
chosen = []
while len(chosen) < n_unseen and any(strata[k] for k in keys):
    for k in keys:
        if strata[k] and len(chosen) < n_unseen:
            chosen.append(strata[k].pop())
if len(chosen) < n_unseen:
    sys.exit(f"eval_protocol.sh: only {len(chosen)} artists can be drawn as unseen")
chosen = sorted(chosen)

fields = ["filename", "artist", "source_repo", "source_path"]
def write(name, part):
    with open(os.path.join(work, name), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(part)
    return len(part)
unseen_set = set(chosen)
n_all = write("all.csv", rows)
n_train = write("train.csv", [r for r in rows if r["artist"] not in unseen_set])
n_un = write("unseen.csv", [r for r in rows if r["artist"] in unseen_set])
# Held-out images of the other artists: a seeded tenth of each artist's images
# (at least one, for artists with 3 or more), never given to the encoder.
hrng = random.Random(seed * 7919 + 1)
held = set()
for a in sorted(by_artist):
    if a in unseen_set or a in excluded or len(by_artist[a]) < 3:
        continue
    files = sorted(r["filename"] for r in by_artist[a])
    hrng.shuffle(files)
    held.update(files[:max(1, round(len(files) * 0.1))])
n_held = write("seen_test.csv", [r for r in rows if r["filename"] in held])
n_enc = write("encoder.csv", [r for r in rows if r["artist"] not in unseen_set and r["filename"] not in held])
with open(os.path.join(work, "seen_test.txt"), "w", encoding="utf-8") as f:
    f.write(f"# {n_held} seen test images, seed {seed}\n")
    f.writelines(r["filename"] + "\n" for r in rows if r["filename"] in held)
with open(os.path.join(work, "unseen_artists.txt"), "w", encoding="utf-8") as f:
    f.write(f"# {len(chosen)} unseen artists, seed {seed}, from {' '.join(colls)}\n")
    for a in chosen:
        s = collections.Counter(stratum(r) for r in by_artist[a]).most_common(1)[0][0]
        f.write(f"{a}\n")
        print(f"  unseen: {a} ({len(by_artist[a])} images, mostly {s[0]} {s[1]})", file=sys.stderr)
print(f"{n_all} images of {len(by_artist)} artists; train.csv {n_train} images of "
      f"{len(by_artist) - len(chosen)} artists; unseen.csv {n_un} images of {len(chosen)} "
      f"artists ({len(excluded & set(by_artist))} artists excluded from the draw as the "
      f"encoder's); encoder.csv {n_enc} images, seen_test.csv {n_held} held-out images of "
      f"the train artists", file=sys.stderr)
EOF
[ $prepare_only -eq 0 ] || exit 0

# ---- 2. index, head, evaluation ------------------------------------------------------
idx=$work/protocol.idx
rm -rf "$idx"
if [ -n "$reuse" ]; then
    [ -d "$reuse" ] || { echo "eval_protocol.sh: --reuse $reuse: no such index" >&2; exit 2; }
    cp -a "$reuse" "$idx"
    grep -v '^#' "$work/unseen_artists.txt" | while IFS= read -r a; do
        set +e
        "$bin" remove -i "$idx" --artist "$a" >/dev/null
        rc=$?
        set -e
        [ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc # 3: the artist was not there
    done
fi
build() {
    set +e
    "$bin" build "$1" -i "$idx" -m "$model" --quiet
    rc=$?
    set -e
    [ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc # 3: some images failed (reported)
}
build "$work/train.csv"
"$bin" train -i "$idx" --seed "$seed" --test-images "$work/seen_test.txt" >&2
build "$work/unseen.csv"
"$bin" eval -i "$idx" --unseen-artists "$work/unseen_artists.txt" --seed "$seed" \
    --pairs "$pairs" --json >"$work/eval.json"
"$bin" eval -i "$idx" --unseen-artists "$work/unseen_artists.txt" --seed "$seed" \
    --pairs "$pairs" >"$work/eval.txt"
cat "$work/eval.txt"
