#!/usr/bin/env bash
# The README's table of per-worker statistics is the one `fragproxy --list-metrics` prints from
# the stats lists (net/base/stats.hpp): a stat added, renamed or removed without the README
# following fails here. scripts/metrics-table.sh rewrites the README's copy.
# Usage: metrics_table.sh SOURCE_DIR FRAGPROXY
set -euo pipefail
readme="$1/README.md"
want=$("$2" --list-metrics)
have=$(sed -n '/<!-- metrics-table: begin -->/,/<!-- metrics-table: end -->/p' "$readme" |
       sed '1d;$d')
if [[ "$want" != "$have" ]]; then
    echo "README.md's metrics table differs from fragproxy --list-metrics (run scripts/metrics-table.sh):"
    diff <(echo "$have") <(echo "$want") || true
    exit 1
fi
echo "README.md's metrics table: $(grep -c '^| `' <<<"$want") families, current"
