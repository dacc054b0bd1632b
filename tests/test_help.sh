#!/bin/bash
# test_help.sh - every command's --help lists exactly the options it accepts,
# each on one regular line with its default; unknown and abbreviated options
# are usage errors (exit 2).
#
# The accepted set comes from the parser's own table (the hidden
# `siamidx CMD --list-options`) and is probed too: each listed option must not
# be refused as unknown. The help lines must name the same options, one line
# each, in the format tools read (man page, completion):
#   "  -i, --index DIR         the index directory (default: ...)"
set -u
: "${SIAMIDX_BIN:?}" "${SIAMIDX_TMP:?}"
BIN=$SIAMIDX_BIN
T=$SIAMIDX_TMP/test_help
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
export SIAMIDX_INDEX=$T/no.idx # probes must find no index to work on
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

commands=$("$BIN" --help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')
[ "$(echo "$commands" | wc -l)" -ge 12 ] || fail "siamidx --help lists only: $commands"
line_re='^  (-[a-zA-Z], )?--[a-z0-9-]+( [^ ]+)?  +[^ ].*$'
for cmd in $commands; do
    help=$("$BIN" "$cmd" --help) || fail "$cmd --help exit $?"
    [[ $help == "usage: siamidx $cmd"* ]] || fail "$cmd --help does not start with its usage: $help"
    opts=$(printf '%s\n' "$help" | sed -n '/^options:$/,$p' | tail -n +2)
    [ -n "$opts" ] || { fail "$cmd --help has no options section"; continue; }
    # one regular line per option, each with its default (but --help itself)
    while IFS= read -r l; do
        [[ $l =~ $line_re ]] || fail "$cmd --help: irregular option line '$l'"
        [[ $l == *"--help "* || $l == *"(default: "?*")"* ]] || fail "$cmd --help: no default: '$l'"
    done <<<"$opts"
    # the options help names = the options the parser accepts
    from_help=$(printf '%s\n' "$opts" | sed -E 's/^  (-([a-zA-Z]), )?--([a-z0-9-]+).*/\2 --\3/; s/^ //' |
                sed -E 's/^([a-zA-Z]) /-\1 /' | sort)
    accepted=$("$BIN" "$cmd" --list-options | sort) || fail "$cmd --list-options exit $?"
    [ "$from_help" = "$accepted" ] ||
        fail "$cmd: --help lists [$(echo $from_help)] but the parser accepts [$(echo $accepted)]"
    # probe: each accepted name is not refused as unknown
    while read -r short long; do
        [ "$long" = "" ] && long=$short && short=
        for name in $short $long; do
            [ "$name" = --help ] || [ "$name" = -h ] && continue
            err=$(timeout 20 "$BIN" "$cmd" "$name" 1 </dev/null 2>&1 >/dev/null)
            [[ $err == *"unknown option"* ]] && fail "$cmd $name: listed but refused: $err"
        done
    done <<<"$accepted"
    # an option no command has, and an abbreviation of a real one: exit 2, said so
    err=$("$BIN" "$cmd" --no-such-option 2>&1); rc=$?
    [ $rc -eq 2 ] && [[ $err == *"unknown option '--no-such-option'"* ]] ||
        fail "$cmd --no-such-option: exit $rc: $err"
    first_long=$(echo "$accepted" | grep -o -- '--[a-z0-9-]*' | grep -v -- --help | awk 'length > 5' | head -1)
    if [ -n "$first_long" ]; then
        err=$("$BIN" "$cmd" "${first_long:0:5}" 2>&1); rc=$?
        [ $rc -eq 2 ] && [[ $err == *"unknown option"* ]] || fail "$cmd ${first_long:0:5} (abbreviated): exit $rc: $err"
    fi
done

# what the issue found: query took --artist, --wait, --index-type, and -k was the neighbour count
for o in --artist --wait --index-type; do
    err=$("$BIN" query x.jpg "$o" y 2>&1); rc=$?
    [ $rc -eq 2 ] && [[ $err == *"unknown option '$o'"* ]] || fail "query $o: exit $rc: $err"
done
q=$("$BIN" query --help)
for want in "-k, --top K  *artists to list \\(default: 5\\)" "--neighbors N  *nearest indexed paintings to list \\(default: 5\\)" \
            "--candidates N  *nearest indexed paintings scored as evidence, at least --neighbors .*\\(default: 50\\)"; do
    printf '%s\n' "$q" | grep -Eq -- "^  $want\$" || fail "query --help lacks '$want': $q"
done
[[ $q != *"siamidx build"* && $q != *"siamidx remove"* ]] || fail "query --help shows other commands' usage"

[ $failures -eq 0 ] && echo "ok: --help of $(echo $commands | wc -w) commands"
exit $((failures > 0))
