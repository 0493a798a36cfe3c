#!/usr/bin/env bash
# Where one decode step's GPU time goes, kernel by kernel (one request, Qwen2.5-7B shapes, random weights): Nsight
# Compute times every launch of a stretch of eager decode steps (the launches a step's graph replays, each timed alone,
# caches left warm: no overlap between kernels, so the sum runs a little over the step's time in graphs), then the
# table adds one step's launches up by kernel (the linears and cuBLAS kernels by grid, which tells the layers apart).
# Runs on the GPU machine after scripts/gpu/bundle.sh; needs ncu (see linear_ncu.sh).
#   Q="rtn bf16" bash scripts/gpu/step_ncu.sh    (default Q=rtn; $OUT/step_ncu_$Q.csv holds every launch)
#   TABLE_ONLY=1 STEP=3 OUT=dir bash scripts/gpu/step_ncu.sh   (anywhere: another step of a CSV already made)
# SKIP (default 6,000 launches) lands in the engine's warm-up, which runs one eager decode step for each batch size it
# captures (1, 2, 4, ...; a few tokens of context); STEP picks which complete step of the window the table adds up
# (default 1: with rtn, the one-sequence step). Fourteenth session (H100, rtn, one sequence): 257 launches, 3.46 ms
# timed alone against 3.2 ms a step in graphs; the 4-bit linears 70%, the bf16 LM head 10%, norms 7%, attention 7%.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export LD_LIBRARY_PATH="$PWD/bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp/troupe-ncu}; mkdir -p "$out"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || [ "${TABLE_ONLY:-0}" = 1 ] || { echo "step_ncu: no ncu on this machine"; exit 1; }
status=0
for q in ${Q:-rtn}; do
  flags=(); [ "$q" = bf16 ] || flags=(--quantization "$q")
  if [ "${TABLE_ONLY:-0}" != 1 ]; then
  # A process cut off before may still hold the GPU's memory: wait up to 60 s for it to go.
  for _ in $(seq 60); do [ -z "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null)" ] && break; sleep 1; done
  timeout "${NCU_LIMIT:-150}" "$ncu" --clock-control none --cache-control none --print-kernel-base function --csv \
    --metrics gpu__time_duration.sum --launch-skip "${SKIP:-6000}" --launch-count "${COUNT:-1500}" \
    bundle/troupe bench throughput --backend cuda --load-format dummy --model bundle/data/qwen2.5-7b-shape \
    --num-prompts 1 --input-len 128 --output-len 96 --max-model-len 1024 --temperature 0 --enforce-eager \
    --gpu-memory-utilization 0.25 "${flags[@]}" > "$out/step_ncu_$q.csv" 2> "$out/step_ncu_${q}_err.txt" || status=1
  fi
  echo "== $q: one step's launches by kernel (µs, each timed alone)"
  # ncu's CSV: "ID","Process ID",...,"Kernel Name" (5),...,"Grid Size" (9),...,"Metric Value" (15, ns with commas).
  awk -F'","' -v pick="${STEP:-1}" '
    /^"[0-9]/ { name[n] = $5; grid[n] = $9; v = $15; gsub(/[",]/, "", v); ns[n] = v; n++ }
    END {
      steps = 0; first = 0
      for (i = 0; i < n; i++) if (name[i] == "argmax_kernel") { begin[steps] = first; end[steps] = i; steps++; first = i + 1 }
      for (s = 0; s < steps; s++) { sum = 0; for (i = begin[s]; i <= end[s]; i++) sum += ns[i]
        printf "step %d: %d launches, %.1f us\n", s, end[s] - begin[s] + 1, sum / 1000 }
      if (pick >= steps) { print "no complete step " pick; exit 1 }
      total = 0
      for (i = begin[pick]; i <= end[pick]; i++) {
        key = name[i] ~ /^(int4|fp8|nvjet|splitK|gemv|gemm)/ ? name[i] " " grid[i] : name[i]
        if (!(key in count)) order[m++] = key
        count[key]++; time[key] += ns[i]; total += ns[i]
      }
      for (j = 0; j < m; j++) printf "%-64s %4d %9.1f us %5.1f%%\n", substr(order[j], 1, 64), count[order[j]], time[order[j]] / 1000, 100 * time[order[j]] / total
      printf "%-64s %4d %9.1f us\n", "step " pick, end[pick] - begin[pick] + 1, total / 1000
    }' "$out/step_ncu_$q.csv" || status=1
done
exit $status
