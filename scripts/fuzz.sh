#!/usr/bin/env bash
# Builds the safetensors fuzzer with clang (libFuzzer + ASan + UBSan) in build-fuzz/ and runs it for a bounded
# time. Usage: scripts/fuzz.sh [seconds, default 60] [extra libFuzzer flags...]
# Exits non-zero when the fuzzer finds a crash, a leak or a timeout; the input that did it is written to
# build-fuzz/fuzz-artifacts/. Inputs that reach new code collect in build-fuzz/fuzz-corpus/; copy the small,
# interesting ones into fuzz/corpus/safetensors/ so the replay tests keep them.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DTROUPE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" -j1 --target safetensors_fuzz

corpus="$build/fuzz-corpus/safetensors"
artifacts="$build/fuzz-artifacts/"
mkdir -p "$corpus" "$artifacts"
# New inputs go to the first folder; the committed seeds are only read.
"$build/fuzz/safetensors_fuzz" \
  -max_len=4096 \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -dict="$root/fuzz/safetensors.dict" \
  -artifact_prefix="$artifacts" \
  -print_final_stats=1 \
  "$@" \
  "$corpus" "$root/fuzz/corpus/safetensors"
