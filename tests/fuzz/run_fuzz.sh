#!/bin/sh
# Runs a libFuzzer target from its seed corpus (read only; new inputs go to a scratch
# directory) for a fixed number of runs from a fixed seed, so a CI run is reproducible, bounded
# in time too. A crash fails the test and its input is kept in ARTIFACTS (crash-*): add it to the
# corpus as a regression input once fixed.
# Usage: run_fuzz.sh TARGET SEED_CORPUS RUNS SECONDS ARTIFACTS
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$5"
exec "$1" -seed=1 -runs="$3" -max_total_time="$4" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$5/" "$work" "$2"
