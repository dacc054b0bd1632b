#!/bin/bash
# test_embed_cli.sh - `siamidx embed` end to end with the tiny ResNet-18:
# TSV and NPY shapes, argument order, batch independence, failures and exit
# codes, pooling dimensions, and the --tensor path. Needs perl (NPY parsing).
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
DATA=${SIAMIDX_TEST_DATA:?SIAMIDX_TEST_DATA not set}
MODEL=$DATA/model/tiny_resnet18.safetensors
IMG=$DATA/images
if [ ! -f "$MODEL" ] || [ ! -x "$BIN" ]; then
    echo "skipped: $MODEL or $BIN missing"
    exit 77
fi
TMP=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/embed_cli.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
A=$IMG/grad_300x180.png B=$IMG/exif3_160x100.jpg C=$IMG/gray_181x401.png
embed() { "$BIN" embed -m "$MODEL" --threads 2 "$@"; }

# NPY helpers: "N D" of a 2-D float32 file, and its rows as text.
npy_shape() { perl -e 'open F, "<", $ARGV[0] or die; read F, $h, 10; $n = unpack("v", substr($h, 8, 2));
    read F, $d, $n; $d =~ /shape.: \((\d+), (\d+)\)/ or die "bad header"; print "$1 $2\n"' "$1"; }
npy_rows() { perl -e 'open F, "<", $ARGV[0] or die; binmode F; read F, $h, 10; $n = unpack("v", substr($h, 8, 2));
    read F, $d, $n; $d =~ /shape.: \((\d+), (\d+)\)/ or die; ($r, $c) = ($1, $2); local $/; $b = <F>;
    length($b) == 4 * $r * $c or die "size"; @v = unpack("f<*", $b);
    for $i (0 .. $r - 1) { print join(" ", map { sprintf "%.6g", $_ } @v[$i * $c .. $i * $c + $c - 1]), "\n" }' "$1"; }
# Largest absolute difference between two equally shaped text matrices.
maxdiff() { paste -d'\n' "$1" "$2" | awk 'NR % 2 { n = split($0, a, /[ \t]/); next }
    { split($0, b, /[ \t]/); for (i = 1; i <= n; i++) if (a[i] ~ /^[-0-9.e+]+$/) { d = a[i] - b[i];
      if (d < 0) d = -d; if (d > m) m = d } } END { printf "%.3g\n", m + 0 }'; }
close_enough() { awk -v d="$1" -v t="$2" 'BEGIN { exit !(d <= t) }'; }

# --help and usage errors
embed --help | grep -q "usage: siamidx embed" || fail "--help"
"$BIN" embed -m "$MODEL" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no images: expected exit 2"
embed --pool median "$A" >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --pool: expected exit 2"
embed --batch 0 "$A" >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --batch: expected exit 2"
"$BIN" embed -m "$TMP/none.safetensors" "$A" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "missing model: expected exit 1"
grep -q "none.safetensors" "$TMP/err" || fail "missing model not named: $(cat "$TMP/err")"

# TSV: one line per image, in argument order, path then D values of unit norm.
embed "$A" "$B" "$C" >"$TMP/abc.tsv" || fail "embed TSV exit $?"
[ "$(cut -f1 "$TMP/abc.tsv" | tr '\n' ' ')" = "$A $B $C " ] || fail "TSV paths/order: $(cut -f1 "$TMP/abc.tsv")"
D=$(head -1 "$TMP/abc.tsv" | awk -F'\t' '{ print NF - 1 }')
[ "$D" -gt 0 ] || fail "TSV has no values"
awk -F'\t' -v d="$D" '{ if (NF - 1 != d) exit 1; s = 0; for (i = 2; i <= NF; i++) s += $i * $i;
    if (s < 0.9999 || s > 1.0001) exit 1 }' "$TMP/abc.tsv" || fail "TSV rows not $D unit-norm values"

# NPY: [3, D], the same numbers as the TSV.
embed --format npy -o "$TMP/abc.npy" "$A" "$B" "$C" || fail "embed NPY exit $?"
[ "$(npy_shape "$TMP/abc.npy")" = "3 $D" ] || fail "NPY shape $(npy_shape "$TMP/abc.npy"), expected 3 $D"
npy_rows "$TMP/abc.npy" >"$TMP/abc.rows"
cut -f2- "$TMP/abc.tsv" >"$TMP/abc.tsvrows"
close_enough "$(maxdiff "$TMP/abc.rows" "$TMP/abc.tsvrows")" 1e-5 || fail "NPY and TSV differ"

# Reversed arguments give the same rows reversed; batch size changes nothing.
embed --batch 1 "$C" "$B" "$A" >"$TMP/cba.tsv" || fail "embed --batch 1 exit $?"
tac "$TMP/cba.tsv" >"$TMP/cba_rev.tsv"
[ "$(cut -f1 "$TMP/cba_rev.tsv" | tr '\n' ' ')" = "$A $B $C " ] || fail "reversed order"
close_enough "$(maxdiff "$TMP/abc.tsv" "$TMP/cba_rev.tsv")" 1e-5 || fail "batch 1 vs 3 differ"
[ "$(sed -n 1p "$TMP/abc.tsv" | cut -f2-)" != "$(sed -n 2p "$TMP/abc.tsv" | cut -f2-)" ] ||
    fail "two different images gave the same embedding"

# Pooling: max and gem keep D; style (last stage by default) has mean and std.
for p in avg max gem; do
    d=$(embed --pool $p "$A" | awk -F'\t' '{ print NF - 1 }')
    [ "$d" = "$D" ] || fail "--pool $p: $d values, expected $D"
done
d=$(embed --pool style "$A" | awk -F'\t' '{ print NF - 1 }')
[ "$d" = $((2 * D)) ] || fail "--pool style: $d values, expected $((2 * D))"
[ "$(embed --pool max "$A" | cut -f2-)" != "$(embed --pool avg "$A" | cut -f2-)" ] || fail "max == avg"

# A broken file among good ones: exit 3, one stderr line naming it, zero NPY row.
printf 'not an image' >"$TMP/broken.jpg"
embed --format npy -o "$TMP/partial.npy" "$A" "$TMP/broken.jpg" "$C" 2>"$TMP/err"
[ $? -eq 3 ] || fail "partial failure: expected exit 3"
grep -q "^siamidx: $TMP/broken.jpg: " "$TMP/err" || fail "failure line: $(cat "$TMP/err")"
[ "$(npy_shape "$TMP/partial.npy")" = "3 $D" ] || fail "partial NPY shape"
npy_rows "$TMP/partial.npy" >"$TMP/partial.rows"
sed -n 2p "$TMP/partial.rows" | awk '{ for (i = 1; i <= NF; i++) if ($i != 0) exit 1 }' ||
    fail "failed image's row is not zero"
sed -n 1p "$TMP/abc.rows" >"$TMP/r_a"; sed -n 1p "$TMP/partial.rows" >"$TMP/r_pa"
close_enough "$(maxdiff "$TMP/r_a" "$TMP/r_pa")" 1e-5 || fail "good row changed by a failing neighbour"
embed "$A" "$TMP/broken.jpg" >"$TMP/partial.tsv" 2>/dev/null
[ $? -eq 3 ] && [ "$(wc -l <"$TMP/partial.tsv")" -eq 1 ] || fail "partial TSV"
embed "$TMP/broken.jpg" "$TMP/missing.png" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "all failed: expected exit 1"
grep -q "missing.png" "$TMP/err" || fail "missing file not named"
embed --max-pixels 100 "$A" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "grad_300x180.png" "$TMP/err" || fail "--max-pixels refusal"

# --tensor: a [3, 3, 40, 48] tensor whose rows 0 and 2 are the same image.
perl -e 'my $n = 3 * 40 * 48; my @a = map { sin($_ * 0.37) } 0 .. $n - 1; my @b = map { cos($_ * 0.11) } 0 .. $n - 1;
    my $h = "{'"'"'descr'"'"': '"'"'<f4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (3, 3, 40, 48), }";
    $h .= " " x (63 - (10 + length($h)) % 64) . "\n"; binmode STDOUT;
    print "\x93NUMPY\x01\x00", pack("v", length $h), $h, pack("f<*", @a, @b, @a)' >"$TMP/x.npy"
embed --tensor "$TMP/x.npy" -o "$TMP/pooled.npy" || fail "--tensor exit $?"
F=$(npy_shape "$TMP/pooled.npy")
[ "$F" = "3 $D" ] || fail "--tensor pooled shape $F, expected 3 $D"
npy_rows "$TMP/pooled.npy" >"$TMP/pooled.rows"
# Batch positions may differ in the last bits (OpenBLAS picks kernels by CPU and
# by position in the GEMM), so rows are compared with a tolerance, never bytes.
sed -n 1p "$TMP/pooled.rows" >"$TMP/row1"
sed -n 2p "$TMP/pooled.rows" >"$TMP/row2"
sed -n 3p "$TMP/pooled.rows" >"$TMP/row3"
close_enough "$(maxdiff "$TMP/row1" "$TMP/row3")" 1e-5 || fail "same image, other row"
! close_enough "$(maxdiff "$TMP/row1" "$TMP/row2")" 1e-3 || fail "other image, same row"
embed --tensor "$TMP/x.npy" --batch 1 -o "$TMP/pooled1.npy" || fail "--tensor --batch 1"
npy_rows "$TMP/pooled1.npy" >"$TMP/pooled1.rows"
close_enough "$(maxdiff "$TMP/pooled.rows" "$TMP/pooled1.rows")" 1e-5 || fail "--tensor batch 1 vs 3"
if grep -q '"num_classes"' "$MODEL"; then
    K=$(grep -ao '"num_classes":"[0-9]*"' "$MODEL" | grep -o '[0-9]*')
    embed --tensor "$TMP/x.npy" --output logits -o "$TMP/logits.npy" || fail "--output logits"
    [ "$(npy_shape "$TMP/logits.npy")" = "3 $K" ] || fail "logits shape $(npy_shape "$TMP/logits.npy")"
fi
# bad tensors: wrong dtype, truncated data, wrong rank
sed 's/<f4/<f8/' "$TMP/x.npy" >"$TMP/f8.npy"
embed --tensor "$TMP/f8.npy" -o "$TMP/o.npy" 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "f8.npy: dtype '<f8'" "$TMP/err" || fail "f8 tensor: $(cat "$TMP/err")"
head -c 5000 "$TMP/x.npy" >"$TMP/short.npy"
embed --tensor "$TMP/short.npy" -o "$TMP/o.npy" 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "short.npy: data truncated" "$TMP/err" || fail "truncated tensor: $(cat "$TMP/err")"
embed --tensor "$TMP/abc.npy" -o "$TMP/o.npy" 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "N, 3, H, W" "$TMP/err" || fail "2-D tensor: $(cat "$TMP/err")"
[ ! -e "$TMP/o.npy" ] || fail "an output was left behind after a failure"

[ $FAILS -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "ok"
