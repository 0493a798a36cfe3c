#!/usr/bin/env bash
# Per-step breakdown and speed of the CUDA backend at batch 1 and at 256 sequences (issue 5), run on
# the GPU machine from the project root after scripts/gpu/bundle.sh: `bash bundle/profile.sh` (the
# bundle carries a copy). Logs go to $OUT (or ./profile-out); the last lines are a summary.
#   TROUPE_CUDA_PROFILE=1  times each op with CUDA events (eager steps); the table prints at exit
#   TROUPE_NO_ATTN_SPLIT=1 decode attention without the context split (the first kernel)
#   MODES="b256-prof b256-prof-fp8 b256-prof-fp8kv b256-prof-rtn" CHECK=0: W1's per-op table in bf16, FP8 weights +
#   FP8 KV, FP8 KV alone and 4-bit rtn (issues 12 and 13: where the quantized steps spend their time)
set -uo pipefail
b=${BUNDLE:-bundle}
out=${OUT:-profile-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$b/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} NCCL_NVLS_ENABLE=0
common=(bench throughput --backend cuda --load-format dummy --model "$b/data/qwen2.5-7b-shape" --max-model-len 1024
        --temperature 0)
one=(--num-prompts 1 --input-len 512 --output-len 128)
many=(--num-prompts 256 --input-len 512 --output-len 256)
run() {  # name, env..., -- args...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "== $name: ${envs[*]} $*"
  env "${envs[@]}" "$b/troupe" "${common[@]}" "$@" --output-json "$out/$name.json" > "$out/$name.log" 2>&1
  echo "rc=$?"
  grep -E "output tokens/s|us per step|shard execute|^\| (step|decode, 1 seqs|decode, 256 seqs|prefill)" "$out/$name.log"
  grep -o '"elapsed_s": [0-9.]*' "$out/$name.json"
  # With TROUPE_CUDA_PROFILE=1: the ops of the costliest step kinds by name (linear layers with shape and path).
  sed -n '/^ops of/,/^$/p' "$out/$name.log" | head -${OPS_LINES:-60}
}
if [ "${CHECK:-1}" = 1 ]; then
  "$b/troupe_gpu_check" --data "$b/data/reference" > "$out/check.txt" 2>&1; echo "gpu check rc=$?"
  grep -E "pass|FAIL|time " "$out/check.txt" | tail -25
fi
for mode in ${MODES:-b1-prof-before b1-prof b1-graphs b1-eager b256-prof-before b256-prof b256-graphs}; do
  case $mode in
    b1-prof-before) run "$mode" TROUPE_CUDA_PROFILE=1 TROUPE_NO_ATTN_SPLIT=1 -- "${one[@]}" ;;
    b1-prof) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${one[@]}" ;;
    b1-graphs) run "$mode" A=1 -- "${one[@]}" ;;
    b1-graphs-64) run "$mode" A=1 -- --num-prompts 1 --input-len 512 --output-len 64 ;;
    b1-eager) run "$mode" A=1 -- "${one[@]}" --enforce-eager ;;
    b256-prof-before) run "$mode" TROUPE_CUDA_PROFILE=1 TROUPE_NO_ATTN_SPLIT=1 -- "${many[@]}" ;;
    b256-prof) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${many[@]}" ;;
    b256-graphs) run "$mode" A=1 -- "${many[@]}" ;;
    b256-eager) run "$mode" A=1 -- "${many[@]}" --enforce-eager ;;
    b256-prof-fp8) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${many[@]}" --quantization fp8 --kv-cache-dtype fp8 ;;
    b256-prof-fp8kv) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${many[@]}" --kv-cache-dtype fp8 ;;
    b256-prof-rtn) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${many[@]}" --quantization rtn ;;
    b1-prof-fp8) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${one[@]}" --quantization fp8 --kv-cache-dtype fp8 ;;
    b1-prof-rtn) run "$mode" TROUPE_CUDA_PROFILE=1 -- "${one[@]}" --quantization rtn ;;
  esac
done
