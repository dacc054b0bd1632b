#!/bin/bash
# test_progress_cli.sh - train-encoder, train and eval show progress on stderr as
# build does: into a file (a log) plain lines with the count, rate and ETA and
# never a "\r"; on a terminal (script(1) gives one) a line redrawn with "\r".
# Before cli/progress.c, train-encoder's default head wrote "\r" into logs.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
DATA=${SIAMIDX_TEST_DATA:?SIAMIDX_TEST_DATA not set}
SRC=${SIAMIDX_SOURCE:-$(dirname "$0")/..}
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/progress_cli.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
M0=$DATA/model/tiny_resnet18.safetensors
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
no_cr() { ! grep -q $'\r' "$1" || fail "$2 wrote a carriage return into a file: $(od -c "$1" | head -3)"; }
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }

python3 "$SRC/tools/make_test_bmps.py" "$T/c" 4 8 || exit 1

# train-encoder: the trainer's lines and the default head's, into a file
"$BIN" train-encoder "$T/c" -o "$T/m.safetensors" --width 0.0625 --input-size 32 --resize 32 \
    --epochs 1 --batch 8 --threads 1 --head-val-fraction 0.5 --log-seconds 0 \
    >/dev/null 2>"$T/enc.err" || fail "train-encoder exit $?: $(tail -3 "$T/enc.err")"
no_cr "$T/enc.err" train-encoder
grep -q 'img/s.*ETA' "$T/enc.err" || fail "train-encoder: no rate and ETA: $(head -5 "$T/enc.err")"
grep -Eq '^train-encoder: default head: 32/32 images embedded, [0-9.]+/s, ETA' "$T/enc.err" ||
    fail "train-encoder: the default head's embedding progress: $(cat "$T/enc.err")"

# train and eval on an index, into files
"$BIN" build "$T/c" -i "$T/idx" -m "$M0" --quiet >/dev/null || fail "build"
"$BIN" train -i "$T/idx" --val-fraction 0.5 --holdout-artists 1 --seed 2 >/dev/null 2>"$T/train.err" ||
    fail "train exit $?: $(cat "$T/train.err")"
no_cr "$T/train.err" train
grep -Eq '^train: [0-9]+/60 epochs, [0-9.]+/s, ETA [0-9]+m[0-9]+s$' "$T/train.err" ||
    fail "train: no plain progress line: $(cat "$T/train.err")"
"$BIN" eval -i "$T/idx" --pairs 200 >/dev/null 2>"$T/eval.err" || fail "eval exit $?: $(cat "$T/eval.err")"
no_cr "$T/eval.err" eval
grep -Eq '^eval: ([0-9]+)/\1 queries, [0-9.]+/s, ETA' "$T/eval.err" ||
    fail "eval: no final progress line: $(cat "$T/eval.err")"
# --json keeps train's stderr for errors
"$BIN" train -i "$T/idx" --val-fraction 0.5 --holdout-artists 1 --seed 2 --json >/dev/null 2>"$T/tj.err"
[ -s "$T/tj.err" ] && fail "train --json wrote progress: $(cat "$T/tj.err")"

# on a terminal: redrawn in place
if command -v script >/dev/null; then
    script -qec "'$BIN' train -i '$T/idx' --val-fraction 0.5 --holdout-artists 1 --seed 2 >/dev/null" \
        "$T/tty.log" >/dev/null 2>&1 || fail "train on a terminal exit $?"
    grep -q $'\rtrain: \[' "$T/tty.log" || fail "train on a terminal: no redrawn line: $(od -c "$T/tty.log" | head -4)"
fi

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo ok
