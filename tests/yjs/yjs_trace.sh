#!/bin/sh
# yjs_trace.sh -- the tests yjs_traces and yjs_traces_synthetic: the Yjs
# updates of editing traces, made by the npm yjs package
# (bench/yjs/make-updates.mjs), must replay through the C Yjs model to the
# trace's endContent, one update at a time, and Yjs's whole-document update
# must load to the same text and state vector (tandem-yjs-bench's "ok").
#
#   sh yjs_trace.sh [--max-bytes N] NODE MAKE_UPDATES_MJS TANDEM_YJS_BENCH PATH...
#
# A PATH is a trace file or a directory of them (*.json.gz, *.json). A
# directory that does not exist makes the test skip (exit 77, "SKIP: ..."),
# for ../shared/traces on a machine without it. --max-bytes N leaves out
# trace files larger than N bytes (the sanitizer build keeps to the small
# ones). Exit 0 all ok, 1 some trace failed, 2 usage.
set -u
max=0
if [ "${1:-}" = "--max-bytes" ]; then
    max=$2
    shift 2
fi
if [ $# -lt 4 ]; then
    echo "usage: $0 [--max-bytes N] NODE MAKE_UPDATES_MJS TANDEM_YJS_BENCH PATH..." >&2
    exit 2
fi
node=$1 mk=$2 bench=$3
shift 3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/yjs_trace.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

list=$tmp/list
: >"$list"
for p in "$@"; do
    if [ -d "$p" ]; then
        for f in "$p"/*.json.gz "$p"/*.json; do
            [ -f "$f" ] && echo "$f" >>"$list"
        done
    elif [ -f "$p" ]; then
        echo "$p" >>"$list"
    else
        echo "SKIP: $p is absent on this machine"
        exit 77
    fi
done
if [ ! -s "$list" ]; then
    echo "no trace files in: $*" >&2
    exit 1
fi

status=0
outs=
i=0
while IFS= read -r f; do
    size=$(wc -c <"$f" | tr -d " ")
    if [ "$max" -gt 0 ] && [ "$size" -gt "$max" ]; then
        echo "left out (over $max bytes): $f"
        continue
    fi
    i=$((i + 1))
    base=$(basename "$f")
    out=$tmp/$i-${base%%.json*}.tdyu
    if ! "$node" "$mk" "$f" "$out"; then
        echo "FAIL: make-updates.mjs $f" >&2
        status=1
        continue
    fi
    outs="$outs $out"
done <"$list"
if [ -z "$outs" ]; then
    echo "no trace left to run" >&2
    exit 1
fi
# shellcheck disable=SC2086 # the temp paths have no spaces
"$bench" $outs || status=1
exit $status
