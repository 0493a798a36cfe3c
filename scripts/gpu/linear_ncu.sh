#!/usr/bin/env bash
# Nsight Compute's view of the decode linears at batch 1 (one request, Qwen2.5-7B shapes, random weights): four
# consecutive launches (one layer's qkv, o_proj, gate_up and down_proj) of the small-batch kernel, their DRAM
# throughput against the ceiling, warp stalls and occupancy. For tuning kernels/cuda/linear_fp8.cu (fp8_mma_kernel)
# and kernels/cuda/linear_int4.cu (int4_ring_kernel, int4_mma_async_kernel), which stream their weights at about half the copy ceiling
# (H100, 2026-12-05: gate_up at one row 0.075 ms FP8, 1.8 TB/s of 3.35). Runs on the GPU machine after
# scripts/gpu/bundle.sh; needs ncu (Firecracker machines have it; gVisor ones cannot read the counters).
#   Q=rtn bash scripts/gpu/linear_ncu.sh      (default Q=fp8; the report goes to $OUT/ncu_linear_$Q.txt)
# It takes about 2 minutes a quantization (the model's start, then each profiled launch replayed per section): the
# ninth session's 50 s limit cut it off before it profiled anything.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export LD_LIBRARY_PATH="$PWD/bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
out=${OUT:-/tmp/troupe-ncu}; mkdir -p "$out"
q=${Q:-fp8}
# The kernels a decode step's linears launch by default (fp8: the activation quantizer, the GEMV on gate_up and
# down_proj, the mma kernels on q/k/v and o_proj; 8 launches a layer), unless KERNEL names a regex.
# KERNEL and PER_LAYER (launches of it a layer) profile another choice, e.g. the W8A16 GEMV on every layer, the fastest
# decode kernel measured (2.7 TB/s at gate_up, H100), beside the 4-bit kernels:
#   TROUPE_FP8_W16_ROWS=4 KERNEL=fp8_w16_gemv PER_LAYER=4 Q=fp8 bash scripts/gpu/linear_ncu.sh
# NUM_PROMPTS (default 1) sets the decode steps' rows, e.g. the 4-bit warpgroup-MMA GEMM at 256 rows (W1's decode):
#   TROUPE_INT4_WGMMA=1 NUM_PROMPTS=256 KERNEL=int4_wgmma PER_LAYER=4 Q=rtn bash scripts/gpu/linear_ncu.sh
case "$q" in
  fp8) kernel=${KERNEL:-fp8_(quantize|gemv|mma)}; per_layer=${PER_LAYER:-8} ;;
  rtn) kernel=${KERNEL:-int4_(mma|ring)}; per_layer=${PER_LAYER:-4} ;;
  *) echo "linear_ncu: Q is fp8 or rtn, not $q"; exit 2 ;;
esac
# A process cut off before (a time limit) may still hold the GPU's memory: wait up to 60 s for it to go.
for _ in $(seq 60); do [ -z "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null)" ] && break; sleep 1; done
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "linear_ncu: no ncu on this machine"; exit 1; }
# 28 layers x per_layer launches a decode step; the warm-up's come first. Skipping 20 steps' worth lands in decode.
# The profiled process holds a quarter of the GPU's memory, not 90%: kernel replay saves and restores what the process
# allocated, and with 90% held (thirteenth session) the fourth launch ran out of memory and the run out of time.
# NCU_LIMIT (default 170 s) bounds the profiled run so that the reports below are still written.
timeout "${NCU_LIMIT:-170}" "$ncu" --clock-control none -k "regex:$kernel" --launch-skip "${SKIP:-$((20 * 28 * per_layer))}" --launch-count "$per_layer" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
  --section LaunchStats --section Occupancy -f -o "$out/ncu_linear_$q" \
  bundle/troupe bench throughput --backend cuda --load-format dummy --model bundle/data/qwen2.5-7b-shape \
  --num-prompts "${NUM_PROMPTS:-1}" --input-len 128 --output-len 64 --max-model-len 1024 --temperature 0 --enforce-eager \
  --quantization "$q" --gpu-memory-utilization 0.25 > "$out/ncu_linear_${q}_run.txt" 2>&1
rc=$?
"$ncu" --import "$out/ncu_linear_$q.ncu-rep" > "$out/ncu_linear_$q.txt" 2>&1
"$ncu" --import "$out/ncu_linear_$q.ncu-rep" --page raw > "$out/ncu_linear_${q}_raw.txt" 2>&1
# Per launch: the kernel, its grid, time, DRAM throughput, occupancy, then the stall reasons that weigh most
# (warps stalled per issued instruction, by reason).
grep -E "_kernel|Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|No Eligible|Achieved Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|Grid Size|Block Size" \
  "$out/ncu_linear_$q.txt" | head -160
echo "== stall reasons (warps per issued instruction), per launch"
awk '/_kernel/ { print "--", $1 } /issue_stalled_.*per_issue_active.ratio/ && $NF+0 >= 0.5 { print $1, $NF }' \
  "$out/ncu_linear_${q}_raw.txt" | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -120
tail -5 "$out/ncu_linear_${q}_run.txt"
exit $rc
