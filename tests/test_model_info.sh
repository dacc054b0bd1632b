#!/bin/bash
# test_model_info.sh - `siamidx model-info` on the committed tiny models and on broken files.
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TEST_DATA:?}" "${SIAMIDX_TMP:?}"
M="$SIAMIDX_TEST_DATA/model"
T="$SIAMIDX_TMP/test_model_info"
mkdir -p "$T" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect() { case "$1" in *"$2"*) ;; *) fail "'$2' not in output of $3" ;; esac; }

out=$("$SIAMIDX_BIN" model-info "$M/tiny_resnet50.safetensors") || fail "model-info exit $?"
for want in "resnet50 (bottleneck" "channels 16 32 64 128" "embedding dim: 128" "classes:       10" \
            "shorter_center_crop resize 256" "  source=random seed=16 width=4" "  format=siamidx"; do
    expect "$out" "$want" "model-info tiny_resnet50"
done
fp=$(printf '%s\n' "$out" | sed -n 's/^fingerprint: *//p')
[ ${#fp} -eq 64 ] || fail "fingerprint '$fp'"

json=$(SIAMIDX_MODEL="$M/tiny_resnet18.safetensors" "$SIAMIDX_BIN" model-info --json) \
    || fail "model-info --json exit $?"
for want in '"arch":"resnet18"' '"embedding_dim":32' '"n_classes":10' '"stage_channels":[4,8,16,32]' \
            '"metadata":{"arch":"resnet18",'; do
    expect "$json" "$want" "model-info --json"
done

# A truncated copy is refused with exit 1 and a message naming the file.
head -c 5000 "$M/tiny_resnet18.safetensors" > "$T/cut.safetensors"
err=$("$SIAMIDX_BIN" model-info "$T/cut.safetensors" 2>&1); code=$?
[ $code -eq 1 ] || fail "truncated model: exit $code"
expect "$err" "cut.safetensors" "truncated model"
"$SIAMIDX_BIN" model-info --nonsense >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad option not exit 2"

# Not a safetensors file at all (text, an image): said so, exit 1.
printf "just some text, no model\n" > "$T/text.safetensors"
for f in "$T/text.safetensors" "$SIAMIDX_TEST_DATA/images/1x1.png"; do
    err=$("$SIAMIDX_BIN" model-info "$f" 2>&1); code=$?
    [ $code -eq 1 ] || fail "model-info $f: exit $code"
    expect "$err" "not a safetensors file" "model-info $f"
done

rm -rf "$T"
[ $failures -eq 0 ] && echo ok || { echo "$failures failure(s)"; exit 1; }
