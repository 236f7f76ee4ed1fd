#!/usr/bin/env bash
# Installs the Debian 12 packages fragproxy needs to build and test, only if missing.
# Idempotent: when everything is present it runs no apt command at all.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  liburing-dev libasio-dev libyaml-cpp-dev doctest-dev libcli11-dev libbenchmark-dev libsystemd-dev
  clang libclang-rt-14-dev clang-format clang-tidy
  iperf3 socat python3 python3-prometheus-client haproxy systemd groff-base iproute2 openssl
  nginx-light libnginx-mod-stream sockperf wrk python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
