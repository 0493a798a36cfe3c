#!/usr/bin/env bash
# Two builds of troupe timed in one call: one request's time per step (128 in, 384 out) at Qwen2.5-7B shapes with
# random weights, the base build (bundle/troupe_base: bundle.sh with BASE=path) and the new one (bundle/troupe) taken
# in turns, ROUNDS rounds (default 2), so that both meet the card in the same state. One-request figures move by up
# to 3% between calls and much less within one (kernels/cuda/NOTES.md, fourteenth session): compare within a call.
# ARGS are troupe bench's (default --quantization rtn); NUM_PROMPTS and OUTPUT_LEN change the workload. Logs in $OUT.
# Without bundle/troupe_base both sides run bundle/troupe; BASE_ENV and NEW_ENV (assignments, e.g. "TROUPE_INT4_ASYNC=0")
# set the environment of each side, so that one build's switch is timed against its default in turns.
#   ARGS="--quantization rtn" bash scripts/gpu/ab.sh        (on the GPU machine)
#   NEW_ENV="TROUPE_INT4_ASYNC=0" bash scripts/gpu/ab.sh
set -u
cd "$(dirname "$0")/../.." || exit 1
bash scripts/gpu/unpack.sh bundle
export LD_LIBRARY_PATH="bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/troupe-ab}; mkdir -p "$OUT"
base=troupe_base
if [ ! -x bundle/troupe_base ]; then
  [ -n "${BASE_ENV:-}${NEW_ENV:-}" ] || { echo "ab: bundle/troupe_base is missing (bundle.sh with BASE=path), and no BASE_ENV / NEW_ENV" >&2; exit 1; }
  base=troupe
fi
nvidia-smi --query-gpu=name --format=csv,noheader
table=()
for round in $(seq 1 "${ROUNDS:-2}"); do
  for side in base new; do
    if [ "$side" = base ]; then build=$base environment=${BASE_ENV:-}; else build=troupe environment=${NEW_ENV:-}; fi
    log="$OUT/${side}_$round.txt"
    # shellcheck disable=SC2086  # ARGS is a list of flags, the environments lists of assignments
    timeout 120 env $environment "bundle/$build" bench throughput --backend cuda --load-format dummy \
      --model bundle/data/qwen2.5-7b-shape --num-prompts "${NUM_PROMPTS:-1}" --input-len 128 \
      --output-len "${OUTPUT_LEN:-384}" --max-model-len 1024 --temperature 0 ${ARGS:---quantization rtn} >"$log" 2>&1
    table+=("round $round $side ($build${environment:+ $environment}): $(grep -E 'us per step' "$log" | head -1)")
  done
done
printf '%s\n' "${table[@]}"
