#!/bin/bash
# test_corrupt_index.sh - damaged and foreign files in an index, through the
# CLI: info, query, verify and build end in a clear error (exit 1, never a
# crash) or, for the derived FAISS snapshot, in a warning and a rebuild from
# LMDB; and the index is never made worse (data.mdb byte for byte as before).
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
JPEG=$SRC/tests/data/images/exif3_160x100.jpg
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/corrupt.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$T"
python3 "$SRC/tools/make_test_bmps.py" col 3 4
python3 "$SRC/tools/make_test_bmps.py" other 2 3
"$BIN" build col -i good.idx -m "$MODEL" --quiet > /dev/null 2>&1 || fail "good build"
"$BIN" build other -i other.idx -m "$MODEL" --quiet > /dev/null 2>&1 || fail "other build"
Q=col/artist_1/img_2.bmp

# Each command on a damaged store: exit 1 with a message naming the damage.
expect_error() { # what cmd...
    local what=$1; shift
    "$@" > o 2> e
    local rc=$?
    if [ $rc != 1 ] || ! grep -qi "corrupt\|not an LMDB\|not a siamidx\|data.mdb\|empty\|directory" e; then
        fail "$what: $*: exit $rc: $(head -c 300 e)"
    fi
}

for kind in random text truncated half zero jpeg; do
    rm -rf b.idx; cp -r good.idx b.idx
    case $kind in
        random) head -c 65536 /dev/urandom > b.idx/data.mdb ;;
        text) printf 'hello, this is not a database\n' > b.idx/data.mdb ;;
        truncated) head -c 4096 good.idx/data.mdb > b.idx/data.mdb ;;
        half) head -c $(($(stat -c %s good.idx/data.mdb) / 2)) good.idx/data.mdb > b.idx/data.mdb ;;
        zero) : > b.idx/data.mdb ;;
        jpeg) cp "$JPEG" b.idx/data.mdb ;;
    esac
    cp b.idx/data.mdb before.mdb
    expect_error "$kind data.mdb" "$BIN" info -i b.idx
    expect_error "$kind data.mdb" "$BIN" verify -i b.idx
    expect_error "$kind data.mdb" "$BIN" query $Q -i b.idx -m "$MODEL"
    expect_error "$kind data.mdb" "$BIN" build col -i b.idx -m "$MODEL" --quiet
    expect_error "$kind data.mdb" "$BIN" remove -i b.idx $Q
    cmp -s before.mdb b.idx/data.mdb || fail "$kind data.mdb: changed by the commands"
done

# A JPEG where the index directory should be; an empty lock.mdb (LMDB's lock
# file is rebuilt: everything works).
cp "$JPEG" photo.idx
for cmd in info verify; do expect_error "JPEG as the index" "$BIN" $cmd -i photo.idx; done
expect_error "JPEG as the index" "$BIN" query $Q -i photo.idx -m "$MODEL"
expect_error "JPEG as the index" "$BIN" build col -i photo.idx -m "$MODEL" --quiet
cmp -s "$JPEG" photo.idx || fail "the JPEG was changed"
rm -rf b.idx; cp -r good.idx b.idx; : > b.idx/lock.mdb
"$BIN" verify -i b.idx > o 2>&1 || fail "empty lock.mdb: verify: $(cat o)"
"$BIN" build col -i b.idx -m "$MODEL" --quiet > o 2>&1 || fail "empty lock.mdb: build: $(cat o)"

# Another index's data.mdb (and lock.mdb) in place: a store of its own, whose
# queries must not come from the snapshot left beside it.
rm -rf b.idx; cp -r good.idx b.idx; cp other.idx/data.mdb other.idx/lock.mdb b.idx/
# (a copy in other bytes: an indexed file is its exact match, not its own neighbour)
cp other/artist_1/img_1.bmp other_copy.bmp && printf x >> other_copy.bmp
"$BIN" query other_copy.bmp -i b.idx -m "$MODEL" -k 1 --json > q.json 2> e ||
    fail "foreign data.mdb: query: $(cat e)"
python3 -c "import json; d = json.load(open('q.json')); assert d['neighbors'][0]['path'] == 'other/artist_1/img_1.bmp', d" ||
    fail "foreign data.mdb: answered from the old snapshot: $(cat q.json)"
"$BIN" verify -i b.idx > o 2>&1 || fail "foreign data.mdb: verify: $(cat o)"

# The FAISS snapshot damaged: a warning and a rebuild from LMDB for the
# readers, a problem for verify, repaired by the next build.
for kind in flip zero jpeg; do
    rm -rf b.idx; cp -r good.idx b.idx
    snap=$(ls b.idx/vectors.*.faiss)
    case $kind in
        flip) python3 -c "
import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-100] ^= 0x5a; open(p, 'wb').write(b)" "$snap" ;;
        zero) : > "$snap" ;;
        jpeg) cp "$JPEG" "$snap" ;;
    esac
    "$BIN" info -i b.idx > o 2> e || fail "$kind snapshot: info: $(cat e)"
    grep -q "warning: FAISS snapshot .* rebuilding it" e || fail "$kind snapshot: no warning: $(cat e)"
    cp $Q q_copy.bmp && printf x >> q_copy.bmp # not an exact match: Q is its neighbour
    "$BIN" query q_copy.bmp -i b.idx -m "$MODEL" -k 1 --json > q.json 2> e || fail "$kind snapshot: query: $(cat e)"
    python3 -c "import json; d = json.load(open('q.json')); assert d['neighbors'][0]['path'] == '$Q', d" ||
        fail "$kind snapshot: wrong answer: $(cat q.json)"
    "$BIN" verify -i b.idx > o 2>&1 && fail "$kind snapshot: verify saw nothing"
    grep -q "problem: FAISS snapshot" o || fail "$kind snapshot: verify: $(cat o)"
    "$BIN" build col -i b.idx -m "$MODEL" --quiet > o 2>&1 || fail "$kind snapshot: build: $(cat o)"
    "$BIN" verify -i b.idx > o 2> e || fail "$kind snapshot: not repaired: $(cat o)"
    [ -s e ] && fail "$kind snapshot: still warns after the build: $(cat e)"
done
[ $fails = 0 ] && echo "ok" || { echo "$fails failure(s)"; exit 1; }
