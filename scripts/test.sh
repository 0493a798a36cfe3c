#!/usr/bin/env bash
# Installs what troupe needs, builds it, runs every test, then fuzzes the checkpoint parser for a
# bounded time. Exits non-zero on any failure. FUZZ_SECONDS (default 60) bounds the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_test_data.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
