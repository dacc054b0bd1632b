#!/bin/bash
# test_converter.sh - development check of tools/convert_torchvision.py end to end:
# converts models with the real tool, runs them with `siamidx embed --tensor` and
# compares against torchvision run live on the same file (tools/torch_reference.py).
# Needs PyTorch: exits 77 (skipped) where /usr/bin/python3 cannot import torch.
set -u
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1 # keep tools/ free of __pycache__
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, torchvision, numpy' 2>/dev/null; then
    echo "skipped: /usr/bin/python3 cannot import torch and torchvision"
    exit 77
fi
: "${SIAMIDX_BIN:?}" "${SIAMIDX_SOURCE:?}" "${SIAMIDX_TMP:?}"
TOOLS="$SIAMIDX_SOURCE/tools"
T="$SIAMIDX_TMP/test_converter"
rm -rf "$T" && mkdir -p "$T" || exit 1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# check NAME CONVERT-ARGS...: convert, run both sides, compare pooled (and logits when fc).
check() {
    local name=$1; shift
    local d="$T/$name"
    mkdir -p "$d"
    "$PY" "$TOOLS/convert_torchvision.py" -o "$d/model.safetensors" "$@" >/dev/null \
        || { fail "$name: converter failed"; return; }
    "$PY" "$TOOLS/torch_reference.py" run "$d/model.safetensors" "$d" --n 2 --height 96 \
        --width 128 --seed 3 || { fail "$name: torchvision reference failed"; return; }
    for kind in pooled logits; do
        [ -f "$d/$kind.npy" ] || continue
        "$SIAMIDX_BIN" embed -m "$d/model.safetensors" --tensor "$d/input.npy" --output "$kind" \
            -o "$d/got_$kind.npy" || { fail "$name: siamidx embed --tensor --output $kind"; continue; }
        "$PY" "$TOOLS/torch_reference.py" compare "$d/got_$kind.npy" "$d/$kind.npy" \
            || fail "$name: $kind differs from torchvision"
    done
}

check r18_seed_f32 --arch resnet18 --random-seed 11
check r50_seed_bf16 --arch resnet50 --random-seed 12 --dtype bf16
check r34_seed_f16_nofc --arch resnet34 --random-seed 13 --dtype f16 --no-fc

# A torchvision checkpoint (with num_batches_tracked, wrapped in {'state_dict': ...}).
"$PY" - "$T/r18.pth" <<'EOF' || fail "could not save a checkpoint"
import sys, torch, torchvision
torch.manual_seed(5)
m = torchvision.models.resnet18(weights=None, num_classes=7)
for mod in m.modules():  # non-trivial BatchNorm statistics
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
        mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.1, 0.1)
torch.save({"state_dict": m.state_dict(), "epoch": 3}, sys.argv[1])
EOF
check r18_checkpoint --arch resnet18 --checkpoint "$T/r18.pth"

# A checkpoint of another architecture is refused, naming the first mismatching tensor.
msg=$("$PY" "$TOOLS/convert_torchvision.py" --arch resnet34 --checkpoint "$T/r18.pth" \
      -o "$T/bad.safetensors" 2>&1) && fail "resnet18 checkpoint accepted as resnet34"
case "$msg" in *"missing tensor 'layer1.2.conv1.weight'"*) ;; *) fail "unexpected message: $msg" ;; esac
msg=$("$PY" "$TOOLS/convert_torchvision.py" --arch resnet50 --checkpoint "$T/r18.pth" \
      -o "$T/bad.safetensors" 2>&1) && fail "resnet18 checkpoint accepted as resnet50"
case "$msg" in *"'layer1.0.conv1.weight' has shape"*) ;; *) fail "unexpected message: $msg" ;; esac
[ -e "$T/bad.safetensors" ] && fail "a refused conversion left an output file"

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
rm -rf "$T"
echo "ok"
