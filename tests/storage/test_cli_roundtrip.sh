#!/bin/bash
# test_cli_roundtrip.sh TANDEM -- bar 4, through the real binary:
#   import JSON -> export gives the same bytes back (the JSON is written in
#   the canonical form export produces: keys in byte order, compact, one
#   line); a backup directory opens as a data directory with identical
#   content; compaction changes nothing visible; errors name what was wrong
#   and exit non-zero. (The data directory's lock is tested in
#   test_store_unit, across processes.)
set -u
TANDEM=${1:?usage: test_cli_roundtrip.sh path/to/tandem}
T=$(mktemp -d /tmp/tandem-cli-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# expect STATUS CMD... : runs CMD, checks its exit status, keeps stderr in $T/err
expect() {
    local want=$1; shift
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$T/err")"
}
# says WORD: the last command's stderr mentions WORD
says() { grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"; }

D="$T/data"
# Every kind of root and value; nested lists and maps both ways; unicode,
# escapes, negative and large integers, floats.
cat >"$T/doc.json" <<'EOF'
{"body":"Hello, w\u00f6rld \u2014 \"quoted\"\\ line\nbreak\ttab \ud83d\ude00","cards":[{"done":false,"tags":["a","b"],"title":"first"},{"done":true,"n":-42,"sub":{"deep":[[1,2],[3]]}},"plain",7,2.5,null,true,[],{}],"meta":{"big":9007199254740991,"empty":"","neg":-9223372036854775808,"pi":3.1415926535897931,"small":1e-07},"notes":""}
EOF
# export writes UTF-8 as is and escapes only what JSON requires: the
# canonical form of the file above.
expect 0 "$TANDEM" import doc "$T/doc.json" --data "$D"
says "created"
expect 0 "$TANDEM" export doc --data "$D"
cp "$T/out" "$T/export1.json"
# Re-import the export: byte-identical round trip of the canonical form.
expect 0 "$TANDEM" import doc2 "$T/export1.json" --data "$D"
expect 0 "$TANDEM" export doc2 --data "$D"
cmp -s "$T/out" "$T/export1.json" || fail "export of re-imported doc differs:
$(cat "$T/export1.json")
$(cat "$T/out")"
# The hand-written canonical file: same bytes.
printf '%s\n' '{"a":"text root","b":[1,-2,3.5,"s",true,false,null,[1,[2]],{"k":"v"}],"c":{"list":[{"x":1}],"map":{"y":{"z":null}},"num":12,"str":"é"},"d":"x"}' >"$T/canon.json"
expect 0 "$TANDEM" import canon "$T/canon.json" --data "$D"
expect 0 "$TANDEM" export canon --data "$D"
cmp -s "$T/out" "$T/canon.json" || fail "import/export round trip differs:
want $(cat "$T/canon.json")
got  $(cat "$T/out")"
# The content of the first file survived (spot checks on the raw output).
grep -qF '"neg":-9223372036854775808' "$T/export1.json" || fail "int64 min lost: $(cat "$T/export1.json")"
grep -qF '"deep":[[1,2],[3]]' "$T/export1.json" || fail "nested lists lost: $(cat "$T/export1.json")"
grep -qF '"title":"first"' "$T/export1.json" || fail "map in list lost: $(cat "$T/export1.json")"

# Explicit kinds: one name used by a text and a list.
printf '%s\n' '{"x@list":[1],"x@text":"abc"}' >"$T/kinds.json"
expect 0 "$TANDEM" import kinds "$T/kinds.json" --data "$D"
expect 0 "$TANDEM" export kinds --data "$D"
grep -qF '"x@text":"abc"' "$T/out" && grep -qF '"x@list":[1]' "$T/out" ||
    fail "explicit kinds lost: $(cat "$T/out")"

# docs lists them.
expect 0 "$TANDEM" docs --data "$D"
for d in canon doc doc2 kinds; do
    grep -Eq "^$d +tandem " "$T/out" || fail "docs does not list $d as a tandem document: $(cat "$T/out")"
done
# a Yjs document is listed as one: a Yjs v1 update by hand, client 1 inserts
# "a" into root text "t" (1 client; 1 struct at clock 0; info 4 = string
# content, no origins, so the parent follows: 1 = a root's name, "t"; the
# content "a"; an empty delete set)
printf '\001\001\001\000\004\001\001t\001a\000' >"$T/a.yupd"
expect 0 "$TANDEM" import ydoc "$T/a.yupd" --yjs --data "$D"
expect 0 "$TANDEM" export ydoc --data "$D"
grep -qF '"t":"a"' "$T/out" || fail "the Yjs import lost its text: $(cat "$T/out")"
expect 0 "$TANDEM" docs --data "$D"
grep -Eq "^ydoc +yjs " "$T/out" || fail "docs does not list ydoc as a Yjs document: $(cat "$T/out")"

# Existing documents are not overwritten without --force.
expect 1 "$TANDEM" import canon "$T/kinds.json" --data "$D"
says "already exists"
says "--force"
expect 0 "$TANDEM" import canon "$T/kinds.json" --data "$D" --force
expect 0 "$TANDEM" export canon --data "$D"
grep -qF '"x@text":"abc"' "$T/out" || fail "--force did not replace canon"
expect 0 "$TANDEM" import canon "$T/canon.json" --data "$D" --force

# Backup: opens as a data directory with identical content.
expect 0 "$TANDEM" backup "$T/backup" --data "$D"
for d in canon doc doc2 kinds; do
    "$TANDEM" export "$d" --data "$D" >"$T/a.json" 2>"$T/err" || fail "export $d: $(cat "$T/err")"
    "$TANDEM" export "$d" --data "$T/backup" >"$T/b.json" 2>"$T/err" || fail "export $d from backup: $(cat "$T/err")"
    cmp -s "$T/a.json" "$T/b.json" || fail "backup differs for $d"
done
expect 1 "$TANDEM" backup "$T/backup" --data "$D"
says "already exists"

# Compaction changes nothing visible; check passes before and after.
expect 0 "$TANDEM" check --data "$D"
expect 0 "$TANDEM" compact --data "$D"
expect 0 "$TANDEM" export canon --data "$D"
cmp -s "$T/out" "$T/canon.json" || fail "compaction changed canon: $(cat "$T/out")"
expect 0 "$TANDEM" check --data "$D"

# Errors name what was wrong; usage errors exit 2.
expect 1 "$TANDEM" export nosuchdoc --data "$D"
says "nosuchdoc"
expect 1 "$TANDEM" docs --data "$T/nowhere"
says "$T/nowhere"
expect 2 "$TANDEM" export --data "$D"
says "missing argument"
expect 2 "$TANDEM" docs --frobnicate
says "--frobnicate"
expect 2 "$TANDEM" frobnicate
says "unknown command"
printf '{"a":1' >"$T/bad.json"
expect 1 "$TANDEM" import bad "$T/bad.json" --data "$D"
says "not valid JSON"
printf '{"a":1}' >"$T/num.json"
expect 1 "$TANDEM" import num "$T/num.json" --data "$D"
says "/a"
expect 1 "$TANDEM" import nofile "$T/missing.json" --data "$D"
says "missing.json"
expect 2 "$TANDEM" import $'bad\001id' "$T/canon.json" --data "$D"
says "invalid document id"
expect 0 "$TANDEM" delete kinds --data "$D"
expect 1 "$TANDEM" export kinds --data "$D"
for verb in docs export import backup compact check delete; do
    expect 0 "$TANDEM" "$verb" --help
    grep -q "usage: tandem $verb" "$T/out" || fail "$verb --help prints no usage"
done

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "cli round trip: all checks passed"
