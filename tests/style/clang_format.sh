#!/usr/bin/env bash
# Every C++ file of the tree is clang-format clean (.clang-format). Exits 77 without clang-format.
set -euo pipefail
cd "$1"
command -v clang-format >/dev/null || { echo "SKIP: no clang-format"; exit 77; }
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' 2>/dev/null ||
                     find alloc net app tests bench -name '*.[ch]pp')
clang-format --dry-run -Werror "${files[@]}"
echo "${#files[@]} files clang-format clean"
