#!/bin/bash
# test_default_model.sh - the bundled model is what the project says it is:
# present, within 25 MB, trained from scratch by siamidx train-encoder, carrying
# a default head, used when no -m is given; and (with ../shared) its default
# head tells same-artist pairs of real paintings from different-artist pairs.
# The encoder was trained on these paintings, so the pair check is a
# regression test of the shipped file, not an evaluation (docs/evaluation.md).
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
MODEL=$SRC/models/default.safetensors
[ -f "$MODEL" ] || { echo "skipped: no bundled model yet"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/default_model.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

size=$(stat -c %s "$MODEL")
[ "$size" -le $((25 * 1024 * 1024)) ] || fail "model is $size bytes, over 25 MB"
info=$("$BIN" model-info "$MODEL") || fail "model-info exit $?"
for want in "source=siamidx train-encoder, from scratch" "training_command=" \
    "training_data_fingerprint=" "head.val_auc=" "head.threshold="; do
    [[ $info == *"$want"* ]] || fail "model-info lacks '$want'"
done
dim=$(echo "$info" | sed -n 's/^embedding dim: *//p')

# No -m and no SIAMIDX_MODEL: the bundled model answers.
img=$SRC/tests/data/images/photo_480x360.jpg
row=$(env -u SIAMIDX_MODEL "$BIN" embed "$img") || fail "embed without -m exit $?"
n=$(echo "$row" | awk -F'\t' '{ print NF - 1 }')
[ "$n" = "$dim" ] || fail "default embedding has $n values, model says $dim"
[ "$row" = "$("$BIN" embed -m "$MODEL" "$img")" ] || fail "without -m, another model answered"

PAINT=${SIAMIDX_SHARED:-}/data/paintings
if [ -f "$PAINT/index.csv" ]; then
    # 120 same-artist and 120 different-artist pairs, fixed by index.csv's order
    # (the first 4 images of each of the first 60 artists): (0,1) and (2,3) of
    # artist a are same-artist pairs, (0 of a, 0 of a+1) and (2 of a, 3 of a+1) not.
    awk -F, -v root="$PAINT" 'NR > 1 && n[$2] < 4 { if (!n[$2]) order[++k] = $2; img[$2, n[$2]++] = root "/" $1 }
        END { r = 0
              for (a = 1; a <= 60; a++) {
                  x = order[a]; y = order[a + 1]
                  print r++ "," img[x, 0] "," img[x, 1] ",1"
                  print r++ "," img[x, 2] "," img[x, 3] ",1"
                  print r++ "," img[x, 0] "," img[y, 0] ",0"
                  print r++ "," img[x, 2] "," img[y, 3] ",0" } }' \
        "$PAINT/index.csv" >"$T/truth.csv"
    { echo "index,image1,image2"; cut -d, -f1-3 "$T/truth.csv"; } >"$T/pairs.csv"
    "$BIN" pair --batch "$T/pairs.csv" -m "$MODEL" -o "$T/out.csv" || fail "pair --batch exit $?"
    # Pair ROC AUC over these 240 pairs (ties count half).
    auc=$(awk -F, 'NR == FNR { same[$1] = $4; next } FNR > 1 {
            if (same[$1]) s[++ns] = $2; else d[++nd] = $2 }
        END { for (i = 1; i <= ns; i++) for (j = 1; j <= nd; j++)
                  w += (s[i] > d[j]) + 0.5 * (s[i] == d[j])
              printf "%.4f", w / (ns * nd) }' "$T/truth.csv" "$T/out.csv")
    echo "default head on 240 real pairs: AUC $auc"
    # A random-init network of the same shape with its own head scores about
    # 0.6 here (docs/evaluation.md); the trained model must be far above it.
    awk -v a="$auc" 'BEGIN { exit !(a >= 0.70) }' || fail "pair AUC $auc is below 0.70"
fi
[ $fails -eq 0 ] || { echo "$fails failure(s)" >&2; exit 1; }
echo "ok"
