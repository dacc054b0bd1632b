#!/bin/bash
# test_train_encoder_cli.sh - train-encoder's collection and training options
# from the command line: two folders joined (an artist in both is one),
# --exclude-artists (kept out of training and of the default head), a cache
# bound of 0 (every image decoded on demand), --augment processing,
# --objective cosface and --ema, --objective supcon; what the model records;
# bad values refused.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/train_cli.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
meta() { "$BIN" model-info "$1" | sed -n "s/^  $2=//p"; }

# A: artist_0..2 with 8 images each; B: artist_0..3, 8 images each, other pictures
python3 "$SRC/tools/make_test_bmps.py" "$T/a" 3 8
python3 "$SRC/tools/make_test_bmps.py" "$T/b0" 4 16
mkdir -p "$T/b"
for a in 0 1 2 3; do
    mkdir -p "$T/b/artist_$a"
    for i in 8 9 10 11 12 13 14 15; do mv "$T/b0/artist_$a/img_$i.bmp" "$T/b/artist_$a/"; done
done
printf '# unseen in evaluation\nartist_3\n' >"$T/exclude.txt"

help=$("$BIN" train-encoder --help) || fail "--help exit $?"
for want in --exclude-artists --cache-mb --augment --aug-posterize --aug-downup --aug-jpeg \
    --aug-squash cosface --margin --scale --ema supcon --contrast-weight --temperature \
    --pooling --style-stages --same-style \
    "COLLECTION..."; do
    [[ $help == *"$want"* ]] || fail "--help lacks $want"
done

M=$T/m.safetensors
out=$("$BIN" train-encoder "$T/a" "$T/b" -o "$M" --exclude-artists "$T/exclude.txt" \
      --cache-mb 0 --augment processing --objective cosface --ema 0.9 --width 0.0625 \
      --input-size 32 --resize 32 --epochs 1 --batch 8 --threads 1 --head-val-fraction 0.5 \
      --log-seconds 0 2>"$T/err") || fail "train-encoder exit $?: $(cat "$T/err")"
grep -q "3 artists, " "$T/err" || fail "artists: $(cat "$T/err")"
grep -q "8 images left out" "$T/err" || fail "exclusion: $(cat "$T/err")"
grep -q "image cache 0 of 48 images" "$T/err" || fail "cache bound 0: $(cat "$T/err")"
[[ $out == *"default head validation: AUC "* ]] || fail "default head: $out"
[ "$(meta "$M" training_data)" = "$T/a + $T/b" ] || fail "training_data: $(meta "$M" training_data)"
[ "$(meta "$M" training_excluded_artists)" = "artist_3" ] || fail "excluded artists not recorded"
r=$(meta "$M" training_recipe)
[[ $r == "objective cosface (margin 0.35, scale 30); input 32; training scale 32; augment squash 0.3, downup 0.3, posterize 0.3, jpeg 0.3; ema 0.9" ]] ||
    fail "training_recipe: $r"
[[ $(meta "$M" head.trained_on) == *"48 images of 3 artists"* ]] ||
    fail "head.trained_on: $(meta "$M" head.trained_on)"
ls "$T"/*.head-images.csv >/dev/null 2>&1 && fail "the head's image listing was left behind"

# the same data in the other order is the same data (trained with the
# contrastive term, which logs its share and is recorded with its settings)
"$BIN" train-encoder "$T/b" "$T/a" -o "$T/m2.safetensors" --exclude-artists "$T/exclude.txt" \
    --width 0.0625 --input-size 32 --resize 32 --epochs 1 --batch 8 --threads 1 --no-head \
    --objective supcon --contrast-weight 0.5 --temperature 0.2 --same-style 0.5 --log-seconds 0 \
    >/dev/null 2>"$T/err2" || fail "B A exit $?: $(cat "$T/err2")"
grep -q " contrast [0-9]" "$T/err2" || fail "supcon log: $(cat "$T/err2")"
r=$(meta "$T/m2.safetensors" training_recipe)
[[ $r == "objective supcon (weight 0.5, temperature 0.2); input 32;"*"; same-style batches 0.5" ]] ||
    fail "supcon recipe: $r"
[ "$(meta "$T/m2.safetensors" training_data_fingerprint)" = "$(meta "$M" training_data_fingerprint)" ] ||
    fail "fingerprint depends on the order of the collections"

# --pooling style: trained on, and embedded by, the mean and std of layer3 and
# layer4 (width 1/16: 2 * (16 + 32) values); the model keeps no fc, loads, and
# gets its default head on those features
MS=$T/style.safetensors
"$BIN" train-encoder "$T/a" -o "$MS" --pooling style --width 0.0625 --input-size 32 \
    --resize 32 --epochs 1 --batch 8 --threads 1 --head-val-fraction 0.5 \
    >"$T/out3" 2>"$T/err3" || fail "--pooling style exit $?: $(cat "$T/err3")"
[ "$(meta "$MS" pooling)" = style ] && [ "$(meta "$MS" style_stages)" = 3,4 ] &&
    [ "$(meta "$MS" embedding_dim)" = 96 ] ||
    fail "style metadata: $(meta "$MS" pooling) $(meta "$MS" style_stages) $(meta "$MS" embedding_dim)"
[[ $(meta "$MS" training_recipe) == *"; pooling style 3,4" ]] ||
    fail "style recipe: $(meta "$MS" training_recipe)"
grep -q "default head validation: AUC " "$T/out3" || fail "style default head: $(cat "$T/out3")"
"$BIN" model-info "$MS" | grep -q "fc.weight" && fail "a style model kept fc"
emb=$("$BIN" embed -m "$MS" "$T/a/artist_0/img_0.bmp" 2>&1) || fail "embed with the style model: $emb"
for bad in "1,1" "5" "3,"; do
    err=$("$BIN" train-encoder "$T/a" -o "$T/bad.safetensors" --pooling style --style-stages "$bad" 2>&1)
    rc=$?
    [ $rc -eq 2 ] && [[ $err == *"--style-stages wants"*"'$bad'"* ]] || fail "--style-stages $bad: exit $rc: $err"
done

for bad in "--aug-jpeg 2" "--augment colour" "--margin 1.5" "--ema 1" "--cache-mb -1" \
    "--objective arcface" "--temperature 0" "--contrast-weight -1" "--same-style 2"; do
    # shellcheck disable=SC2086
    err=$("$BIN" train-encoder "$T/a" -o "$T/bad.safetensors" $bad 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "$bad: exit $rc"
    [[ $err == *"${bad%% *} wants"*"'${bad#* }'"* ]] || fail "$bad: $err"
done
err=$("$BIN" train-encoder "$T/a" "$T/nope" -o "$T/bad.safetensors" --threads 1 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $err == *"$T/nope"* ]] || fail "missing collection: exit $rc: $err"

[ $fails -eq 0 ] || { echo "$fails failure(s)" >&2; exit 1; }
echo "ok"
