#!/usr/bin/env bash
# Installs what is missing, builds fragproxy in Release and runs it on a config file.
# Usage: scripts/run.sh [CONFIG]   (default: configs/fragproxy.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRAGPROXY_TESTS=OFF >/dev/null
cmake --build build-release --parallel "$(nproc)" --target fragproxy
exec ./build-release/app/fragproxy -c "${1:-configs/fragproxy.yaml}"
