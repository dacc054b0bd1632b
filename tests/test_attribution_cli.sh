#!/bin/bash
# test_attribution_cli.sh - the classifier `train` fits beside the head, on the
# tiny fixture model: a query of an indexed image names it as the exact match
# and leaves its record out of the evidence; an artist added after `train` is
# in the classifier after the next `train`; the unknown prior moves the
# "unknown" share one way (0: none) and is range-checked.
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TEST_DATA:?}" "${SIAMIDX_TMP:?}"
BIN=$SIAMIDX_BIN
M=$SIAMIDX_TEST_DATA/model/tiny_resnet18.safetensors
IMG=$SIAMIDX_TEST_DATA/images
T=$SIAMIDX_TMP/test_attribution_cli
rm -rf "$T" && mkdir -p "$T" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }
json() { python3 -c 'import json, sys; d = json.loads(sys.stdin.buffer.read().decode("utf-8")); print(eval(sys.argv[1]))' "$1"; }

# Fixture images as three "artists" (labels for plumbing, not accuracy).
i=0
for f in "$IMG"/*.png "$IMG"/*.jpg; do
    case $f in *huge*|*zero*|*text*|*truncated*) continue ;; esac # refused by design
    d="$T/c3/artist$((i % 3))"; mkdir -p "$d"; cp "$f" "$d/"; i=$((i + 1))
    [ $i -ge 24 ] && break
done
"$BIN" build "$T/c3" -i "$T/idx" -m "$M" >/dev/null 2>&1 || { echo "FAIL: build"; exit 1; }
tj=$("$BIN" train -i "$T/idx" --val-fraction 0.5 --seed 2 --json) || fail "train exit $?"
[ "$(echo "$tj" | json 'd["classifier"]["n_artists"]')" = 3 ] || fail "classifier of 3 artists: $tj"

# ---- exact match: named, and not its own evidence ----
A=$(ls "$T"/c3/artist1/*.png | head -1)
q=$("$BIN" query "$A" -i "$T/idx" -m "$M" -k 50 --neighbors 50 --json) || fail "query exit $?"
[ "$(echo "$q" | json 'd["head"]["with_classifier"]')" = True ] || fail "query does not use the classifier: $q"
[ "$(echo "$q" | json 'd["exact_match"]["artist"]')" = artist1 ] || fail "exact match not named: $q"
ep=$(echo "$q" | json 'd["exact_match"]["path"]')
[ "$(basename "$ep")" = "$(basename "$A")" ] || fail "exact match path $ep is not $A"
[ "$(echo "$q" | json 'sum(n["path"] == d["exact_match"]["path"] for n in d["neighbors"])')" = 0 ] ||
    fail "the exact match is among its own neighbours: $q"
# every other record is a neighbour, but none with the query's bytes
same=$(sha256sum "$T"/c3/*/* | awk '{print $1}' | grep -c "$(sha256sum "$A" | awk '{print $1}')")
[ "$(echo "$q" | json 'len(d["neighbors"])')" = $((24 - same)) ] ||
    fail "not all $((24 - same)) other records are neighbours: $q"
txt=$("$BIN" query "$A" -i "$T/idx" -m "$M") || fail "query text exit $?"
[[ $txt == *"exact match: artist1 "* ]] || fail "query text does not name the exact match: $txt"
[[ $txt == *"head: index + classifier"* ]] || fail "query text does not name the classifier: $txt"

# The same pixels in other bytes (PNG decoders stop at IEND): not an exact
# match, so the indexed original is a neighbour -- and the top one.
cp "$A" "$T/copy.png" && printf 'trailing' >> "$T/copy.png"
q=$("$BIN" query "$T/copy.png" -i "$T/idx" -m "$M" -k 5 --json) || fail "query copy exit $?"
[ "$(echo "$q" | json 'd["exact_match"]')" = None ] || fail "a changed file is an exact match: $q"
[ "$(basename "$(echo "$q" | json 'd["neighbors"][0]["path"]')")" = "$(basename "$A")" ] ||
    fail "the original is not the top neighbour of its copy: $q"

# ---- the unknown prior: 0 gives none, more gives more ----
prev=-1
for p in 0 0.05 0.3 0.8; do
    "$BIN" train -i "$T/idx" --val-fraction 0.5 --seed 2 --unknown-prior $p >/dev/null ||
        fail "train --unknown-prior $p exit $?"
    u=$("$BIN" query "$T/copy.png" -i "$T/idx" -m "$M" --json | json 'd["unknown"]')
    s=$("$BIN" query "$T/copy.png" -i "$T/idx" -m "$M" -k 10 --json |
        json 'round(d["unknown"] + sum(a["probability"] for a in d["artists"]), 3)')
    [ "$s" = 1.0 ] || fail "prior $p: artists + unknown sum to $s, not 1"
    if [ "$p" = 0 ]; then
        [ "$u" = 0.0 ] || fail "prior 0: unknown is $u, not 0"
    else
        python3 -c "import sys; sys.exit(0 if $u > $prev else 1)" ||
            fail "prior $p: unknown $u is not above $prev (the smaller prior's)"
    fi
    prev=$u
done
for bad in 1 -0.1 x; do
    "$BIN" train -i "$T/idx" --unknown-prior $bad >/dev/null 2>&1
    [ $? -eq 2 ] || fail "train --unknown-prior $bad is not a usage error"
done
# eval scores with another prior on request, and refuses a bad one
"$BIN" eval -i "$T/idx" --unknown-prior 0 --json >"$T/e0.json" || fail "eval --unknown-prior 0 exit $?"
[ "$(json 'float(d["overall"]["seen"]["attribution"]["mean_unknown"])' <"$T/e0.json")" = 0.0 ] ||
    fail "eval --unknown-prior 0: mean unknown is not 0: $(cat "$T/e0.json")"
"$BIN" eval -i "$T/idx" --unknown-prior 1 >/dev/null 2>&1
[ $? -eq 2 ] || fail "eval --unknown-prior 1 is not a usage error"

# ---- an artist added after train is in the classifier after the next train ----
mkdir -p "$T/new"
for f in "$IMG"/gray_90x70.jpg "$IMG"/grad_300x180.png "$IMG"/exif3_160x100.jpg; do
    cp "$f" "$T/new/n_$(basename "$f")" && printf 'x' >> "$T/new/n_$(basename "$f")"
done
"$BIN" add "$T"/new/* --artist newcomer -i "$T/idx" -m "$M" >/dev/null 2>&1 || fail "add exit $?"
tj=$("$BIN" train -i "$T/idx" --val-fraction 0.5 --seed 2 --json) || fail "train after add exit $?"
[ "$(echo "$tj" | json 'd["classifier"]["n_artists"]')" = 4 ] || fail "newcomer not in the classifier: $tj"
q=$("$BIN" query "$T/new/n_gray_90x70.jpg" -i "$T/idx" -m "$M" -k 10 --json) || fail "query exit $?"
[ "$(echo "$q" | json '"newcomer" in [a["artist"] for a in d["artists"]]')" = True ] ||
    fail "the newcomer is not among the artists: $q"

[ $failures -eq 0 ] && echo ok || { echo "$failures failure(s)"; exit 1; }
