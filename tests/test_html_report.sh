#!/bin/bash
# test_html_report.sh - the --html reports of query, pair and eval, rendered in
# headless Chromium: the screenshot is not blank, the page names what --json
# says (top artist and probability; the pair's probability and verdict; eval's
# figures), the page requests nothing (no src/href but data: and #, and no
# request in Chromium's net log, a page that does fetch shown to be caught),
# the inlined thumbnails are complete JPEGs that the library decodes, and
# names and paths with markup in them are escaped. Fixture images as six
# "artists" from three sources with the tiny random model (as
# test_eval_protocol_cli.sh): plumbing, not accuracy. The checks of the files
# run everywhere; the rendering skips (77) only where Chromium is absent.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
DATA=${SIAMIDX_TEST_DATA:?SIAMIDX_TEST_DATA not set}
SRC=${SIAMIDX_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/html_report.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M0=$DATA/model/tiny_resnet18.safetensors
CHECK="python3 $SRC/tests/html_check.py"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }

# a0 carries markup and quotes in its name, one image markup in its file name
A0='Jan "<b>Vermeer</b>" & Co'
seq=()
for k in 1 2 3 4 5 6 7; do seq+=("a0|repoA|Baroque" "a1|repoA|Baroque"); done
for k in 1 2 3 4; do seq+=("a3|repoB|data" "a2|repoA|Cubism" "a4|repoB|data"); done
for k in 1 2 3; do seq+=("a3|repoC|x"); done
mkdir -p "$TMP/img"
hdr=filename,artist,source_repo,source_path
echo $hdr >"$TMP/train.csv"; echo $hdr >"$TMP/unseen.csv"
i=0
for f in "$DATA"/images/*.png "$DATA"/images/*.jpg; do
    case $f in *huge*) continue ;; esac # refused by design (pixel limit)
    [ $i -lt ${#seq[@]} ] || break
    IFS='|' read -r a s y <<<"${seq[$i]}"
    name=$i.${f##*.}
    [ $i -eq 0 ] && name="x<i>2&y.${f##*.}" # an image of a0
    cp "$f" "$TMP/img/$name"
    [ "$a" = a0 ] && a="\"${A0//\"/\"\"}\""
    row="\"$TMP/img/$name\",$a,$s,$y/p$i.jpg"
    case $a in a2|a4) echo "$row" >>"$TMP/unseen.csv" ;; *) echo "$row" >>"$TMP/train.csv" ;; esac
    i=$((i + 1))
done
printf 'a2\na4\n' >"$TMP/unseen.txt"
"$BIN" build "$TMP/train.csv" -i "$TMP/idx" -m "$M0" --quiet >/dev/null || fail "build train"
"$BIN" train -i "$TMP/idx" --val-fraction 0.6 --seed 3 >/dev/null || fail "train"
"$BIN" build "$TMP/unseen.csv" -i "$TMP/idx" -m "$M0" --quiet >/dev/null || fail "build unseen"

# ---- the three reports, with --json beside them ----
Q="$TMP/q copy.png" # a copy: not an exact match, so its original is evidence
cp "$TMP/img/x<i>2&y.png" "$Q" && printf 'trailing' >>"$Q"
"$BIN" query "$Q" -i "$TMP/idx" -m "$M0" --json --html "$TMP/query.html" >"$TMP/query.json" ||
    fail "query --html exit $?"
"$BIN" pair "$TMP/img/1.png" "$TMP/img/4.png" -i "$TMP/idx" -m "$M0" --json \
    --html "$TMP/pair.html" >"$TMP/pair.json" || fail "pair --html exit $?"
"$BIN" eval -i "$TMP/idx" --unseen-artists "$TMP/unseen.txt" --pairs 500 --json \
    --html "$TMP/eval.html" >"$TMP/eval.json" || fail "eval --html exit $?"
# the marked-up name is among the artists listed (5 of 5), so the page must carry it
python3 -c 'import json, sys; sys.exit(sys.argv[2] not in [a["artist"] for a in json.load(open(sys.argv[1]))["artists"]])' \
    "$TMP/query.json" "$A0" || fail "query does not list '$A0': $(head -c 300 "$TMP/query.json")"

# ---- the files: self-contained, escaped, pictures that decode ----
for r in query pair eval; do
    $CHECK static "$TMP/$r.html" || fail "$r: external references"
    grep -q '<b>Vermeer' "$TMP/$r.html" && fail "$r: an artist name's markup reached the page"
    grep -q '<i>2' "$TMP/$r.html" && fail "$r: a file name's markup reached the page"
done
grep -q 'Jan &quot;&lt;b&gt;Vermeer&lt;/b&gt;&quot; &amp; Co' "$TMP/query.html" ||
    fail "query: the artist name is not there, escaped"
grep -q 'x&lt;i&gt;2&amp;y.png' "$TMP/query.html" || fail "query: escaped file name missing"
nq=$($CHECK thumbs "$TMP/query.html" "$TMP/qjpg") || fail "query thumbnails: $nq"
np=$($CHECK thumbs "$TMP/pair.html" "$TMP/pjpg") || fail "pair thumbnails: $np"
[ "${nq:-0}" -ge 3 ] || fail "query: $nq pictures (the painting and its evidence expected)"
[ "${np:-0}" -eq 2 ] || fail "pair: $np pictures, not 2"
"$BIN" embed -m "$M0" "$TMP"/qjpg/*.jpg "$TMP"/pjpg/*.jpg >/dev/null || fail "thumbnails do not decode"
# an indexed painting that can no longer be read is said so on the page, not a failure
mv "$TMP/img/x<i>2&y.png" "$TMP/gone.png"
"$BIN" query "$Q" -i "$TMP/idx" -m "$M0" --html "$TMP/gone.html" >/dev/null ||
    fail "query with an unreadable neighbour exit $?"
grep -q 'picture not readable' "$TMP/gone.html" || fail "the unreadable neighbour is not reported"
mv "$TMP/gone.png" "$TMP/img/x<i>2&y.png"
# the report is written atomically: a failure leaves the old one
cp "$TMP/pair.html" "$TMP/keep.html"
"$BIN" pair "$TMP/img/1.png" "$TMP/nope.png" -i "$TMP/idx" -m "$M0" --html "$TMP/keep.html" 2>/dev/null &&
    fail "pair with a missing image succeeded"
cmp -s "$TMP/pair.html" "$TMP/keep.html" || fail "a failed pair touched the previous report"
"$BIN" pair "$TMP/img/1.png" "$TMP/img/4.png" -i "$TMP/idx" -m "$M0" --html "$TMP/no/dir/x.html" \
    >/dev/null 2>&1 && fail "--html into a missing folder succeeded"
ls "$TMP"/*.tmp.* >/dev/null 2>&1 && fail "temporary files left behind"

# the calibration context of a model file's head: kept by train --save-to-model, absent
# (and said so) for a hand-made head
"$BIN" train -i "$TMP/idx" --val-fraction 0.6 --seed 3 --save-to-model "$TMP/mh.safetensors" \
    -m "$M0" >/dev/null || fail "train --save-to-model exit $?"
"$BIN" pair "$TMP/img/1.png" "$TMP/img/4.png" -m "$TMP/mh.safetensors" --html "$TMP/pm.html" >/dev/null ||
    fail "pair with the model's head exit $?"
grep -q 'validation pairs the head scored between' "$TMP/pm.html" || fail "model head: no calibration context"
"$BIN" pair "$TMP/img/1.png" "$TMP/img/4.png" -m "$DATA/model/tiny_resnet18_head.safetensors" \
    --html "$TMP/pn.html" >/dev/null || fail "pair with a hand-made head exit $?"
grep -q 'records no validation pairs' "$TMP/pn.html" || fail "hand-made head: no note on the missing context"
"$BIN" pair --batch "$DATA/csv/pairs.csv" -m "$TMP/mh.safetensors" --html "$TMP/b.html" >/dev/null 2>&1
[ $? -eq 2 ] || fail "pair --batch --html is not a usage error"

# ---- rendered ----
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
    [ $failures -eq 0 ] || exit 1
    echo "skip: chromium not found (tools/install-deps.sh installs Debian's chromium); the files were checked"
    exit 77
fi
render() { # PAGE NAME: screenshot, DOM and net log of one page, with no usable network
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --no-first-run --user-data-dir="$TMP/profile" --proxy-server=http://127.0.0.1:9 \
        --window-size=1200,1400 --screenshot="$TMP/$2.png" --log-net-log="$TMP/$2.net.json" \
        --dump-dom "file://$1" >"$TMP/$2.dom.html" 2>"$TMP/$2.log"
}
for r in query pair eval; do
    render "$TMP/$r.html" $r || { fail "$r: chromium exit $? ($(tail -2 "$TMP/$r.log"))"; continue; }
    $CHECK png "$TMP/$r.png" || fail "$r: blank screenshot"
    $CHECK netlog "$TMP/$r.net.json" || fail "$r: the page requested something"
    $CHECK $r "$TMP/$r.dom.html" "$TMP/$r.json" || fail "$r: the page does not say what --json says"
done
# the net log check catches a page that does fetch
printf '<html><body><img src="http://example.invalid/x.png"></body></html>' >"$TMP/fetch.html"
render "$TMP/fetch.html" fetch
$CHECK netlog "$TMP/fetch.net.json" >/dev/null && fail "a fetching page passed the net log check"
$CHECK static "$TMP/fetch.html" >/dev/null && fail "a fetching page passed the static check"

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "ok"
