#!/bin/bash
# test_shard_merge.sh - build --shard I/4 for every I, then merge, equals one
# build of the same collection: same images, artists, hashes, embeddings
# (within 1e-6) and query answers. Shards are ordinary indexes (info, verify,
# query), disjoint, re-runs embed nothing; a file whose new bytes hash to
# another shard moves there. merge is idempotent, adds shards to an existing
# index, splits a shard too big for one transaction, and refuses (exit 1,
# OUT unchanged) another model, the same path or the same bytes under another
# artist, and OUT itself.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
OTHER=$SRC/tests/data/model/tiny_resnet50.safetensors
[ -f "$MODEL" ] && [ -f "$OTHER" ] || { echo "skipped: no $MODEL or $OTHER"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/shard.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
cd "$T"
python3 "$SRC/tools/make_test_bmps.py" col 6 12
# The same bytes under two artists inside one collection: build accepts it,
# and both copies land in one shard.
cp col/artist_0/img_0.bmp col/artist_5/twin_of_a0.bmp
TOTAL=73
build() { "$BIN" build col -m "$MODEL" --threads 2 --batch 8 --quiet "$@"; }
images() { "$BIN" info -i "$1" --json | json 'd["n_images"]'; }

source "$SRC/tests/compare_index.sh" # same_index A B QUERY...
QUERIES="col/artist_0/img_0.bmp col/artist_2/img_5.bmp col/artist_4/img_11.bmp"

build -i full.idx > out || fail "single build: $(cat out)"

# ---- four shards ---------------------------------------------------------------------------------
sum=0
for i in 0 1 2 3; do
    build -i s$i.idx --shard $i/4 > out$i 2>&1 || fail "shard $i: $(cat out$i)"
    n=$(images s$i.idx)
    sum=$((sum + n))
    grep -q "indexed $n, unchanged 0, failed 0, other shards $((TOTAL - n))," out$i ||
        fail "shard $i summary: $(cat out$i)"
    [ "$("$BIN" info -i s$i.idx --json | json 'd["shard"]["index"], d["shard"]["count"]')" = "$i 4" ] ||
        fail "shard $i: info does not name the shard"
    "$BIN" info -i s$i.idx | grep -q "^shard        $i/4" || fail "shard $i: info text"
    "$BIN" verify -i s$i.idx > v || fail "shard $i: verify: $(cat v)"
    "$BIN" query col/artist_1/img_1.bmp -i s$i.idx -m "$MODEL" -k 3 > q || fail "shard $i: query"
    # A re-run embeds nothing: its own images are unchanged, the others skipped.
    build -i s$i.idx --shard $i/4 > again 2>&1 || fail "shard $i rerun: $(cat again)"
    grep -q "indexed 0, unchanged $n, failed 0, other shards $((TOTAL - n)),.*(embedded 0, reused 0)" again ||
        fail "shard $i rerun is not a no-op: $(cat again)"
    [ "$n" -gt 5 ] || fail "shard $i holds only $n of $TOTAL images"
done
[ $sum = $TOTAL ] || fail "the shards hold $sum images, the collection $TOTAL"
# Disjoint, and the partition is the documented one: SHA-256[0:8] big-endian mod 4.
for i in 0 1 2 3; do "$BIN" dump -i s$i.idx | awk -v s=$i -F'\t' '{print s "\t" $1 "\t" $3}'; done > parts
python3 - parts <<'PY' || fail "shards are not the content-hash partition"
import sys
seen = {}
for line in open(sys.argv[1]):
    shard, path, digest = line.rstrip("\n").split("\t")
    assert path not in seen, "in two shards: " + path
    seen[path] = 1
    assert int(digest[:16], 16) % 4 == int(shard), (path, shard)
PY
# The twins (same bytes) share a shard.
grep -c "twin_of_a0\|artist_0/img_0.bmp" parts | grep -qx 2 || fail "twin images"
[ "$(grep -E 'twin_of_a0|artist_0/img_0.bmp' parts | cut -f1 | sort -u | wc -l)" = 1 ] ||
    fail "identical images in two shards"

# ---- misuse of shards ------------------------------------------------------------------------------
build -i bad.idx --shard 4/4 > out 2> err; rc=$?
[ $rc = 2 ] && grep -q "0 <= I < N" err || fail "--shard 4/4: exit $rc: $(cat err)"
for spec in 1 -1/4 1/0 a/4 1/4x; do
    build -i bad.idx --shard "$spec" > out 2>&1 && fail "--shard '$spec' accepted"
done
[ -e bad.idx ] && fail "a refused --shard left an index"
build -i s0.idx --shard 1/4 > out 2> err && fail "s0.idx rebuilt as shard 1/4"
grep -q "is shard 0/4, not 1/4" err || fail "wrong shard spec message: $(cat err)"
build -i s0.idx > out 2> err && fail "shard built whole"
grep -q "is shard 0/4: build it with --shard 0/4" err || fail "whole build message: $(cat err)"
"$BIN" add col/artist_0/img_1.bmp --artist x -i s0.idx -m "$MODEL" > out 2> err && fail "add to a shard"
build -i full.idx --shard 0/4 > out 2> err && fail "an unsharded index took a shard"
grep -q "holds $TOTAL images of a build without --shard" err || fail "unsharded message: $(cat err)"

# ---- merge ---------------------------------------------------------------------------------------------
"$BIN" merge -i m.idx s0.idx s1.idx s2.idx s3.idx > out 2>&1 || fail "merge: $(cat out)"
grep -q "merged 4 shard(s), $TOTAL records: added $TOTAL, replaced 0, unchanged 0, kept newer 0 (4 write" out ||
    fail "merge summary: $(cat out)"
"$BIN" verify -i m.idx > v || fail "verify merged: $(cat v)"
same_index full.idx m.idx $QUERIES || fail "merged index differs from the single build"
[ "$("$BIN" info -i m.idx --json | json 'd["shard"]')" = None ] || fail "merged index still says it is a shard"
"$BIN" info -i full.idx --json | json 'd["artists"]' > a1
"$BIN" info -i m.idx --json | json 'd["artists"]' > a2
cmp -s a1 a2 || fail "artists differ: $(cat a1) vs $(cat a2)"
# Idempotent: a re-run writes no record.
gen=$("$BIN" info -i m.idx --json | json 'd["generation"]')
"$BIN" merge -i m.idx s3.idx s1.idx s0.idx s2.idx > out 2>&1 || fail "merge rerun: $(cat out)"
grep -q "added 0, replaced 0, unchanged $TOTAL" out || fail "merge rerun: $(cat out)"
[ "$("$BIN" info -i m.idx --json | json 'd["generation"]')" = "$gen" ] || fail "merge rerun changed the store"
# Shards added to an existing index, in two steps and another order.
"$BIN" merge -i m2.idx s2.idx s0.idx --quiet > out 2>&1 || fail "merge step 1: $(cat out)"
"$BIN" merge -i m2.idx s3.idx s1.idx --quiet > out 2>&1 || fail "merge step 2: $(cat out)"
same_index full.idx m2.idx $QUERIES || fail "merged in two steps differs"
# A shard too big for one transaction (the test hook makes write 41 of a
# transaction fail as MDB_TXN_FULL): committed in parts, same result.
SIAMIDX_TEST_TXN_PUTS=40 "$BIN" merge -i m3.idx s0.idx s1.idx s2.idx s3.idx --quiet > out 2>&1 ||
    fail "merge with small transactions: $(cat out)"
t=$(sed -n 's/.*(\([0-9]*\) write transaction.*/\1/p' out)
[ "${t:-0}" -gt 4 ] || fail "no shard was split: $(cat out)"
same_index full.idx m3.idx $QUERIES || fail "merged in split transactions differs"

# ---- a changed file whose new bytes hash to another shard ------------------------------------------------
f=col/artist_3/img_7.bmp
old=$(python3 -c "import hashlib,sys; print(int(hashlib.sha256(open('$f','rb').read()).hexdigest()[:16],16)%4)")
python3 - "$f" "$old" <<'PY'
import hashlib, sys
path, old = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
for pad in range(1, 100):  # trailing bytes: same pixels, new content hash
    new = data + b"x" * pad
    if int(hashlib.sha256(new).hexdigest()[:16], 16) % 4 != old:
        open(path, "wb").write(new)
        break
PY
new=$(python3 -c "import hashlib,sys; print(int(hashlib.sha256(open('$f','rb').read()).hexdigest()[:16],16)%4)")
[ "$new" != "$old" ] || fail "could not move $f to another shard"
build -i full.idx > out 2>&1 || fail "full rebuild after the change: $(cat out)"
build -i s$old.idx --shard $old/4 > out 2>&1 || fail "old shard rebuild: $(cat out)"
grep -q "moved to another shard 1" out || fail "old shard kept the moved file: $(cat out)"
build -i s$new.idx --shard $new/4 > out 2>&1 || fail "new shard rebuild: $(cat out)"
grep -q "indexed 1," out || fail "new shard did not take the moved file: $(cat out)"
"$BIN" merge -i m4.idx s0.idx s1.idx s2.idx s3.idx --quiet > out 2>&1 || fail "merge after the move: $(cat out)"
same_index full.idx m4.idx $QUERIES || fail "merged after the move differs"
# Into the index merged before the change: the newer file replaces the old record.
"$BIN" merge -i m.idx s0.idx s1.idx s2.idx s3.idx --quiet > out 2>&1 || fail "merge the change: $(cat out)"
grep -q "added 0, replaced 1, unchanged $((TOTAL - 1))" out || fail "change not merged: $(cat out)"
same_index full.idx m.idx $QUERIES || fail "merged update differs"
# The old shard's stale copy of that path, merged again, does not undo it.
cp -r m.idx stale.idx
"$BIN" merge -i m.idx m3.idx --quiet > out 2>&1 || fail "merge an older index: $(cat out)"
grep -q "kept newer 1" out || fail "the older version replaced the newer: $(cat out)"
same_index full.idx m.idx $QUERIES || fail "older version won"

# ---- refusals: exit 1, named, OUT unchanged -------------------------------------------------------------
"$BIN" dump -i m.idx > before.tsv
gen=$("$BIN" info -i m.idx --json | json 'd["generation"]')
unchanged() { # what
    "$BIN" dump -i m.idx > after.tsv
    cmp -s before.tsv after.tsv && [ "$("$BIN" info -i m.idx --json | json 'd["generation"]')" = "$gen" ] ||
        fail "$1 changed OUT"
    "$BIN" verify -i m.idx > v || fail "$1: verify: $(cat v)"
}
fp=$("$BIN" info -i m.idx --json | json 'd["model"]["fingerprint"]')
"$BIN" build col -i r50.idx -m "$OTHER" --shard 2/4 --quiet > out 2>&1 || fail "other model shard: $(cat out)"
fp50=$("$BIN" info -i r50.idx --json | json 'd["model"]["fingerprint"]')
"$BIN" merge -i m.idx s0.idx r50.idx > out 2> err; rc=$?
[ $rc = 1 ] || fail "other model: exit $rc"
grep -q "r50.idx was built with model $fp50, m.idx with model $fp" err || fail "other model message: $(cat err)"
unchanged "other model"
"$BIN" merge -i new.idx s1.idx r50.idx > out 2> err && fail "new OUT from two models"
grep -q "the first shard s1.idx with model $fp" err || fail "two models message: $(cat err)"
[ -e new.idx ] && fail "a refused merge left a new OUT"
# The same path under another artist.
{ echo "filename,artist"; echo "col/artist_1/img_4.bmp,Someone Else"; } > relabel.csv
"$BIN" build relabel.csv -i relabel.idx -m "$MODEL" --quiet > out 2>&1 || fail "relabel build: $(cat out)"
"$BIN" merge -i m.idx s0.idx relabel.idx > out 2> err; rc=$?
[ $rc = 1 ] || fail "same path, other artist: exit $rc"
grep -q "conflict: .*col/artist_1/img_4.bmp: by 'Someone Else' in shard relabel.idx, by 'artist_1' in m.idx" err ||
    fail "same path message: $(cat err)"
unchanged "same path, other artist"
# The same bytes under another artist, at another path.
mkdir -p other/imposter && cp col/artist_2/img_3.bmp other/imposter/copy.bmp
"$BIN" build other -i other.idx -m "$MODEL" --quiet > out 2>&1 || fail "imposter build: $(cat out)"
"$BIN" merge -i m.idx other.idx > out 2> err; rc=$?
[ $rc = 1 ] || fail "same bytes, other artist: exit $rc"
grep -q "copy.bmp (by 'imposter' in shard other.idx) is the same image (SHA-256 [0-9a-f]*...) as col/artist_2/img_3.bmp (by 'artist_2' in m.idx)" err ||
    fail "same bytes message: $(cat err)"
unchanged "same bytes, other artist"
# ... but the same bytes under an artist OUT already has them under are fine.
mkdir -p other2/artist_2 && cp col/artist_2/img_3.bmp other2/artist_2/again.bmp
"$BIN" build other2 -i other2.idx -m "$MODEL" --quiet > out 2>&1 || fail "same-artist copy build"
"$BIN" merge -i stale.idx other2.idx > out 2>&1 || fail "same bytes, same artist refused: $(cat out)"
grep -q "added 1," out || fail "same-artist copy: $(cat out)"
# OUT itself; a missing shard; a directory that is no index.
"$BIN" merge -i m.idx s0.idx m.idx > out 2> err && fail "merged OUT into itself"
grep -q "m.idx is m.idx itself" err || fail "self merge message: $(cat err)"
"$BIN" merge -i m.idx nowhere.idx > out 2> err && fail "missing shard accepted"
mkdir -p empty_dir
"$BIN" merge -i m.idx empty_dir > out 2> err && fail "a directory without an index accepted"
unchanged "self, missing and empty shards"
"$BIN" merge -i m.idx > out 2> err; rc=$?
[ $rc = 2 ] || fail "merge without shards: exit $rc"
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
