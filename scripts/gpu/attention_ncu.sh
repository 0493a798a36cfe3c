#!/usr/bin/env bash
# Nsight Compute's view of one decode attention launch in W1 (256 sequences, ~700 positions each, Qwen2.5-7B
# shapes, random weights): throughput against the ceilings, warp stalls, issue slots. For tuning
# kernels/cuda/paged_attention_mma.cu. Runs on the GPU machine after scripts/gpu/bundle.sh; needs ncu
# (Firecracker machines have it; gVisor ones cannot read the counters).
#   KV=fp8 bash scripts/gpu/attention_ncu.sh      (default KV=auto; the report goes to $OUT/ncu_attention_$KV.txt)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export LD_LIBRARY_PATH="$PWD/bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp/troupe-ncu}; mkdir -p "$out"
kv=${KV:-auto}
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "attention_ncu: no ncu on this machine"; exit 1; }
# Prefill steps come first (16,384 tokens each); launch 5,000 of the kernel is a decode step near position 690.
"$ncu" --clock-control none -k regex:paged_attention_mma --launch-skip "${SKIP:-5000}" --launch-count 1 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
  --section LaunchStats --section Occupancy \
  bundle/troupe bench throughput --backend cuda --load-format dummy --model bundle/data/qwen2.5-7b-shape \
  --num-prompts 256 --input-len 512 --output-len 256 --max-model-len 1024 --temperature 0 --enforce-eager \
  --kv-cache-dtype "$kv" > "$out/ncu_attention_$kv.txt" 2>&1
rc=$?
grep -E "paged_attention_mma_kernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|No Eligible|Achieved Occupancy|Theoretical Occupancy|Block Limit|Registers Per|Dynamic Shared|Grid Size|L2 Hit|L1/TEX Hit|Mem Busy|Max Bandwidth|Stall|Warp Cycles Per Issued|Eligible Warps|Active Warps" \
  "$out/ncu_attention_$kv.txt" | head -60
exit $rc
