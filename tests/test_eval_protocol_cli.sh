#!/bin/bash
# test_eval_protocol_cli.sh - `siamidx eval` (the protocol) end to end on the
# fixture images as 6 "artists" from three sources, with the tiny random
# model: provenance reaches the index, unseen artists are refused when the
# head trained on them, figures are per source, unmeasurable ones are null.
# Labels are arbitrary: this checks the plumbing, not accuracy.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
DATA=${SIAMIDX_TEST_DATA:?SIAMIDX_TEST_DATA not set}
TMP=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/eval_protocol_cli.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M0=$DATA/model/tiny_resnet18.safetensors
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# a0 a1: repoA Baroque (7 each); a3: 4 in repoB, 3 in repoC (an artist in two
# sources); unseen: a2 (repoA Cubism, 4), a4 (repoB, 4)
seq=()
for k in 1 2 3 4 5 6 7; do seq+=(a0,repoA,Baroque a1,repoA,Baroque); done
for k in 1 2 3 4; do seq+=(a3,repoB,data a2,repoA,Cubism a4,repoB,data); done
for k in 1 2 3; do seq+=(a3,repoC,x); done
mkdir -p "$TMP/img"
hdr=filename,artist,source_repo,source_path
echo $hdr >"$TMP/train.csv"; echo $hdr >"$TMP/unseen.csv"
i=0
for f in "$DATA"/images/*.png "$DATA"/images/*.jpg; do
    case $f in *huge*) continue ;; esac # refused by design (pixel limit)
    [ $i -lt ${#seq[@]} ] || break
    IFS=, read -r a s y <<<"${seq[$i]}"
    cp "$f" "$TMP/img/$i.${f##*.}"
    row="$TMP/img/$i.${f##*.},$a,$s,$y/p$i.jpg"
    case $a in a2|a4) echo "$row" >>"$TMP/unseen.csv" ;; *) echo "$row" >>"$TMP/train.csv" ;; esac
    i=$((i + 1))
done
[ $i -eq 29 ] || fail "only $i fixture images"
printf '# held out\na2\n\n  a4  \n' >"$TMP/unseen.txt"
{ cat "$TMP/train.csv"; tail -n +2 "$TMP/unseen.csv"; } >"$TMP/all.csv"

"$BIN" build "$TMP/train.csv" -i "$TMP/idx" -m "$M0" --quiet || fail "build train"
"$BIN" train -i "$TMP/idx" --val-fraction 0.6 --seed 3 >/dev/null || fail "train"
"$BIN" build "$TMP/unseen.csv" -i "$TMP/idx" -m "$M0" --quiet || fail "build unseen"
j=$("$BIN" eval -i "$TMP/idx" --unseen-artists "$TMP/unseen.txt" --pairs 500 --json) ||
    fail "eval exit $?"
[[ $j == '{"schema_version":1,"kind":"eval","index":{"path":"'*'"protocol":1,"seed":1,"n_pairs":500,'* ]] || fail "JSON head: $j"
# 3 seen artists x 7 images: 2 validation, 2 test, 3 training images each
[[ $j == *'"overall":{"seen":{"n_images":6,"pairs":{"same_source":{"n_positives":500,"n_negatives":500,'* ]] ||
    fail "overall seen: $j"
[[ $j == *'"unseen":{"n_images":8,"n_artists":2,"pairs":{"same_source":{"n_positives":500,"n_negatives":500,'* ]] ||
    fail "overall unseen: $j"
[[ $j == *'"gallery":{"n_images":15,"n_artists":3}'* ]] || fail "gallery: $j"
# provenance reached the index: one group per source, by name
[[ $j == *'"by_source":[{"source":"repoA",'*'{"source":"repoB",'*'{"source":"repoC",'* ]] || fail "by_source: $j"
# repoC has no unseen artist: its unseen figures and open-set AUROC cannot be measured
c=${j#*\"source\":\"repoC\",}
[[ $c == *'"unseen":{"n_images":0,"n_artists":0,"pairs":{"same_source":{"n_positives":0,"n_negatives":0,"auc":null,"eer":null,"tar_at_far1":null,"ece":null}'* ]] ||
    fail "repoC unseen not null: $c"
[[ $c == *'"open_set":{"auroc":null,'* ]] || fail "repoC open set: $c"
[[ ${j%%\"by_source\"*} =~ \"open_set\":\{\"auroc\":[01] ]] || fail "overall open-set AUROC missing: $j"
# unseen a2 is alone in repoA's unseen images (a4 in repoB's): its negatives come from another source, counted
[[ $j =~ \"unseen\":\{\"n_images\":8,\"n_artists\":2,\"pairs\":\{[^}]*\},[^}]*\},\"n_style_fallback\":[1-9][0-9]*,\"n_source_fallback\":[1-9] ]] ||
    fail "unseen fallbacks not counted: $j"
# reproducible
j2=$("$BIN" eval -i "$TMP/idx" --unseen-artists "$TMP/unseen.txt" --pairs 500 --json)
[ "$j" = "$j2" ] || fail "eval not reproducible"
t=$("$BIN" eval -i "$TMP/idx" --unseen-artists "$TMP/unseen.txt" --pairs 500) || fail "text exit"
[[ $t == *"all sources: 6 seen test images, 8 images of 2 unseen artists"* && $t == *"repoB:"* ]] ||
    fail "text: $t"
# the earlier report is still there
l=$("$BIN" eval -i "$TMP/idx" --legacy --json) || fail "legacy exit $?"
[[ $l == *'"seen_pairs":{"n_pairs":20000,'* ]] || fail "legacy: $l"

# refusals: an artist the index lacks; artists the head trained on
printf 'a2\nnobody\n' >"$TMP/bad.txt"
err=$("$BIN" eval -i "$TMP/idx" --unseen-artists "$TMP/bad.txt" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ $err == *"'nobody' has no image in the index"* ]] || fail "unknown artist: $rc $err"
"$BIN" build "$TMP/all.csv" -i "$TMP/all" -m "$M0" --quiet || fail "build all"
"$BIN" train -i "$TMP/all" --val-fraction 0.6 --seed 3 >/dev/null || fail "train all"
err=$("$BIN" eval -i "$TMP/all" --unseen-artists "$TMP/unseen.txt" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ $err == *"not unseen"* || $err == *"it saw unseen artists"* ]] ||
    fail "head trained on the unseen artists was accepted: $rc $err"
# without a list: the head's own held-out artists are the unseen ones
"$BIN" train -i "$TMP/all" --val-fraction 0.6 --seed 3 --holdout-artists 2 >/dev/null || fail "train holdout"
h=$("$BIN" eval -i "$TMP/all" --pairs 100 --json) || fail "eval holdout exit $?"
[[ $h =~ \"unseen\":\{\"n_images\":[0-9]+,\"n_artists\":2, ]] || fail "holdout unseen: $h"
# given test images: exactly these are the seen population (e.g. what an encoder never
# saw); one given relative to the current directory, as `remove` accepts it
grep -E ',a[013],' "$TMP/train.csv" | cut -d, -f1 | awk 'NR % 4 == 1' >"$TMP/tests.txt"
ng=$(wc -l <"$TMP/tests.txt")
[ "$ng" -ge 4 ] || fail "only $ng given test images"
first=$(head -1 "$TMP/tests.txt")
{ echo "# held out of the encoder"; (cd "$TMP" && realpath --relative-to=. "$first");
  tail -n +2 "$TMP/tests.txt"; } >"$TMP/tests_rel.txt"
"$BIN" build "$TMP/train.csv" -i "$TMP/given" -m "$M0" --quiet || fail "build given"
out=$(cd "$TMP" && "$BIN" train -i given --val-fraction 0.6 --seed 3 --test-images tests_rel.txt --json) ||
    fail "train --test-images exit $?"
[[ $out == *"\"n_test\":$ng,"* ]] || fail "train --test-images counts: $out"
"$BIN" build "$TMP/unseen.csv" -i "$TMP/given" -m "$M0" --quiet || fail "build given unseen"
g=$("$BIN" eval -i "$TMP/given" --unseen-artists "$TMP/unseen.txt" --pairs 200 --json) ||
    fail "eval after --test-images exit $?"
[[ $g == *"\"overall\":{\"seen\":{\"n_images\":$ng,"* ]] || fail "seen population is not the given images: $g"
# a given image the index lacks is refused, naming it, and the stored head is kept
cp "$TMP/tests.txt" "$TMP/tests_bad.txt"; echo "$TMP/img/nowhere.jpg" >>"$TMP/tests_bad.txt"
err=$("$BIN" train -i "$TMP/given" --test-images "$TMP/tests_bad.txt" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && [[ $err == *"1 of the $((ng + 1)) test images are not in the index"*nowhere.jpg* ]] ||
    fail "missing test image: $rc $err"
g2=$("$BIN" eval -i "$TMP/given" --unseen-artists "$TMP/unseen.txt" --pairs 200 --json)
[ "$g" = "$g2" ] || fail "a refused train changed the head"
printf '# nothing\n\n' >"$TMP/tests_empty.txt"
"$BIN" train -i "$TMP/given" --test-images "$TMP/tests_empty.txt" 2>/dev/null
[ $? -eq 1 ] || fail "empty test list accepted"

# usage errors
"$BIN" eval -i "$TMP/idx" --pairs 0 2>/dev/null; [ $? -eq 2 ] || fail "--pairs 0 accepted"
"$BIN" eval -i "$TMP/idx" --unseen-artists "$TMP/missing.txt" 2>/dev/null
[ $? -eq 1 ] || fail "missing list accepted"

[ $failures -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok"
