#!/bin/bash
# test_json_schema.sh - every --json document of every command follows the one
# schema, docs/json-schema.json (described in docs/json.md), on a small real
# fixture: the fixture images as three artists, one with a Latin-1 (not UTF-8)
# file name, one undecodable image, the tiny models with and without a head.
#
# tools/check_json.py checks each document exactly: every required key there,
# no key the schema lacks. Then: every documented kind was produced; paths are
# given the way `remove` accepts them, a non-UTF-8 one's bytes in path_hex;
# and the checker itself refuses a document with an undocumented key, one
# lacking a key, and the real documents against a schema missing a key.
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TEST_DATA:?}" "${SIAMIDX_TMP:?}" "${SIAMIDX_SOURCE:?}"
BIN=$SIAMIDX_BIN
M=$SIAMIDX_TEST_DATA/model/tiny_resnet18_head.safetensors # carries a default head
M0=$SIAMIDX_TEST_DATA/model/tiny_resnet18.safetensors     # the same encoder, no head
IMG=$SIAMIDX_TEST_DATA/images
SCHEMA=$SIAMIDX_SOURCE/docs/json-schema.json
CHECK="python3 $SIAMIDX_SOURCE/tools/check_json.py"
T=$SIAMIDX_TMP/test_json_schema
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
DOCS=$T/docs.jsonl
: >"$DOCS"
# run CMD... : its stdout (one document) appended to docs.jsonl; exit 0 or 3 expected
run() {
    out=$("$BIN" "$@" 2>"$T/err"); rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 3 ] || { fail "siamidx $*: exit $rc: $(cat "$T/err")"; return; }
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "siamidx $*: not one line: $out"
    printf '%s\n' "$out" >>"$DOCS"
}
json() { python3 -c 'import json, sys; d = json.loads(sys.stdin.buffer.read().decode("utf-8")); print(eval(sys.argv[1]))' "$1"; }

i=0
for f in "$IMG"/*.png "$IMG"/*.jpg; do
    case $f in *huge*|*truncated*|*zero*|*text*) continue ;; esac
    d="col/artist$((i % 3))"; mkdir -p "$d"; cp "$f" "$d/"; i=$((i + 1))
    [ $i -ge 18 ] && break
done
BAD=$(printf 'caf\xe9-\xff.png') # Latin-1 bytes: not UTF-8
{ cat "$IMG/grad_300x180.png"; printf x; } >"col/artist1/$BAD" # its own bytes: not a copy of an indexed file
A=$(ls col/artist0/* | head -1)

# build (the Latin-1 name is refused: exit 3, a failure in the report), add (an undecodable image)
run build col -i idx -m "$M0" --quiet --json
cp "$IMG/truncated.jpg" new_bad.jpg
run add "$IMG/gray_90x70.jpg" new_bad.jpg --artist "newcomer" -i idx -m "$M0" --quiet --json
[ "$(tail -1 "$DOCS" | json 'd["n_failed"]')" = 1 ] || fail "add: the bad image is not a failure: $(tail -1 "$DOCS")"
run info -i idx --json
# query: no head, the model's head, an exact match, the Latin-1 file; pair without and with an index
run query "$A" -i idx -m "$M0" --json
run query "$IMG/photo_480x360.jpg" -i idx -m "$M" -k 2 --neighbors 3 --json
run query "col/artist1/$BAD" -i idx -m "$M" --json # not indexed: its name is not UTF-8
run pair "$A" "col/artist1/$BAD" -m "$M" --json
# train (its head into a Latin-1-named model copy), then the index's head answers
cp "$M0" m.safetensors
run train -i idx --val-fraction 0.5 --seed 2 --save-to-model "$BAD.safetensors" -m m.safetensors --json
run query "$A" -i idx -m "$M" --neighbors 50 --json
run pair "$A" "$IMG/photo_480x360.jpg" -i idx -m "$M" --json
run model-info -m "$M" --json
run model-info "$BAD.safetensors" --json
run train -i idx --val-fraction 0.5 --seed 3 --holdout-artists 1 --json
run eval -i idx --pairs 50 --json
run eval -i idx --legacy --json
# remove: a path added for it and one that names nothing (exit 3); then verify
"$BIN" add "$IMG/grad_300x180.png" --artist gone -i idx -m "$M0" --quiet >/dev/null 2>&1 ||
    fail "add for remove: exit $?"
run remove "$IMG/grad_300x180.png" nothere.jpg -i idx --json
[ "$(tail -1 "$DOCS" | json '(d["n_removed"], [p["n_matched"] for p in d["paths"]], d["artist"])')" = \
    "(1, [1, 0], None)" ] || fail "remove: $(tail -1 "$DOCS")"
"$BIN" add "$IMG/grad_300x180.png" --artist gone -i idx -m "$M0" --quiet >/dev/null 2>&1 ||
    fail "add for remove --artist: exit $?"
run remove --artist gone -i idx --json
[ "$(tail -1 "$DOCS" | json '(d["n_removed"], d["paths"], d["artist"])')" = "(1, [], 'gone')" ] ||
    fail "remove --artist: $(tail -1 "$DOCS")"
run verify -i idx --json
[ "$(tail -1 "$DOCS" | json '(d["ok"], d["n_problems"])')" = "(True, 0)" ] || fail "verify: $(tail -1 "$DOCS")"

# every document matches its kind's definition exactly
$CHECK "$SCHEMA" "$DOCS" >"$T/check.out" || fail "documents do not follow the schema: $(cat "$T/check.out")"
# every kind the schema documents was produced
python3 - "$SCHEMA" "$DOCS" <<'PY' || fail "not every documented kind was produced"
import json, sys
kinds = {k[4:] for k in json.load(open(sys.argv[1]))["$defs"] if k.startswith("doc_")}
seen = {json.loads(l)["kind"] for l in open(sys.argv[2], "rb") if l.strip()}
assert kinds == seen, (sorted(kinds - seen), sorted(seen - kinds))
PY

# paths as `remove` accepts them: a neighbour's path as query prints it
q=$(grep '"kind":"query"' "$DOCS" | tail -1)
p=$(echo "$q" | json 'd["neighbors"][0]["path"]')
"$BIN" remove -i idx "$p" >/dev/null 2>"$T/err" || fail "remove the path query printed ($p): $(cat "$T/err")"
# a name that is not UTF-8 (build refuses to index one, and says so): U+FFFD in
# "path", the exact bytes in "path_hex", for the build failure and the query image
python3 - "$DOCS" <<'PY' || fail "path_hex does not give the Latin-1 name's bytes"
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1], "rb") if l.strip()]
build = [d for d in docs if d["kind"] == "build"][0]
f = [f for f in build["failures"] if "path_hex" in f]
assert len(f) == 1 and bytes.fromhex(f[0]["path_hex"]) == b"artist1/caf\xe9-\xff.png", build
assert f[0]["path"] == "artist1/caf\ufffd-\ufffd.png", f
q = [d for d in docs if d["kind"] == "query" and "path_hex" in d["image"]]
assert q and bytes.fromhex(q[0]["image"]["path_hex"]) == b"col/artist1/caf\xe9-\xff.png", q
pair = [d for d in docs if d["kind"] == "pair"][0]
assert bytes.fromhex(pair["images"][1]["path_hex"]).endswith(b"\xe9-\xff.png"), pair
m = [d for d in docs if d["kind"] == "model_info" and "path_hex" in d["model"]]
assert m and bytes.fromhex(m[0]["model"]["path_hex"]) == b"caf\xe9-\xff.png.safetensors", m
PY

# the checker refuses what it must: an undocumented key, a missing key, a stale schema
grep '"kind":"pair"' "$DOCS" | head -1 | sed 's/"same_artist":/"verdict":1,"same_artist":/' >extra.jsonl
$CHECK "$SCHEMA" extra.jsonl >out && fail "a document with an undocumented key passed"
grep -q "key 'verdict' is not in the schema" out || fail "undocumented key not named: $(cat out)"
grep '"kind":"info"\|"kind":"index_info"' "$DOCS" | head -1 | sed 's/"n_artists":[0-9]*,//' >missing.jsonl
$CHECK "$SCHEMA" missing.jsonl >out && fail "a document lacking a key passed"
grep -q "lacks the required key 'n_artists'" out || fail "missing key not named: $(cat out)"
python3 -c 'import json, sys
s = json.load(open(sys.argv[1])); d = s["$defs"]["doc_query"]
del d["properties"]["unknown"]; d["required"].remove("unknown")
json.dump(s, open("stale.json", "w"))' "$SCHEMA"
$CHECK stale.json "$DOCS" >out && fail "documents passed a schema that lacks one of their keys"
grep -q "key 'unknown' is not in the schema" out || fail "stale schema: $(cat out)"
printf '{"schema_version":1,"kind":"query","image":{"path":"\xe9"}}\n' >latin1.jsonl
$CHECK "$SCHEMA" latin1.jsonl >out && fail "a document that is not UTF-8 passed"

[ $failures -eq 0 ] && echo "ok: $(wc -l <"$DOCS") documents of $(grep -o '"kind":"[a-z_]*"' "$DOCS" | sort -u | wc -l) kinds follow docs/json-schema.json"
exit $((failures > 0))
