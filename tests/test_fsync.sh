#!/bin/bash
# test_fsync.sh - what a build makes durable, seen with strace: the new index
# directory's entry (fsync of its parent after mkdir), the LMDB files' entries
# (fsync of the index directory once they exist), and the snapshot's rename
# (fsync of the index directory after it). Skipped where strace cannot trace.
set -u
BIN=${SIAMIDX_BIN:?}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/tests/data/model/tiny_resnet18.safetensors
[ -f "$MODEL" ] || { echo "skipped: no $MODEL"; exit 77; }
command -v strace > /dev/null && strace -o /dev/null true 2>/dev/null || { echo "skipped: no usable strace"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/fsync.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
T=$(pwd -P)
python3 "$SRC/tools/make_test_bmps.py" col 2 3
strace -f -y -o trace -e trace=mkdir,mkdirat,rename,renameat,renameat2,fsync,fdatasync,openat \
    "$BIN" build col -i "$T/new.idx" -m "$MODEL" --quiet > out 2>&1 || { echo "FAIL: build: $(cat out)"; exit 1; }
python3 - trace "$T" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
T = sys.argv[2]
idx = T + "/new.idx"
def first(pred, start=0):
    for i in range(start, len(lines)):
        if pred(lines[i]):
            return i
    return None
def fsync_of(path, start):
    return first(lambda l: re.search(r"\bf(data)?sync\(\d+<%s>\) = 0" % re.escape(path), l), start)
fails = []
mk = first(lambda l: "mkdir" in l and '"%s"' % idx in l and "= 0" in l)
if mk is None: fails.append("no mkdir of the index directory")
elif fsync_of(T, mk) is None: fails.append("parent not fsynced after mkdir of the index")
made = first(lambda l: "openat" in l and "data.mdb" in l and "O_CREAT" in l)
if made is None: fails.append("data.mdb never created")
elif fsync_of(idx, made) is None: fails.append("index directory not fsynced after data.mdb was made")
rn = first(lambda l: "rename" in l and "vectors.tmp." in l and "= 0" in l)
if rn is None: fails.append("no snapshot rename")
elif fsync_of(idx, rn) is None: fails.append("index directory not fsynced after the snapshot rename")
for f in fails: print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
rc=$?
[ $rc = 0 ] && echo ok
exit $rc
