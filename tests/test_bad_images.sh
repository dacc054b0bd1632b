#!/bin/bash
# test_bad_images.sh - `siamidx embed` over good and bad images mixed: exit
# status 3, exactly one stderr line per bad file naming it and the reason, and
# a TSV row for every good image.
set -u

BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
DATA=${SIAMIDX_TEST_DATA:?SIAMIDX_TEST_DATA not set}
MODEL=$DATA/model/tiny_resnet18.safetensors
IMG=$DATA/images
if [ ! -x "$BIN" ] || [ ! -f "$MODEL" ] || [ ! -f "$IMG/truncated.jpg" ]; then
    echo "skipped: needs $BIN, $MODEL and $IMG"
    exit 77
fi

mkdir -p "${SIAMIDX_TMP:-/tmp}"
TMP=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/bad_images.XXXXXX")
trap 'chmod -R u+rwx "$TMP"; rm -rf "$TMP"' EXIT

# Root reads any file whatever its mode, so there a directory stands in for the
# unreadable file.
if [ "$(id -u)" = 0 ]; then
    UNREADABLE=$TMP/folder.jpg
    mkdir "$UNREADABLE"
    UNREADABLE_WHY="directory"
else
    UNREADABLE=$TMP/locked.jpg
    cp "$IMG/photo_480x360.jpg" "$UNREADABLE"
    chmod 000 "$UNREADABLE"
    UNREADABLE_WHY="Permission denied"
fi

GOOD=("$IMG/photo_480x360.jpg" "$IMG/1x1.png" "$IMG/grad_300x180.png")
BAD=("$IMG/truncated.jpg" "$IMG/zero.jpg" "$IMG/text.jpg" "$IMG/huge_header.png"
     "/nonexistent.jpg" "$UNREADABLE")
WHY=("truncated" "empty" "cannot decode" "limit" "No such file" "$UNREADABLE_WHY")

"$BIN" embed -m "$MODEL" "${GOOD[0]}" "${BAD[0]}" "${BAD[1]}" "${BAD[2]}" "${GOOD[1]}" \
    "${BAD[3]}" "${BAD[4]}" "${BAD[5]}" "${GOOD[2]}" >"$TMP/out.tsv" 2>"$TMP/err.txt"
rc=$?

fail=0
problem() { echo "FAIL: $*"; fail=1; }

[ "$rc" = 3 ] || problem "exit status $rc, expected 3"
echo "--- stderr"; cat "$TMP/err.txt"; echo "---"

lines=$(wc -l <"$TMP/err.txt")
[ "$lines" = "${#BAD[@]}" ] || problem "$lines stderr lines for ${#BAD[@]} bad files"
for i in "${!BAD[@]}"; do
    n=$(grep -cF -- "${BAD[$i]}:" "$TMP/err.txt")
    [ "$n" = 1 ] || problem "${BAD[$i]} named on $n stderr lines, expected 1"
    grep -F -- "${BAD[$i]}:" "$TMP/err.txt" | grep -qF -- "${WHY[$i]}" ||
        problem "the line for ${BAD[$i]} does not say '${WHY[$i]}'"
    ! grep -qF -- "${BAD[$i]}	" "$TMP/out.tsv" || problem "${BAD[$i]} has a TSV row"
done

for g in "${GOOD[@]}"; do
    ! grep -qF -- "$g" "$TMP/err.txt" || problem "good image $g named on stderr"
    rows=$(awk -F'\t' -v p="$g" '$1 == p && NF > 2' "$TMP/out.tsv" | wc -l)
    [ "$rows" = 1 ] || problem "good image $g has $rows TSV rows, expected 1"
done
[ "$(wc -l <"$TMP/out.tsv")" = "${#GOOD[@]}" ] || problem "TSV has $(wc -l <"$TMP/out.tsv") rows"

# The rows are real embeddings: unit length and not all equal.
awk -F'\t' '{ s = 0; for (i = 2; i <= NF; i++) s += $i * $i;
              if (s < 0.98 || s > 1.02) { print "row " NR " has squared norm " s; bad = 1 } }
            END { exit bad }' "$TMP/out.tsv" || problem "embeddings are not L2-normalised"
[ "$(cut -f2- "$TMP/out.tsv" | sort -u | wc -l)" = "${#GOOD[@]}" ] ||
    problem "distinct images gave identical embeddings"

# All bad: nothing embedded, exit status 1.
"$BIN" embed -m "$MODEL" "${BAD[0]}" "${BAD[1]}" >/dev/null 2>"$TMP/err2.txt"
rc=$?
[ "$rc" = 1 ] || problem "all-bad run: exit status $rc, expected 1"

[ "$fail" = 0 ] && echo "ok"
exit "$fail"
