#!/bin/sh
# Replays every real trace in the shared folder beside the project; exits 77
# (ctest: skipped) when the folder or its traces are absent, as on a fresh
# machine.
exe=$1
dir=$2
if [ ! -d "$dir" ]; then
    echo "no $dir: skipped"
    exit 77
fi
set -- "$dir"/*.json.gz
if [ ! -e "$1" ]; then
    echo "no traces in $dir: skipped"
    exit 77
fi
exec "$exe" --runs 1 "$@"
