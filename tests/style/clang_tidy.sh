#!/usr/bin/env bash
# clang-tidy with the checked-in .clang-tidy over alloc/, net/ and app/, on the plain variant's
# compile commands (the sanitizer variants compile the same files with other flags). Clean is
# the rule: any finding fails. Usage: clang_tidy.sh SOURCE_DIR BUILD_DIR. Exits 77 without it.
set -euo pipefail
src=$1 build=$2
command -v run-clang-tidy >/dev/null || { echo "SKIP: no run-clang-tidy (clang-tidy)"; exit 77; }
db="$build/clang-tidy"
mkdir -p "$db"
python3 - "$build/compile_commands.json" "$db/compile_commands.json" <<'PY'
import json, sys
entries = [e for e in json.load(open(sys.argv[1]))
           if "-fsanitize" not in e.get("command", " ".join(e.get("arguments", [])))]
json.dump(entries, open(sys.argv[2], "w"))
PY
out=$(run-clang-tidy -quiet -j "$(nproc)" -p "$db" -extra-arg=-Wno-ignored-optimization-argument \
      "$src/(alloc|net|app)/.*\.cpp$" 2>&1 | sed 's/\x1b\[[0-9;]*m//g') && rc=0 || rc=$?
if [ "$rc" -ne 0 ] || grep -qE '(warning|error):' <<<"$out"; then
    printf '%s\n' "$out"
    echo "clang-tidy: findings (exit $rc)"
    exit 1
fi
echo "clang-tidy clean over $(grep -c '^clang-tidy' <<<"$out" || true) files"
