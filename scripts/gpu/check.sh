#!/usr/bin/env bash
# Runs on the GPU machine, from the project root, over a bundle made by scripts/gpu/bundle.sh. Builds
# nothing. NEEDS A GPU.
#   1. troupe_gpu_check: every CUDA op against its CPU twin, the reference models on the GPU, timings.
#   1b. with LARGE=1: the same model checks at Qwen2.5-7B shapes (scripts/gpu/make_large_reference.py).
#   2. with BENCH=1: troupe bench throughput on the CUDA backend with random weights at Qwen2.5-7B shapes
#      (BENCH_ARGS overrides the workload; default 256 prompts x 512 in x 256 out).
# Logs go to $OUT (or /tmp/troupe-gpu); the tables come last.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=${BUNDLE:-bundle}
out=${OUT:-/tmp/troupe-gpu}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0  # never NVLink multicast on shared machines

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
if [ "${CHECK:-1}" = 1 ]; then
  "$bundle/troupe_gpu_check" --data "$bundle/data/reference" ${CHECK_ARGS:-} >"$out/gpu_check.txt" 2>&1 || status=1
fi

# 1b. with LARGE=1: a Qwen2.5-7B-shaped model with random weights, made here by transformers (15 GB under
#     $LARGE_DIR, default /tmp/troupe-large), and its logits and greedy continuations checked the same way.
if [ "${LARGE:-0}" = 1 ]; then
  large=${LARGE_DIR:-/tmp/troupe-large}
  if [ ! -f "$large/qwen2.5-7b-shape/reference.json" ]; then
    python3 scripts/gpu/make_large_reference.py "$bundle/data/qwen2.5-7b-shape" "$large/qwen2.5-7b-shape" \
      >"$out/large_reference.txt" 2>&1 || { status=1; tail -20 "$out/large_reference.txt"; }
  fi
  "$bundle/troupe_gpu_check" --no-ops --no-timing --data "$large" >"$out/gpu_check_large.txt" 2>&1 || status=1
fi

if [ "${BENCH:-0}" = 1 ]; then
  # shellcheck disable=SC2086
  "$bundle/troupe" bench throughput --backend cuda --load-format dummy --model "$bundle/data/qwen2.5-7b-shape" \
    ${BENCH_ARGS:---num-prompts 256 --input-len 512 --output-len 256 --max-model-len 1024} \
    --output-json "$out/bench.json" >"$out/bench.txt" 2>&1 || status=1
fi

[ -f "$out/gpu_check.txt" ] && cat "$out/gpu_check.txt"
[ -f "$out/gpu_check_large.txt" ] && { echo; echo "== the model at Qwen2.5-7B shapes against transformers"; cat "$out/large_reference.txt" 2>/dev/null | tail -2; cat "$out/gpu_check_large.txt"; }
[ -f "$out/bench.txt" ] && { echo; echo "== bench throughput (cuda, Qwen2.5-7B shapes, dummy weights)"; tail -40 "$out/bench.txt"; }
exit $status
