#!/bin/bash
# test_python.sh - the Python package (python/siamidx) from the build tree,
# against the CLI on the fixture images and the tiny head-carrying model:
# the same embeddings (to 1e-5), the same query, pair and add answers (the
# same documents), errors as siamidx.Error with the library's status and
# message, embedding from two threads at once giving the serial numbers, the
# GIL released while the library embeds, and the notebook example running.
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TEST_DATA:?}" "${SIAMIDX_TMP:?}" "${SIAMIDX_SOURCE:?}" "${SIAMIDX_BUILD:?}"
PY=/usr/bin/python3 # Debian's, with python3-numpy (tools/install-deps.sh)
$PY -c 'import numpy' 2>/dev/null || { echo "skip: $PY has no numpy (python3-numpy)"; exit 77; }
BIN=$SIAMIDX_BIN
M=$SIAMIDX_TEST_DATA/model/tiny_resnet18_head.safetensors
IMG=$SIAMIDX_TEST_DATA/images
T=$SIAMIDX_TMP/test_python
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
export PYTHONPATH=$SIAMIDX_SOURCE/python SIAMIDX_LIBRARY=$SIAMIDX_BUILD/libsiamidx.so
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

i=0
for f in "$IMG"/*.png "$IMG"/*.jpg; do
    case $f in *huge*|*truncated*|*zero*|*text*) continue ;; esac
    d="col/artist$((i % 3))"; mkdir -p "$d"; cp "$f" "$d/"; i=$((i + 1))
    [ $i -ge 18 ] && break
done
"$BIN" build col -i idx -m "$M" --quiet >/dev/null || { echo "FAIL: build"; exit 1; }

$PY - "$BIN" "$M" "$IMG" <<'PY' || fail "the package against the CLI (see above)"
import json, os, subprocess, sys, threading, time
import siamidx  # before numpy: the OpenBLAS kernels the CLI runs (test_blas_core.sh)
import numpy as np

cli, model_path, img = sys.argv[1:]
assert siamidx.__file__.startswith(os.environ["PYTHONPATH"]), siamidx.__file__
def run(*args, ok=(0,)):
    r = subprocess.run([cli, *args], capture_output=True)
    assert r.returncode in ok, (args, r)
    return r.stdout
def close(x, y, where="", tol=1e-5):
    """Equal documents, numbers to tol."""
    if isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), (where, x, y)
        for k in x: close(x[k], y[k], where + "." + k, tol)
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), (where, x, y)
        for i, (a, b) in enumerate(zip(x, y)): close(a, b, "%s[%d]" % (where, i), tol)
    elif isinstance(x, float) or isinstance(y, float):
        assert abs(x - y) <= tol, (where, x, y)
    else:
        assert x == y, (where, x, y)

files = sorted(os.path.join(d, f) for d, _, fs in os.walk("col") for f in fs)
model = siamidx.Model(model_path)
assert model.dim == 32 and model.fingerprint and model.path == model_path

# embeddings: the numbers `siamidx embed` writes
emb = model.embed(files)
rows = run("embed", "-m", model_path, *files).decode().splitlines()
want = np.array([[float(v) for v in r.split("\t")[1:]] for r in rows], np.float32)
assert [r.split("\t")[0] for r in rows] == files
assert emb.dtype == np.float32 and emb.shape == want.shape == (len(files), 32), (emb.shape, want.shape)
diff = np.abs(emb - want).max()
assert diff < 1e-5, diff
assert np.allclose((emb * emb).sum(1), 1, atol=1e-5)

# query and pair: the documents the CLI prints
with siamidx.Index("idx", model=model) as idx:
    for q, k, nb in ((files[0], 5, 5), (img + "/photo_480x360.jpg", 2, 7), (files[5], 3, 0)):
        got = idx.query(q, k=k, neighbors=nb)
        cq = json.loads(run("query", q, "-i", "idx", "-m", model_path, "-k", str(k), "--neighbors", str(nb), "--json"))
        close(got, cq)
        assert len(got["artists"]) <= k and len(got["neighbors"]) == min(nb, len(files) - 1), got
    close(idx.query(files[0]), json.loads(run("query", files[0], "-i", "idx", "-m", model_path, "--json")))
    for a, b in ((files[0], files[1]), (files[2], img + "/grad_300x180.png")):
        close(idx.pair(a, b), json.loads(run("pair", a, b, "-i", "idx", "-m", model_path, "--json")))

    # add: the CLI sees it; an unreadable image is in the report, not raised
    rep = idx.add([img + "/gray16_64x48.png", img + "/truncated.jpg"], artist="newcomer")
    assert rep["kind"] == "add" and rep["n_indexed"] == 1 and rep["n_failed"] == 1, rep
    assert rep["failures"][0]["path"].endswith("truncated.jpg"), rep
    info = json.loads(run("info", "-i", "idx", "--json"))
    assert {a["artist"]: a["n_images"] for a in info["artists"]}["newcomer"] == 1, info
    again = idx.query(img + "/gray16_64x48.png")
    assert again["exact_match"]["artist"] == "newcomer", again  # this handle sees the add

    # errors carry the library's status and message
    try:
        idx.query("no/such.jpg")
        raise AssertionError("query of a missing file did not raise")
    except siamidx.Error as e:
        assert e.status == 3 and "no/such.jpg" in e.message, (e.status, e.message)  # SIAMIDX_ERR_IO
try:
    siamidx.Index("no.idx")
    raise AssertionError("a missing index did not raise")
except siamidx.Error as e:
    assert e.status == 11 and "no.idx" in e.message, (e.status, e.message)  # SIAMIDX_ERR_NOT_FOUND
try:
    model.embed([files[0], img + "/truncated.jpg"])
    raise AssertionError("an undecodable image did not raise")
except siamidx.Error as e:
    assert e.status == 5 and e.failures[0][0].endswith("truncated.jpg"), (e.status, e.failures)
try:
    siamidx.Model(img + "/1x1.png")
    raise AssertionError("a model that is not one did not raise")
except siamidx.Error as e:
    assert e.status == 4 and "1x1.png" in e.message, (e.status, e.message)  # SIAMIDX_ERR_MODEL_FORMAT

# two threads embedding at once: the serial numbers
many = files * 2
serial = model.embed(many)
out = [None, None]
def work(i): out[i] = model.embed(many)
ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
for t in ts: t.start()
for t in ts: t.join()
for o in out:
    assert np.abs(o - serial).max() < 1e-5, np.abs(o - serial).max()

# the GIL is released during the call: a Python thread keeps counting meanwhile, at a
# good share of the rate it counts at while this thread sleeps. (Holding the GIL --
# ctypes.PyDLL instead of CDLL, tried -- it got 2% of it: only the Python
# around the call.)
count, stop = [0], [False]
def counter():
    while not stop[0]: count[0] += 1
t = threading.Thread(target=counter)
t.start()
time.sleep(0.05)
c0, t0 = count[0], time.perf_counter()
time.sleep(0.2)
idle_rate = (count[0] - c0) / (time.perf_counter() - t0)
c0, t0 = count[0], time.perf_counter()
model.embed(many)
c1, dt = count[0], time.perf_counter() - t0
stop[0] = True
t.join()
share = (c1 - c0) / dt / idle_rate
assert share > 0.15, (c1 - c0, dt, idle_rate)
print("python: %d images, max |python - cli| %.2g; during a %.3f s embed another thread counted"
      " at %.0f%% of its idle rate" % (len(files), diff, dt, 100 * share))
PY

# the notebook example runs on the fixture (with the model's head)
SIAMIDX_MODEL=$M SIAMIDX_EXAMPLE_IMAGES=$T/col SIAMIDX_EXAMPLE_INDEX=$T/example.idx SIAMIDX_EXAMPLE_PER_ARTIST=4 \
    $PY "$SIAMIDX_SOURCE/examples/notebook.py" >example.out 2>&1 || fail "examples/notebook.py: $(cat example.out)"
grep -q "^query .*(head: model)" example.out && grep -q "^same artist: *P = " example.out ||
    fail "examples/notebook.py output: $(cat example.out)"

[ $failures -eq 0 ] && echo "ok"
exit $((failures > 0))
