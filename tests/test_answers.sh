#!/bin/bash
# test_answers.sh - what the answers of query, pair and eval say, on the tiny
# models and fixture images: the one head rule (index, else model, else a
# labelled similarity-only answer), valid UTF-8 JSON whatever the file names,
# null for metrics that could not be measured, and pair -o replacing its
# output atomically.
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TEST_DATA:?}" "${SIAMIDX_TMP:?}"
BIN=$SIAMIDX_BIN
M=$SIAMIDX_TEST_DATA/model/tiny_resnet18_head.safetensors # carries a default head
M0=$SIAMIDX_TEST_DATA/model/tiny_resnet18.safetensors     # the same encoder, no head
IMG=$SIAMIDX_TEST_DATA/images
T=$SIAMIDX_TMP/test_answers
rm -rf "$T" && mkdir -p "$T" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }
# A JSON document from stdin: strict UTF-8, then JSON; prints the Python expression $1 of it (d).
json() { python3 -c 'import json, sys; d = json.loads(sys.stdin.buffer.read().decode("utf-8")); print(eval(sys.argv[1]))' "$1"; }

# Fixture images as three "artists" (arbitrary labels: plumbing, not accuracy).
i=0
for f in "$IMG"/*.png "$IMG"/*.jpg; do
    case $f in *huge*) continue ;; esac # refused by design (pixel limit)
    d="$T/c3/artist$((i % 3))"; mkdir -p "$d"; cp "$f" "$d/"; i=$((i + 1))
    [ $i -ge 24 ] && break
done
A=$(ls "$T"/c3/artist0/* | head -1)
"$BIN" build "$T/c3" -i "$T/idx" -m "$M0" >/dev/null 2>&1 || { echo "FAIL: build"; exit 1; }

# ---- one head rule for query and pair ----
# no head in the index, none in the model: similarity only, and said so
q=$("$BIN" query "$A" -i "$T/idx" -m "$M0" -k 3 --json) || fail "query (no head) exit $?"
[ "$(echo "$q" | json 'd["head"]["source"]')" = none ] || fail "query without heads: head is not none: $q"
[ "$(echo "$q" | json 'any(n["probability"] is not None for n in d["neighbors"])')" = False ] ||
    fail "query without heads gives pair probabilities: $q"
txt=$("$BIN" query "$A" -i "$T/idx" -m "$M0" -k 3) || fail "query text exit $?"
[[ $txt == *"head: none (similarity only"* ]] || fail "query text does not say similarity only: $txt"

# the model's default head answers the query as it answers pair -i (the bug: query ignored it)
q=$("$BIN" query "$A" -i "$T/idx" -m "$M" -k 3 --json) || fail "query (model head) exit $?"
[ "$(echo "$q" | json 'd["head"]["source"]')" = model ] || fail "query with the model's head: $q"
n1=$(echo "$q" | json 'd["neighbors"][1]["path"]')
qp=$(echo "$q" | json '"%.4f" % d["neighbors"][1]["probability"]')
pp=$("$BIN" pair "$A" "$n1" -i "$T/idx" -m "$M" --json | json '"%.4f" % d["probability"]')
[ "$qp" = "$pp" ] || fail "query's pair probability $qp is not pair -i's $pp (model head)"
[ "$("$BIN" pair "$A" "$n1" -i "$T/idx" -m "$M" --json | json 'd["head"]["source"]')" = model ] ||
    fail "pair -i without an index head: not the model's"
[[ $("$BIN" query "$A" -i "$T/idx" -m "$M" -k 3) == "head: model"* ]] || fail "query text: head: model"
# -k lists artists, --neighbors paintings, --candidates is the evidence: one candidate names one artist
q=$("$BIN" query "$A" -i "$T/idx" -m "$M" -k 5 --neighbors 1 --candidates 1 --json) || fail "query --candidates 1 exit $?"
[ "$(echo "$q" | json 'len(d["artists"]), len(d["neighbors"])')" = "(1, 1)" ] || fail "query --candidates 1: $q"
q=$("$BIN" query "$A" -i "$T/idx" -m "$M" -k 2 --neighbors 7 --json) || fail "query -k 2 --neighbors 7 exit $?"
[ "$(echo "$q" | json 'len(d["artists"]), len(d["neighbors"])')" = "(2, 7)" ] || fail "query -k 2 --neighbors 7: $q"

# the index's trained head takes precedence, for both
"$BIN" train -i "$T/idx" --val-fraction 0.5 --seed 2 >/dev/null || fail "train exit $?"
q=$("$BIN" query "$A" -i "$T/idx" -m "$M" -k 3 --json) || fail "query (index head) exit $?"
[ "$(echo "$q" | json 'd["head"]["source"]')" = index ] || fail "query with the index's head: $q"
qp=$(echo "$q" | json '"%.4f" % d["neighbors"][1]["probability"]')
pj=$("$BIN" pair "$A" "$n1" -i "$T/idx" -m "$M" --json)
[ "$qp" = "$(echo "$pj" | json '"%.4f" % d["probability"]')" ] || fail "query $qp vs pair -i $pj (index head)"
[ "$(echo "$pj" | json 'd["head"]["source"]')" = index ] || fail "pair -i with an index head: $pj"

# ---- JSON is valid UTF-8 whatever the paths ----
BAD=$(printf 'caf\xe9-\xff.jpg') # Latin-1 bytes: not UTF-8
cp "$A" "$T/$BAD"
out=$("$BIN" pair "$T/$BAD" "$A" -m "$M" --json) || fail "pair (Latin-1 name) exit $?"
[ "$(echo "$out" | json 'd["images"][0]["path"].endswith("caf\ufffd-\ufffd.jpg")')" = True ] ||
    fail "pair --json with a Latin-1 file name is not valid UTF-8 JSON with U+FFFD: $out"
out=$("$BIN" query "$T/$BAD" -i "$T/idx" -m "$M" -k 2 --json) || fail "query (Latin-1) exit $?"
[ "$(echo "$out" | json 'd["image"]["path"].endswith("\ufffd.jpg")')" = True ] || fail "query --json: $out"
cp "$M" "$T/m.safetensors"
out=$("$BIN" train -i "$T/idx" --val-fraction 0.5 --save-to-model "$T/$BAD.safetensors" \
      -m "$T/m.safetensors" --json) || fail "train --save-to-model (Latin-1) exit $?"
[ "$(echo "$out" | json '"\ufffd" in d["saved_to_model"]["path"]')" = True ] || fail "train --json: $out"
out=$("$BIN" model-info "$T/$BAD.safetensors" --json) || fail "model-info (Latin-1) exit $?"
[ "$(echo "$out" | json '"\ufffd" in d["model"]["path"]')" = True ] || fail "model-info --json: $out"

# ---- what could not be measured is null, not 0 ----
# One artist held out: its images make same-artist pairs only, so no AUC.
"$BIN" train -i "$T/idx" --val-fraction 0.5 --holdout-artists 1 --seed 3 >/dev/null ||
    fail "train --holdout-artists exit $?"
e=$("$BIN" eval -i "$T/idx" --json --legacy) || fail "eval --legacy exit $?"
[ "$(echo "$e" | json 'd["unseen_pairs"]["n_pairs"]')" = 0 ] || fail "unseen pairs of one artist: $e"
[ "$(echo "$e" | json '[d["unseen_pairs"][k] for k in ("auc", "accuracy", "eer", "tar_at_far1", "ece")]')" = \
  "[None, None, None, None, None]" ] || fail "unmeasurable pair metrics are not null: $e"
[ "$(echo "$e" | json 'isinstance(d["seen_pairs"]["auc"], float)')" = True ] || fail "seen AUC: $e"
# the protocol's report: the same rule
e=$("$BIN" eval -i "$T/idx" --json) || fail "eval exit $?"
for set in same_source same_style; do
    [ "$(echo "$e" | json 'd["overall"]["unseen"]["pairs"]["'$set'"]["n_positives"]')" = 0 ] ||
        fail "protocol: unseen $set pairs of one artist: $e"
    [ "$(echo "$e" | json '[d["overall"]["unseen"]["pairs"]["'$set'"][k] for k in ("auc", "eer", "tar_at_far1", "ece")]')" = \
      "[None, None, None, None]" ] || fail "protocol: unmeasurable $set metrics are not null: $e"
    [ "$(echo "$e" | json 'isinstance(d["overall"]["seen"]["pairs"]["'$set'"]["auc"], float)')" = True ] ||
        fail "protocol: seen $set AUC: $e"
done

# ---- pair -o replaces its output atomically ----
printf 'index,image1,image2\n0,%s,%s\n' "$A" "$n1" >"$T/p.csv"
echo "the previous answers, complete" >"$T/answers.csv"
exec 3<"$T/answers.csv" # a reader that opened the old file
before=$(stat -c %i "$T/answers.csv")
"$BIN" pair --batch "$T/p.csv" -o "$T/answers.csv" -m "$M" || fail "pair --batch -o exit $?"
[ "$(stat -c %i "$T/answers.csv")" != "$before" ] || fail "pair -o wrote into the old file in place"
[ "$(cat <&3)" = "the previous answers, complete" ] || fail "a reader of the old file saw it change"
exec 3<&-
[ "$(head -1 "$T/answers.csv")" = "index,sameArtist" ] && [ "$(wc -l <"$T/answers.csv")" -eq 2 ] ||
    fail "pair -o output: $(cat "$T/answers.csv")"
[ -z "$(ls "$T" | grep '\.tmp\.')" ] || fail "temporary files left: $(ls "$T")"
# a directory that cannot be written: exit 1, nothing left behind
mkdir "$T/ro" && chmod 555 "$T/ro"
if [ ! -w "$T/ro" ]; then # (root writes anywhere)
    "$BIN" pair --batch "$T/p.csv" -o "$T/ro/x.csv" -m "$M" 2>/dev/null; rc=$?
    [ $rc -eq 1 ] || fail "unwritable -o: exit $rc"
fi
chmod 755 "$T/ro"

rm -rf "$T"
[ $failures -eq 0 ] && echo ok || { echo "$failures failure(s)"; exit 1; }
