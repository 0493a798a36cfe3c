#!/usr/bin/env bash
# Nsight Compute's view of the decode linears at batch 1 (one request, Qwen2.5-7B shapes, random weights): four
# consecutive launches (one layer's qkv, o_proj, gate_up and down_proj) of the small-batch kernel, their DRAM
# throughput against the ceiling, warp stalls and occupancy. For tuning kernels/cuda/linear_fp8.cu (fp8_mma_kernel)
# and kernels/cuda/linear_int4.cu (int4_mma_kernel), which stream their weights at about half the copy ceiling
# (H100, 2026-12-05: gate_up at one row 0.075 ms FP8, 1.8 TB/s of 3.35). Runs on the GPU machine after
# scripts/gpu/bundle.sh; needs ncu (Firecracker machines have it; gVisor ones cannot read the counters).
#   Q=rtn bash scripts/gpu/linear_ncu.sh      (default Q=fp8; the report goes to $OUT/ncu_linear_$Q.txt)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export LD_LIBRARY_PATH="$PWD/bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp/troupe-ncu}; mkdir -p "$out"
q=${Q:-fp8}
case "$q" in
  fp8) kernel=fp8_mma_kernel ;;
  rtn) kernel=int4_mma_kernel ;;
  *) echo "linear_ncu: Q is fp8 or rtn, not $q"; exit 2 ;;
esac
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "linear_ncu: no ncu on this machine"; exit 1; }
# 112 launches a decode step (28 layers x 4 linears); the warm-up's come first. Launch 2,240 is in decode step ~20.
"$ncu" --clock-control none -k "regex:$kernel" --launch-skip "${SKIP:-2240}" --launch-count 4 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
  --section LaunchStats --section Occupancy \
  bundle/troupe bench throughput --backend cuda --load-format dummy --model bundle/data/qwen2.5-7b-shape \
  --num-prompts 1 --input-len 128 --output-len 64 --max-model-len 1024 --temperature 0 --enforce-eager \
  --quantization "$q" > "$out/ncu_linear_$q.txt" 2>&1
rc=$?
grep -E "${kernel}|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|No Eligible|Achieved Occupancy|Registers Per|Block Limit|Stall|Warp Cycles Per Issued" \
  "$out/ncu_linear_$q.txt" | head -80
exit $rc
