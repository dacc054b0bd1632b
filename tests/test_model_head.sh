#!/bin/bash
# test_model_head.sh - a trained head written into a model file as its default
# head: `siamidx train --save-to-model` and `siamidx train-encoder`.
# The copy keeps every tensor's bytes and dtype (tiny_resnet18 is F16) and the
# fingerprint, answers without an index equal answers through the index whose
# head it is, a mismatched model is refused, and an index's own head still
# takes precedence over the model's.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
M0=$SRC/tests/data/model/tiny_resnet18.safetensors
M50=$SRC/tests/data/model/tiny_resnet50.safetensors
[ -f "$M0" ] || { echo "skipped: no $M0"; exit 77; }
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/model_head.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
prob() { "$BIN" pair "$@" --json | field probability; }
# Probabilities from an index may come from embeddings computed at another batch
# position (last-bit differences on some CPUs): equal within 1e-5, not as text.
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-5 && d > -1e-5) }'; }
meta() { "$BIN" model-info "$1" | sed -n "s/^  $2=//p"; }
fpr() { "$BIN" model-info "$1" | sed -n 's/^fingerprint: *//p'; }
# Every tensor of $1 is in $2 with the same dtype, shape and bytes; every
# metadata key keeps its value; $2 has exactly the four head tensors more.
same_tensors() {
    python3 - "$1" "$2" <<'EOF'
import json, struct, sys
def read(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h.pop("__metadata__", {}), h, b[8 + n:]
m0, h0, d0 = read(sys.argv[1])
m1, h1, d1 = read(sys.argv[2])
for k, v in m0.items():
    assert k.startswith("head.") or m1.get(k) == v, "metadata " + k
for k, v in h0.items():
    if k.startswith("head."):
        continue
    w = h1[k]
    assert (v["dtype"], v["shape"]) == (w["dtype"], w["shape"]), k
    a, b = v["data_offsets"], w["data_offsets"]
    assert d0[a[0]:a[1]] == d1[b[0]:b[1]], "bytes of " + k
extra = sorted(k for k in h1 if k not in h0 or k.startswith("head."))
assert extra == ["head.mean", "head.params", "head.std", "head.w"], extra
EOF
}

python3 "$SRC/tools/make_test_bmps.py" "$T/col" 3 8
A=$T/col/artist_0/img_0.bmp
B=$T/col/artist_1/img_3.bmp
C=$T/col/artist_0/img_5.bmp
"$BIN" build "$T/col" -i "$T/idx" -m "$M0" --quiet >/dev/null 2>&1 || fail "build"

# --save-to-model: the index's head into a copy of its model
OUT=$T/out.safetensors
j=$("$BIN" train -i "$T/idx" --val-fraction 0.5 --seed 3 --save-to-model "$OUT" -m "$M0" --json) ||
    fail "train --save-to-model exit $?"
[[ $j == *"\"saved_to_model\":{\"path\":\"$OUT\"}"* ]] || fail "train JSON: $j"
[ -f "$OUT" ] || fail "no $OUT"
[ "$(fpr "$OUT")" = "$(fpr "$M0")" ] || fail "fingerprint changed: $(fpr "$OUT") vs $(fpr "$M0")"
same_tensors "$M0" "$OUT" || fail "the copy does not keep the model's tensors and metadata"
[ "$(meta "$OUT" head.features)" = "abs,cos" ] || fail "head.features: $(meta "$OUT" head.features)"
auc=$(echo "$j" | field val_auc)
awk -v a="$auc" -v b="$(meta "$OUT" head.val_auc)" 'BEGIN { d = a - b; exit !(d < 6e-5 && d > -6e-5) }' ||
    fail "head.val_auc $(meta "$OUT" head.val_auc) is not the trained $auc"
thr=$(echo "$j" | field threshold)
awk -v a="$thr" -v b="$(meta "$OUT" head.threshold)" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }' ||
    fail "head.threshold $(meta "$OUT" head.threshold) is not the trained $thr"
[[ $(meta "$OUT" head.trained_on) == "index $T/idx: 24 images of 3 artists"* ]] ||
    fail "head.trained_on: $(meta "$OUT" head.trained_on)"

# no index needed now, and the very same answers as through the index
for pair in "$A $B" "$A $C" "$B $C"; do
    set -- $pair
    p_model=$(prob "$1" "$2" -m "$OUT") || fail "pair -m OUT exit"
    p_index=$(prob "$1" "$2" -i "$T/idx" -m "$M0")
    p_both=$(prob "$1" "$2" -i "$T/idx" -m "$OUT") # the index opens with the new file
    [ -n "$p_model" ] && [ "$p_model" = "$p_index" ] && [ "$p_model" = "$p_both" ] ||
        fail "pair $pair: model head $p_model, index head $p_index, both $p_both"
done
pt=$("$BIN" pair "$A" "$B" -m "$OUT" --json | field threshold)
[ "$pt" = "$(meta "$OUT" head.threshold)" ] || fail "pair threshold $pt"

# a model the index was not built with: refused before training, nothing written
err=$("$BIN" train -i "$T/idx" --save-to-model "$T/bad.safetensors" -m "$M50" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] || fail "mismatched model: exit $rc"
[[ $err == *"built with model $(fpr "$M0")"* ]] || fail "mismatched model message: $err"
[ ! -e "$T/bad.safetensors" ] || fail "a file was written for a mismatched model"
"$BIN" train -i "$T/idx" -m "$M0" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "-m without --save-to-model: exit $rc"

# in place, over a model that already has a head: replaced, not duplicated
j2=$("$BIN" train -i "$T/idx" --val-fraction 0.5 --seed 5 --save-to-model "$OUT" -m "$OUT" --json) ||
    fail "train --save-to-model in place exit $?"
same_tensors "$M0" "$OUT" || fail "in place: tensors"
[ "$(fpr "$OUT")" = "$(fpr "$M0")" ] || fail "in place: fingerprint changed"
[[ $(meta "$OUT" head.trained_on) == *"(seed 5)" ]] || fail "in place: $(meta "$OUT" head.trained_on)"
near "$(prob "$A" "$B" -m "$OUT")" "$(prob "$A" "$B" -i "$T/idx" -m "$M0")" ||
    fail "in place: model and index heads differ"

# an index without a head answers with the model's; once trained, with its own
"$BIN" build "$T/col" -i "$T/idx2" -m "$OUT" --quiet >/dev/null 2>&1 || fail "build with OUT"
near "$(prob "$A" "$B" -i "$T/idx2" -m "$OUT")" "$(prob "$A" "$B" -m "$OUT")" ||
    fail "index without head: not the model's head"
j3=$("$BIN" train -i "$T/idx2" --val-fraction 0.6 --seed 9 --json) || fail "train idx2"
t3=$(echo "$j3" | field threshold)
t_idx=$("$BIN" pair "$A" "$B" -i "$T/idx2" -m "$OUT" --json | field threshold)
awk -v a="$t3" -v b="$t_idx" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }' ||
    fail "index head does not take precedence: threshold $t_idx, trained $t3"

# train-encoder writes a model with a default head (tiny: a fraction of a second);
# an image that does not decode is left out of the head's data
head -c 300 /dev/urandom >"$T/col/artist_0/broken.bmp"
ENC=$T/enc.safetensors
out=$("$BIN" train-encoder "$T/col" -o "$ENC" --width 0.0625 --input-size 32 --resize 32 \
      --epochs 1 --batch 8 --threads 1 --head-val-fraction 0.5 --log-seconds 0 2>"$T/enc.err") ||
    fail "train-encoder exit $?: $(cat "$T/enc.err")"
[[ $out == *"default head validation: AUC "* ]] || fail "train-encoder output: $out"
grep -q "1 images could not be embedded" "$T/enc.err" || fail "train-encoder: $(cat "$T/enc.err")"
[ "$(meta "$ENC" head.features)" = "abs,cos" ] || fail "train-encoder: no head.features"
[ -n "$(meta "$ENC" head.val_auc)" ] || fail "train-encoder: no head.val_auc"
[[ $(meta "$ENC" head.trained_on) == *"24 images of 3 artists"*"data fingerprint $(meta "$ENC" training_data_fingerprint)" ]] ||
    fail "train-encoder head.trained_on: $(meta "$ENC" head.trained_on)"
p=$(prob "$A" "$B" -m "$ENC") || fail "pair with the trained model"
awk -v p="$p" 'BEGIN { exit !(p >= 0 && p <= 1) }' || fail "train-encoder model: probability '$p'"
# the head is the one `siamidx train` fits on the same embeddings, split and seed
"$BIN" build "$T/col" -i "$T/idx3" -m "$ENC" --quiet >/dev/null 2>&1; rc=$?
[ $rc -eq 3 ] || fail "build with ENC (one broken image): exit $rc"
j4=$("$BIN" train -i "$T/idx3" --val-fraction 0.5 --seed 1 --json) || fail "train idx3"
[ "$(echo "$j4" | field val_auc | awk '{ printf "%.4f", $1 }')" = "$(meta "$ENC" head.val_auc)" ] ||
    fail "train-encoder head AUC $(meta "$ENC" head.val_auc), siamidx train $(echo "$j4" | field val_auc)"

"$BIN" train-encoder "$T/col" -o "$T/nohead.safetensors" --width 0.0625 --input-size 32 \
    --resize 32 --epochs 1 --batch 8 --threads 1 --no-head >/dev/null 2>&1 || fail "--no-head exit $?"
[ -z "$(meta "$T/nohead.safetensors" head.features)" ] || fail "--no-head wrote a head"
"$BIN" pair "$A" "$B" -m "$T/nohead.safetensors" >/dev/null 2>&1 && fail "--no-head model answers"
# too few images for the head's validation split: exit 1, said, the encoder kept
err=$("$BIN" train-encoder "$T/col" -o "$T/few.safetensors" --width 0.0625 --input-size 32 \
      --resize 32 --epochs 1 --batch 8 --threads 1 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] || fail "head split too small: exit $rc"
[[ $err == *"--head-val-fraction"*"without a default head"* ]] || fail "head split message: $err"
[ -n "$(fpr "$T/few.safetensors")" ] && [ -z "$(meta "$T/few.safetensors" head.features)" ] ||
    fail "head split too small: the encoder model is missing or has a head"

[ $fails -eq 0 ] || { echo "$fails failure(s)" >&2; exit 1; }
echo "ok"
