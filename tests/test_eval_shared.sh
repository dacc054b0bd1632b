#!/bin/bash
# test_eval_shared.sh - train and eval on real paintings (a small subset of
# ../shared/data/paintings) with the frozen ImageNet ResNet-18 (conv1..layer3)
# converted on the fly into the test's temporary folder. Skips (77) without
# ../shared or without /usr/bin/python3 + numpy for the conversion.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
SRC=${SIAMIDX_SOURCE:?SIAMIDX_SOURCE not set}
SHARED=${SIAMIDX_SHARED:-}
PAINT=$SHARED/data/paintings
NPY=$SHARED/models/resnet18_imagenet_torchvision_bnfolded_partial/weights
[ -f "$PAINT/index.csv" ] && [ -d "$NPY" ] || { echo "skipped: no ../shared"; exit 77; }
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "skipped: no python3 numpy"; exit 77; }
TMP=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/eval_shared.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

/usr/bin/python3 "$SRC/tools/convert_torchvision.py" --arch resnet18 --npy-dir "$NPY" --stages 3 \
    -o "$TMP/r18.safetensors" >/dev/null || { echo "conversion failed" >&2; exit 1; }

# 16 artists x 12 paintings (the first of each, in index.csv order), absolute paths
awk -F, -v root="$PAINT" 'NR > 1 && n[$2] < 12 && (n[$2] > 0 || a < 16) {
        if (n[$2] == 0) a++; n[$2]++; print root "/" $1 "," $2 }' "$PAINT/index.csv" \
    | { echo "filename,artist"; cat; } >"$TMP/subset.csv"
[ "$(wc -l <"$TMP/subset.csv")" -eq 193 ] || fail "subset has $(wc -l <"$TMP/subset.csv") lines"

"$BIN" build "$TMP/subset.csv" -i "$TMP/idx" -m "$TMP/r18.safetensors" >/dev/null ||
    { echo "build failed" >&2; exit 1; }
out=$("$BIN" train -i "$TMP/idx" --seed 5 --val-fraction 0.4 --holdout-artists 4) ||
    fail "train exit $?"
[[ $out == *"validation: AUC"* ]] || fail "train output: $out"
json=$("$BIN" eval -i "$TMP/idx" --legacy --json) || fail "eval exit $?"
for key in seen_pairs unseen_pairs seen_attribution unseen_attribution auc eer tar_at_far1 ece \
    top1 top3 balanced_top1 unknown_first; do
    [[ $json == *"\"$key\""* ]] || fail "eval JSON lacks $key: $json"
done
auc=$(echo "$json" | sed -n 's/.*"seen_pairs":{[^}]*"auc":\([0-9.]*\).*/\1/p')
awk -v a="$auc" 'BEGIN { exit !(a > 0.6) }' || fail "seen AUC $auc is not above 0.6"
# same seed, same head: eval is reproducible
json2=$("$BIN" train -i "$TMP/idx" --seed 5 --val-fraction 0.4 --holdout-artists 4 >/dev/null &&
        "$BIN" eval -i "$TMP/idx" --legacy --json)
[ "$json" = "$json2" ] || fail "retraining with the same seed changed eval"
# pair answers from the index's head agree with the library's batch answers
A=$(sed -n 2p "$TMP/subset.csv" | cut -d, -f1); B=$(sed -n 30p "$TMP/subset.csv" | cut -d, -f1)
p1=$("$BIN" pair "$A" "$B" -i "$TMP/idx" -m "$TMP/r18.safetensors" --json |
     sed -n 's/.*"probability":\([0-9.]*\).*/\1/p')
printf 'index,image1,image2\n0,%s,%s\n' "$A" "$B" >"$TMP/p.csv"
p2=$("$BIN" pair --batch "$TMP/p.csv" -i "$TMP/idx" -m "$TMP/r18.safetensors" | sed -n 2p | cut -d, -f2)
[ -n "$p1" ] && [ "$p1" = "$p2" ] || fail "pair ($p1) and batch ($p2) disagree"

[ $failures -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok"
