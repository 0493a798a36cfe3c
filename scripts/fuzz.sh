#!/usr/bin/env bash
# Builds a fuzzer with clang (libFuzzer + ASan + UBSan) in build-fuzz/ and runs it for a bounded time.
# Usage: scripts/fuzz.sh [seconds, default 60] [target, default safetensors] [extra libFuzzer flags...]
#   targets: safetensors (a whole .safetensors file), safetensors_index (model.safetensors.index.json),
#            client_wire (the byte stream a client sends to the native client port),
#            step_plan_codec (a step plan message as a rank receives it from rank 0)
# Exits non-zero when the fuzzer finds a crash, a leak or a timeout; the input that did it is written to
# build-fuzz/fuzz-artifacts/<target>/. Inputs that reach new code collect in build-fuzz/fuzz-corpus/<target>/;
# copy small, interesting ones into fuzz/corpus/<target>/ so the replay tests keep them.
set -euo pipefail

seconds="${1:-60}"
target="${2:-safetensors}"
shift $(( $# < 2 ? $# : 2 ))
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DTROUPE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" -j1 --target "${target}_fuzz"

dict="$root/fuzz/safetensors.dict"
if [ -f "$root/fuzz/$target.dict" ]; then dict="$root/fuzz/$target.dict"; fi
corpus="$build/fuzz-corpus/$target"
artifacts="$build/fuzz-artifacts/$target/"
mkdir -p "$corpus" "$artifacts"
# New inputs go to the first folder; the committed seeds are only read.
"$build/fuzz/${target}_fuzz" \
  -max_len=4096 \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -dict="$dict" \
  -artifact_prefix="$artifacts" \
  -print_final_stats=1 \
  "$@" \
  "$corpus" "$root/fuzz/corpus/$target"
