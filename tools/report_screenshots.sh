#!/bin/bash
# tools/report_screenshots.sh [BUILD] - the screenshots of the three --html reports in
# docs/img/ (report-query.png, report-pair.png, report-eval.png), shown in README.md.
# Made from committed fixtures only (tests/data: the tiny random model and the
# synthetic fixture images as six "artists"), never from ../shared: the numbers
# show the layout, not accuracy. Needs Debian's chromium (tools/install-deps.sh).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
BIN=$BUILD/siamidx
DATA=$SRC/tests/data
M0=$DATA/model/tiny_resnet18.safetensors
OUT=$SRC/docs/img
CHROMIUM=$(command -v chromium || command -v chromium-browser) || { echo "chromium not found" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/img" "$OUT"
names=(Vermeer Rembrandt Hals Steen Leyster Ruisdael)
hdr=filename,artist,source_repo,source_path
echo $hdr >"$TMP/train.csv"; echo $hdr >"$TMP/unseen.csv"
i=0
for f in "$DATA"/images/*.png "$DATA"/images/*.jpg; do
    case $f in *huge*|*1x1*|*zero*|*text*|*truncated*|*orient_*) continue ;; esac
    a=${names[$((i % 6))]}
    cp "$f" "$TMP/img/$a-$i.${f##*.}"
    row="$TMP/img/$a-$i.${f##*.},$a,fixtures,$a/p$i.jpg"
    if [ "$a" = Leyster ] || [ "$a" = Ruisdael ]; then echo "$row" >>"$TMP/unseen.csv"; else echo "$row" >>"$TMP/train.csv"; fi
    i=$((i + 1))
done
"$BIN" build "$TMP/train.csv" -i "$TMP/idx" -m "$M0" --quiet >/dev/null
"$BIN" train -i "$TMP/idx" --val-fraction 0.6 --seed 3 >/dev/null
"$BIN" build "$TMP/unseen.csv" -i "$TMP/idx" -m "$M0" --quiet >/dev/null
printf "Leyster\nRuisdael\n" >"$TMP/unseen.txt"
cd "$TMP" # the pages name the paintings as given: short relative paths
Q=$(cd img && ls Vermeer-* | head -1)
cp "img/$Q" "query.${Q##*.}" && printf 'x' >>"query.${Q##*.}" # not an exact match
# -k 30: every artist and every neighbour that carries evidence (six artists here)
"$BIN" query "query.${Q##*.}" -i idx -m "$M0" --neighbors 30 --html query.html >/dev/null
"$BIN" pair "img/$Q" "img/$(cd img && ls Hals-* | head -1)" -i idx -m "$M0" --html pair.html >/dev/null
"$BIN" eval -i idx --unseen-artists unseen.txt --pairs 2000 --html eval.html >/dev/null
for r in query:1200 pair:900 eval:1100; do
    name=${r%%:*}
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
        --user-data-dir="$TMP/profile" --window-size=1200,${r##*:} \
        --screenshot="$OUT/report-$name.png" "file://$TMP/$name.html" >/dev/null 2>&1
    echo "docs/img/report-$name.png"
done
