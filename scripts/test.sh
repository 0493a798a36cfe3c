#!/usr/bin/env bash
# Installs what troupe needs, builds troupe (the build checks that includes point down the layers:
# scripts/check_layers.sh), runs every test, then fuzzes the checkpoint parser, the native client protocol and the step
# plan codec for a bounded time. Exits non-zero on any failure. FUZZ_SECONDS (default 60) bounds the fuzzing, split
# between the three.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_test_data.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
fuzz_seconds="${FUZZ_SECONDS:-60}"
bash scripts/fuzz.sh $(( fuzz_seconds / 3 )) safetensors
bash scripts/fuzz.sh $(( fuzz_seconds / 3 )) client_wire
bash scripts/fuzz.sh $(( fuzz_seconds - 2 * (fuzz_seconds / 3) )) step_plan_codec
