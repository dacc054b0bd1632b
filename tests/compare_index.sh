# compare_index.sh - sourced by the shard tests: same_index A B QUERY...
# succeeds when indexes A and B hold the same records (resolved path, artist,
# content hash, size; embeddings within 1e-6: the same model on the same
# image, embedded in other batches) and answer each QUERY image alike
# (neighbours with their artists and similarities, artist scores). Needs
# $BIN and $MODEL; writes A.tsv, B.tsv and A.q.*, B.q.* beside the indexes.
same_index() { # A B QUERY...
    local a=$1 b=$2 q
    shift 2
    rm -f "$a".q.* "$b".q.*
    "$BIN" dump -i "$a" > "$a.tsv" && "$BIN" dump -i "$b" > "$b.tsv" || return 1
    for q in "$@"; do
        "$BIN" query "$q" -i "$a" -m "$MODEL" -k 12 --neighbors 12 --json > "$a.q.$(basename "$q")" || return 1
        "$BIN" query "$q" -i "$b" -m "$MODEL" -k 12 --neighbors 12 --json > "$b.q.$(basename "$q")" || return 1
    done
    python3 - "$a" "$b" <<'PY'
import json, sys, glob, os
a, b = sys.argv[1], sys.argv[2]
def load(p):
    rows = {}
    for line in open(p):
        f = line.rstrip("\n").split("\t")
        assert f[0] not in rows, "path twice: " + f[0]
        rows[f[0]] = (f[1:4], [float(x) for x in f[4:]])
    return rows
ra, rb = load(a + ".tsv"), load(b + ".tsv")
assert ra.keys() == rb.keys(), "paths differ: %s" % sorted(set(ra) ^ set(rb))[:5]
for k in ra:
    assert ra[k][0] == rb[k][0], (k, ra[k][0], rb[k][0])
    ea, eb = ra[k][1], rb[k][1]
    assert len(ea) == len(eb) and max(abs(x - y) for x, y in zip(ea, eb)) <= 1e-6, k
for qa in glob.glob(a + ".q.*"):
    qb = b + qa[len(a):]
    x, y = json.load(open(qa)), json.load(open(qb))
    nx = {n["path"]: (n["artist"], n["similarity"]) for n in x["neighbors"]}
    ny = {n["path"]: (n["artist"], n["similarity"]) for n in y["neighbors"]}
    # Ties at the k-th place may pick either record: compare what both name.
    assert len(nx) == len(ny) == 12, (len(nx), len(ny))
    both = nx.keys() & ny.keys()
    assert len(both) >= 11, ("neighbours differ", qa, sorted(nx.keys() ^ ny.keys()))
    for p in both:
        assert nx[p][0] == ny[p][0] and abs(nx[p][1] - ny[p][1]) < 1e-5, (qa, p, nx[p], ny[p])
    sx = sorted(n["similarity"] for n in x["neighbors"])
    sy = sorted(n["similarity"] for n in y["neighbors"])
    assert all(abs(u - v) < 1e-5 for u, v in zip(sx, sy)), (qa, sx, sy)
    ax = {s["artist"]: s["probability"] for s in x["artists"]}
    ay = {s["artist"]: s["probability"] for s in y["artists"]}
    assert ax.keys() == ay.keys() and all(abs(ax[k] - ay[k]) < 1e-4 for k in ax), (qa, ax, ay)
PY
}

