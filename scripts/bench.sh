#!/usr/bin/env bash
# The comparison: installs what is missing, builds fragproxy in Release, runs bench/compare.py
# (fragproxy vs HAProxy, nginx, socat and the direct path; about 10 minutes; loopback only) and
# leaves bench/results/<date>-<host>.{md,json,png}. Arguments go to compare.py (--quick, --only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRAGPROXY_TESTS=OFF >/dev/null
cmake --build build-release --parallel "$(nproc)" --target fragproxy
exec /usr/bin/python3 bench/compare.py --fragproxy build-release/app/fragproxy "$@"
