#!/usr/bin/env bash
# Rewrites the README's table of per-worker statistics from `fragproxy --list-metrics`.
# Usage: scripts/metrics-table.sh [FRAGPROXY]   (default: build/app/fragproxy)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-build/app/fragproxy}"
table=$("$bin" --list-metrics)
TABLE="$table" python3 - <<'PY'
import os
p = "README.md"
s = open(p).read()
b, e = "<!-- metrics-table: begin -->\n", "<!-- metrics-table: end -->"
i, j = s.index(b) + len(b), s.index(e)
open(p, "w").write(s[:i] + os.environ["TABLE"] + "\n" + s[j:])
PY
