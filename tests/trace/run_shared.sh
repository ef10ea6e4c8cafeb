#!/bin/sh
# Replays every real trace in the shared folder beside the project; exits 77
# (ctest: skipped) when the folder or its traces are absent, as on a fresh
# machine -- the one skip of tests/trace, and an environmental one.
exe=$1
dir=$2
if [ ! -d "$dir" ]; then
    echo "SKIP: no $dir"
    exit 77
fi
set -- "$dir"/*.json.gz
if [ ! -e "$1" ]; then
    echo "SKIP: no traces in $dir"
    exit 77
fi
exec "$exe" "$@"
