#!/bin/bash
# test_index_cli.sh - build / add / query / info / remove / verify through the
# CLI on a synthetic collection with bad entries; corrupt and foreign data.mdb.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/index_cli.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

python3 "$SRC/tools/make_test_bmps.py" "$T/col" 3 6
cd "$T"
# Bad entries: a corrupt image, a missing file, an empty artist, a duplicated
# row, a non-UTF-8 artist name; plus an identical image under a second path.
head -c 300 /dev/urandom > col/artist_2/broken.bmp
cp col/artist_0/img_0.bmp col/artist_1/copy_of_a0.bmp
{
    echo "filename,artist,title"
    for a in 0 1 2; do for i in 0 1 2 3 4 5; do echo "col/artist_$a/img_$i.bmp,artist_$a,t$a$i"; done; done
    echo "col/artist_2/broken.bmp,artist_2,broken"
    echo "col/artist_1/missing.bmp,artist_1,gone"
    echo "col/artist_0/img_1.bmp,,no artist"
    echo "col/artist_0/img_0.bmp,artist_0,dup"
    printf 'col/artist_1/img_0.bmp,bad\xff\xfename,x\n'
    echo "col/artist_1/copy_of_a0.bmp,artist_1,copy"
} > list.csv
export SIAMIDX_INDEX=$T/a.idx

"$BIN" build list.csv -m "$MODEL" --threads 2 --batch 5 > out1 2> err1
rc=$?
[ $rc = 3 ] || fail "build with bad entries: exit $rc, want 3"
grep -q "indexed 19," out1 || fail "summary: $(cat out1)"
grep -q "reused 1)" out1 || fail "identical image not reused: $(cat out1)"
grep -q "broken.bmp" err1 || fail "corrupt image not reported"
grep -q "missing.bmp" err1 || fail "missing file not reported"
n=$(grep -c "siamidx:" err1)
[ "$n" -ge 5 ] || fail "expected >= 5 reported entries, got $n: $(cat err1)"
[ "$("$BIN" info --json | json 'd["n_images"]')" = 19 ] || fail "info images"
[ "$("$BIN" info --json | json 'd["n_artists"]')" = 3 ] || fail "info artists"
[ "$("$BIN" info --json | json 'd["index_type"]')" = flat ] || fail "info index_type"
"$BIN" verify > v || fail "verify after a partial build: $(cat v)"

# Incremental: nothing embedded the second time; a touched-but-same file is re-hashed
# a changed file is re-embedded.
"$BIN" build list.csv -m "$MODEL" --quiet > out2 2>/dev/null
grep -q "indexed 0, unchanged 19" out2 || fail "second build: $(cat out2)"
grep -q "embedded 0" out2 || fail "second build embedded: $(cat out2)"
printf 'trailing bytes' >> col/artist_2/img_5.bmp # new content, same pixels
"$BIN" build list.csv -m "$MODEL" --quiet > out3 2>/dev/null
grep -q "indexed 1, unchanged 18" out3 || fail "changed file: $(cat out3)"
grep -q "embedded 1" out3 || fail "changed file embedded: $(cat out3)"

# query: JSON shape, itself named as the exact match (and not among its own
# neighbours), probabilities decreasing and summing to <= 1.
"$BIN" query col/artist_0/img_3.bmp -m "$MODEL" -k 4 --neighbors 4 --json > q.json || fail "query"
python3 - q.json <<'EOF' || fail "query JSON: $(cat q.json)"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["image"] == {"path": "col/artist_0/img_3.bmp"}
nb, ar = d["neighbors"], d["artists"]
assert 1 <= len(nb) <= 4 and 1 <= len(ar) <= 4
assert d["exact_match"] == {"path": "col/artist_0/img_3.bmp", "artist": "artist_0"}
assert all(n["path"] != "col/artist_0/img_3.bmp" for n in nb)
assert all(nb[i]["similarity"] >= nb[i + 1]["similarity"] for i in range(len(nb) - 1))
p = [a["probability"] for a in ar]
assert all(p[i] >= p[i + 1] for i in range(len(p) - 1)) and sum(p) <= 1 + 1e-5
EOF

# add and remove
python3 "$SRC/tools/make_test_bmps.py" "$T/other" 1 1
"$BIN" add other/artist_0/img_0.bmp --artist 'Newcomer "quoted"' -m "$MODEL" > /dev/null || fail "add"
"$BIN" info --json | json '{a["artist"]: a["n_images"] for a in d["artists"]}["Newcomer \"quoted\""]' | grep -qx 1 || fail "added artist"
"$BIN" remove --artist 'Newcomer "quoted"' > /dev/null || fail "remove --artist"
"$BIN" remove col/artist_0/img_4.bmp > /dev/null || fail "remove path"
"$BIN" remove col/artist_0/nothing.bmp 2> e && fail "removing nothing should fail"
grep -q "col/artist_0/nothing.bmp: not in the index" e || fail "unmatched path not named: $(cat e)"
# From another directory: the path exactly as query prints it (as given in the
# CSV), and a mix of matching and unmatched paths (exit 3, the unmatched named).
mkdir -p elsewhere
(
    cd elsewhere
    p=$("$BIN" query ../col/artist_2/img_3.bmp -m "$MODEL" -k 1 --json | json 'd["exact_match"]["path"]')
    [ "$p" = col/artist_2/img_3.bmp ] || echo "FAIL: query printed '$p'"
    "$BIN" remove "$p" > o 2> e || echo "FAIL: remove the path query printed: $(cat e)"
    "$BIN" remove col/artist_2/img_2.bmp no/such.bmp > o 2> e
    rc=$?
    [ $rc = 3 ] && grep -q "removed 1" o && grep -q "no/such.bmp: not in the index" e ||
        echo "FAIL: partial remove: exit $rc: $(cat o e)"
    "$BIN" remove "$T/col/artist_2/img_1.bmp" > o 2> e || echo "FAIL: remove absolute: $(cat e)"
) > sub.out
grep FAIL sub.out && fails=$((fails + 1))
"$BIN" add col/artist_2/img_1.bmp col/artist_2/img_2.bmp col/artist_2/img_3.bmp --artist artist_2 -m "$MODEL" > /dev/null ||
    fail "re-add removed"
[ "$("$BIN" info --json | json 'd["n_images"]')" = 18 ] || fail "images after removals"
"$BIN" verify > v || fail "verify after removals: $(cat v)"

# Other index types, switched on an existing index.
for t in hnsw ivf flat; do
    "$BIN" build list.csv -m "$MODEL" --index-type $t --quiet > /dev/null 2>&1
    [ "$("$BIN" info --json | json 'd["index_type"]')" = $t ] || fail "index type $t"
    "$BIN" remove col/artist_1/img_1.bmp > /dev/null 2>&1 # removal on each type (first time only)
    "$BIN" verify > v || fail "verify $t: $(cat v)"
done
"$BIN" build list.csv -m "$MODEL" --index-type bogus > /dev/null 2> e && fail "bogus type accepted"

# Another model is refused, naming both fingerprints.
cp "$MODEL" other.safetensors
python3 - other.safetensors <<'EOF'
import sys, struct
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
b[8 + n + 100] ^= 0x40   # one weight byte: a different model
open(p, "wb").write(bytes(b))
EOF
"$BIN" query col/artist_0/img_3.bmp -m other.safetensors 2> e && fail "other model accepted"
grep -q "$("$BIN" info --json | json 'd["model"]["fingerprint"]')" e || fail "mismatch message: $(cat e)"

# Lock: a held lock gives a clear error naming the PID.
python3 -c "
import fcntl, os, sys, time
f = open('$T/a.idx/writer.lock', 'r+'); fcntl.flock(f, fcntl.LOCK_EX)
f.truncate(0); f.write('%d\n' % os.getpid()); f.flush()
sys.stdout.write('locked\n'); sys.stdout.flush(); time.sleep(5)" > held &
holder=$!
for _ in $(seq 50); do grep -q locked held 2>/dev/null && break; sleep 0.1; done
"$BIN" build list.csv -m "$MODEL" > /dev/null 2> e
rc=$?
[ $rc = 1 ] && grep -q "being written by process $holder" e || fail "lock error (rc $rc): $(cat e)"
"$BIN" info > /dev/null || fail "reader blocked by the writer lock"
kill $holder 2>/dev/null; wait $holder 2>/dev/null

# Corrupt and foreign files in place of data.mdb: clear error, no crash.
for kind in random text truncated; do
    rm -rf b.idx; cp -r a.idx b.idx
    case $kind in
        random) head -c 65536 /dev/urandom > b.idx/data.mdb ;;
        text) printf 'hello, this is not a database\n' > b.idx/data.mdb ;;
        truncated) head -c 4096 a.idx/data.mdb > b.idx/data.mdb.t && mv b.idx/data.mdb.t b.idx/data.mdb ;;
    esac
    for cmd in info verify; do
        "$BIN" $cmd -i b.idx > /dev/null 2> e
        rc=$?
        { [ $rc = 1 ] && grep -qi "corrupt\|not an LMDB\|not a siamidx\|data.mdb" e; } ||
            fail "$kind data.mdb, $cmd: exit $rc: $(cat e)"
    done
    "$BIN" build list.csv -i b.idx -m "$MODEL" > /dev/null 2> e
    [ $? = 1 ] || fail "$kind data.mdb: build should fail: $(cat e)"
done
"$BIN" info -i "$T/none.idx" 2> e && fail "missing index accepted"

# A mistyped collection is a clear error and leaves no new index behind; so
# does a build of which nothing could be indexed.
for col in /no/such/dir nosuch.csv; do
    "$BIN" build $col -i new.idx -m "$MODEL" > /dev/null 2> e
    rc=$?
    [ $rc = 1 ] && grep -q "$col: No such file" e || fail "build $col: exit $rc: $(cat e)"
    [ -e new.idx ] && fail "build $col left new.idx behind"
done
echo "filename,artist" > gone.csv
echo "col/nope.bmp,someone" >> gone.csv
"$BIN" build gone.csv -i new.idx -m "$MODEL" > /dev/null 2> e
[ -e new.idx ] && fail "a build that indexed nothing left new.idx behind: $(ls new.idx)"

# A batch too big for one LMDB transaction (the test hook's limit of 40 writes
# stands in for MDB_TXN_FULL) is committed in smaller transactions.
SIAMIDX_TEST_TXN_PUTS=40 "$BIN" build list.csv -i split.idx -m "$MODEL" --batch 256 > out 2> e
rc=$?
[ $rc = 3 ] && grep -q "indexed 19," out || fail "split build: exit $rc: $(cat out e)"
"$BIN" verify -i split.idx > v || fail "verify split build: $(cat v)"
[ "$("$BIN" info -i split.idx --json | json 'd["n_images"]')" = 19 ] || fail "split build images"
[ "$("$BIN" info -i split.idx --json | json 'd["generation"]')" -ge 4 ] || fail "split build: not split"

# Several collections read as one: a folder and a CSV, the same artist name in
# both is one artist, an image listed by both is reported once and skipped.
python3 "$SRC/tools/make_test_bmps.py" "$T/col2" 2 3
python3 "$SRC/tools/make_test_bmps.py" "$T/col3" 1 1
{
    echo "filename,artist"
    echo "col2/artist_0/img_0.bmp,artist_0"
    echo "col3/artist_0/img_0.bmp,artist_9"
} > more.csv
"$BIN" build col2 more.csv -i many.idx -m "$MODEL" --quiet > out 2> e
rc=$?
[ $rc = 3 ] || fail "two collections with a shared image: exit $rc, want 3: $(cat out e)"
grep -q "img_0.bmp" e || fail "the image listed twice is not reported: $(cat e)"
[ "$("$BIN" info -i many.idx --json | json 'd["n_images"]')" = 7 ] ||
    fail "two collections: images $("$BIN" info -i many.idx --json)"
[ "$("$BIN" info -i many.idx --json | json 'd["n_artists"]')" = 3 ] ||
    fail "two collections: artists $("$BIN" info -i many.idx --json)"
"$BIN" build col2 nope_dir -i many2.idx -m "$MODEL" --quiet > /dev/null 2> e
[ $? = 1 ] && grep -q "nope_dir" e && [ ! -e many2.idx ] || fail "a missing second collection: $(cat e)"

[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
