#!/bin/bash
# test_manpage.sh - siamidx(1) and the bash completion, generated at build time
# from the --help texts (tools/gen_manpage.py): the page renders without
# warnings and lists every command of `siamidx --help` with its options;
# completion offers the commands and a command's options; `cmake --install`
# puts both where man and bash-completion look. Skips without groff.
set -u
BIN=${SIAMIDX_BIN:?SIAMIDX_BIN not set}
BUILD=${SIAMIDX_BUILD:?SIAMIDX_BUILD not set}
T=$(mktemp -d "${SIAMIDX_TMP:-/tmp}/manpage.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
MAN=$BUILD/siamidx.1
COMP=$BUILD/siamidx.bash-completion
[ -f "$MAN" ] && [ -f "$COMP" ] || { echo "skip: no man page in $BUILD (no python3 at build time)"; exit 77; }
command -v groff >/dev/null || { echo "skip: groff not found (tools/install-deps.sh installs groff-base)"; exit 77; }

# renders, without a warning, as plain text
groff -man -Tutf8 -ww "$MAN" 2>"$T/warn" | sed 's/.\x08//g' >"$T/man.txt" || fail "groff exit $?"
[ -s "$T/warn" ] && fail "groff warnings: $(head -5 "$T/warn")"
grep -q '^SIAMIDX(1)' "$T/man.txt" || fail "no SIAMIDX(1) header: $(head -3 "$T/man.txt")"
cmds=$("$BIN" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on = 0}')
[ "$(echo "$cmds" | wc -w)" -ge 10 ] || fail "commands of siamidx --help: $cmds"
for c in $cmds; do
    grep -Eq "^ {7}$c( |$)" "$T/man.txt" || fail "the man page's COMMANDS lack $c"
    upper=$(echo "$c" | tr a-z- A-Z-)
    grep -q "^$upper\$" "$T/man.txt" || fail "no section for $c"
done
# each command's own help is in its section, e.g. pair's --batch and query's --html
grep -q -- '--batch PAIRS.csv' "$T/man.txt" || fail "pair's help is not in the page"
grep -q -- '--html FILE' "$T/man.txt" || fail "--html is not in the page"

# completion: commands, then a command's options
comp() { # WORDS... -> COMPREPLY, one a line
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _siamidx; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$COMP" "$@"
}
[ "$(comp siamidx qu)" = query ] || fail "siamidx qu<TAB>: $(comp siamidx qu)"
comp siamidx tr | grep -qx train-encoder || fail "siamidx tr<TAB> lacks train-encoder"
comp siamidx pair --ht | grep -qx -- --html || fail "siamidx pair --ht<TAB>: $(comp siamidx pair --ht)"
comp siamidx eval --un | grep -qx -- --unseen-artists || fail "eval --un<TAB>: $(comp siamidx eval --un)"
comp siamidx train-encoder --obj | grep -qx -- --objective || fail "train-encoder --obj<TAB>"
[ -z "$(comp siamidx eval --batch)" ] || fail "eval offers pair's --batch"

# installed where man and bash-completion look
cmake --install "$BUILD" --prefix "$T/p" >/dev/null || fail "cmake --install exit $?"
[ -f "$T/p/share/man/man1/siamidx.1" ] || fail "man page not installed: $(cd "$T/p" && find . -name 'siamidx.1*')"
[ -f "$T/p/share/bash-completion/completions/siamidx" ] || fail "completion not installed"
if command -v man >/dev/null; then
    MANPATH=$T/p/share/man MANWIDTH=80 man siamidx 2>/dev/null | grep -q 'which artist painted this' ||
        fail "man siamidx does not find the installed page"
fi

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo ok
