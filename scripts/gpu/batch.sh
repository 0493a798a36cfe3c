#!/usr/bin/env bash
# Several measurements in one device call, most wanted first, within LIMIT seconds (default 570): each step gets at
# most its own limit and what is left; a step that would have under 20 s is skipped, saying so. Logs of every step in
# $OUT/logs.tgz; a short summary of each comes last. Runs on the GPU machine after scripts/gpu/bundle.sh.
#   STEPS="attn_timing figures" LIMIT=400 bash scripts/gpu/batch.sh
# Steps (default: issue_figures full_check — issues 12 and 13's figures with the single-pass candidate beside the
# defaults, then the GPU check as far as LIMIT reaches; kernels/cuda/NOTES.md's last session says what comes next):
#   full_check         troupe_gpu_check --no-timing: the whole GPU check (~255 s on an H100)
#   w1_fused           W1 in FP8 + FP8 KV: the defaults and TROUPE_FP8_FUSED=2, twice in turns; each with
#                      TROUPE_FP8_WIDE_ROWS=1024; FUSED=2 with that and TROUPE_FP8_SINGLE_PASS=1; bf16; one FP8 request
#   w1_direct3         W1 in FP8 + FP8 KV: the defaults and TROUPE_ATTN_DIRECT_STAGES=3 (Direct decode attention with three
#                      stages, swizzled), in turns (PAIRS=N pairs, default 1); one FP8 request with it
#   w1_rtn_forms       W1 in rtn: the FP8 form from 256 rows (two kernels), from 129 on the fused kernel, from 1,025
#   issue_figures      issues 12 and 13's figures in one call (for an H200): W1 in FP8 + FP8 KV with the defaults and with
#                      TROUPE_FP8_SINGLE_PASS=1, W1 in bf16, one request in FP8 + FP8 KV, rtn and bf16 (~260 s)
#   w1_single          W1 in FP8 + FP8 KV: the defaults and TROUPE_FP8_SINGLE_PASS=1 (silu_and_mul_fp8 in one read of each
#                      row: 11.9% of an FP8 prompt step on two passes, H100), twice in turns; bf16 once
#   b1_all             one request in bf16, rtn and FP8 + FP8 KV (128 in, 384 out)
#   core               W1 in bf16, rtn in the FP8 form (129 fused, 256 two kernels), FP8 + FP8 KV (a short budget)
#   figures_long       scripts/gpu/figures.sh with LONG=1 (W1 and one request in bf16, rtn, FP8 + FP8 KV; KV blocks; 64 x
#                      8,000-token prompts in bf16 and FP8 KV) within what is left of LIMIT
#   w1_w4a8            W1 in rtn: decode steps on the fused FP8-form kernel (FP8_ROWS 129, W4A8=1); FP8_ROWS 1,025; bf16
#   w1_w4a8_quick      the same runs, the fused one first, then bf16 (for a short budget)
#   w1_int4_fp8        W1 in rtn: defaults; bf16; TROUPE_INT4_FP8_ROWS=1025 and 129 (the weight's FP8 form, W4A8); 129
#                      with TROUPE_INT4_W4A8=1 (decode steps on the fused kernel), and that with FP8 KV
#   quick              one W1 each: FP8 + FP8 KV defaults / TROUPE_ATTN_DIRECT_STAGES=3 / that with TROUPE_FP8_WGMMA=3 and
#                      TROUPE_FP8_WGMMA_TMA=1 (quick_fp8); rtn defaults /
#                      FP8 form from 1,025 (quick_rtn)
#   b1_trigger         one FP8 + FP8 KV request: the defaults and TROUPE_FP8_ATTN_TRIGGER=1 (o_proj's quantizer and GEMV
#                      launched while attention runs), twice in turns
#   fp8_trigger_rows   troupe_gpu_check --fp8-weights --no-ops --no-timing with TROUPE_FP8_ATTN_TRIGGER=1 (the FP8 models)
#   w1_tma             W1 in FP8 + FP8 KV: defaults; TROUPE_FP8_WGMMA=3 (down_proj only, 128/256-row tiles) and 1 with
#                      TROUPE_FP8_WGMMA_TMA=1 (the TMA form)
#   int4_rows          troupe_gpu_check --int4 --no-models --no-timing (linear_int4's rows, the op table's among them)
#   int4_timing        troupe_gpu_check --int4 --no-models (the rows, then linear_int4's timings: the FP8 form's three ways
#                      beside the wgmma GEMM at 64 / 256 / 4,096 rows)
#   w1_prof            profile.sh's per-op tables of W1 in FP8 + FP8 KV and in bf16 (TROUPE_CUDA_PROFILE=1, eager)
#   w1_prof_rtn        the same in 4-bit rtn (issue 12's W1: 0.84x bf16 against 1.1x)
#   w1_prof_fused      the FP8 table with TROUPE_FP8_FUSED=2 (where the quantizers' time goes when the norms quantize)
#   fp8_decode_timing  troupe_gpu_check --fp8-decode-timing (decode-256: cuBLASLt vs the wgmma GEMM and its TMA form, the GEMM alone on
#                      codes made before beside the "epilogue" path; one row: qgemv, 1024-thread quantizer blocks, gemv_split)
#   attn_timing        troupe_gpu_check --attention-timing (each attention form: bf16, FP8 tiles, F16, Direct with 2, 3 and 4
#                      stages and longer partitions at 64 x 4,096, lean prefill)
#   fp8_silu_rows      troupe_gpu_check --fp8-silu (linear_fp8_silu's op rows: bits against the two ops)
#   fp8kv_rows         troupe_gpu_check --fp8-kv --no-models --no-timing (the FP8 cache's op rows)
#   fp8kv_f16_rows     troupe_gpu_check --fp8-kv-f16 (the F16 attention form's rows, its Direct form's with 2, 3, 4 stages)
#   fp8kv_all_rows     troupe_gpu_check --fp8-kv --no-timing (the FP8 cache's op rows and its reference models)
#   figures            the defaults: W1 in FP8 + FP8 KV and in bf16, one FP8 + FP8 KV request twice
#   fp8_weights_rows   troupe_gpu_check --fp8-weights --no-timing
#   attn_ncu_fp8 / attn_ncu_bf16   attention_ncu.sh with KV=fp8 / auto: one decode attention launch of W1 under Nsight
#                      Compute (throughput against the ceilings, stalls, occupancy)
#   step_ncu_fp8       step_ncu.sh with Q=fp8: one FP8 decode step's kernels, each timed alone by Nsight Compute
#   b1_prof_fp8 / b1_prof_rtn   profile.sh's one-request per-op table (TROUPE_CUDA_PROFILE=1)
set -u
cd "$(dirname "$0")/../.." || exit 1
bash scripts/gpu/unpack.sh bundle
export LD_LIBRARY_PATH="$PWD/bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
O=${OUT:-/tmp/troupe-batch}; R=$(mktemp -d); mkdir -p "$O"
end=$((SECONDS + ${LIMIT:-570}))
step() {  # name, seconds at most, command...
  local name=$1 t=$2; shift 2
  local left=$((end - SECONDS - 15)); [ "$left" -lt "$t" ] && t=$left
  if [ "$t" -lt 20 ]; then echo "== $name: skipped (${t}s left)"; return; fi
  mkdir -p "$R/$name"
  local s=$SECONDS
  OUT="$R/$name" timeout "$t" "$@" >"$R/$name/log" 2>&1
  echo "== $name rc=$? $((SECONDS - s))s"
}
bench() {  # tag, prompts, input, output, then troupe bench's flags; a line of its figures
  local tag=$1 n=$2 i=$3 o=$4; shift 4
  # A run a step's time limit cut may still be giving its GPU memory back: the next would measure it coming back
  # (and troupe refuses to plan on that). Up to 20 s for the GPU to hold no process.
  for _ in $(seq 20); do [ -z "$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null)" ] && break; sleep 1; done
  timeout "${BENCH_T:-60}" bundle/troupe bench throughput --backend cuda --load-format dummy --model bundle/data/qwen2.5-7b-shape \
    --num-prompts "$n" --input-len "$i" --output-len "$o" --max-model-len 1024 --temperature 0 "$@" >"$OUT/$tag.txt" 2>&1
  echo "$tag: $(grep -E 'output tokens/s' "$OUT/$tag.txt" | head -1) | $(grep -E 'us per step' "$OUT/$tag.txt" | head -1) | $(grep -E 'decode steps' "$OUT/$tag.txt" | head -1) | $(grep -E 'steps with prompt' "$OUT/$tag.txt" | head -1)"
}
export FP8="--quantization fp8 --kv-cache-dtype fp8"  # one FP8 + FP8 KV run's flags
figures() {  # the defaults: W1 in FP8 + FP8 KV and in bf16, one FP8 + FP8 KV request twice
  bench w1_fp8 256 512 256 $FP8
  bench w1_bf16 256 512 256
  bench b1_fp8_1 1 128 384 $FP8
  bench b1_fp8_2 1 128 384 $FP8
}
w1_fused() {  # W1 in FP8 + FP8 KV: the defaults and TROUPE_FP8_FUSED=2 (the norms and the activation quantize in steps of 2+
  # rows) twice in turns; each with 1024-thread quantizer blocks up to 1024 rows (a 256-row decode step's per-row
  # quantizers otherwise run 256 blocks of 8 warps: 16 warps an SM); bf16; one FP8 request
  for i in 1 2; do
    bench w1_fp8_$i 256 512 256 $FP8
    TROUPE_FP8_FUSED=2 bench w1_fp8_fused2_$i 256 512 256 $FP8
  done
  TROUPE_FP8_WIDE_ROWS=1024 bench w1_fp8_wide1024 256 512 256 $FP8
  TROUPE_FP8_FUSED=2 TROUPE_FP8_WIDE_ROWS=1024 bench w1_fp8_fused2_wide1024 256 512 256 $FP8
  TROUPE_FP8_FUSED=2 TROUPE_FP8_WIDE_ROWS=1024 TROUPE_FP8_SINGLE_PASS=1 bench w1_fp8_fused2_wide1024_single 256 512 256 $FP8
  bench w1_bf16 256 512 256
  bench b1_fp8 1 128 384 $FP8
}
w1_tma() {  # W1 in FP8 + FP8 KV: the defaults; the wgmma GEMM's TMA form on down_proj alone (the deep few-tile product,
  # TROUPE_FP8_WGMMA=3) with 128- and 256-row tiles, and on the few-tile products (q/k/v, o_proj, down) with 256
  bench w1_fp8 256 512 256 $FP8
  TROUPE_FP8_WGMMA=3 TROUPE_FP8_WGMMA_TMA=1 bench w1_fp8_tma_deep128 256 512 256 $FP8
  TROUPE_FP8_WGMMA=3 TROUPE_FP8_WGMMA_TMA=1 TROUPE_FP8_WGMMA_ROWS=256 bench w1_fp8_tma_deep256 256 512 256 $FP8
  TROUPE_FP8_WGMMA=1 TROUPE_FP8_WGMMA_TMA=1 TROUPE_FP8_WGMMA_ROWS=256 bench w1_fp8_tma256 256 512 256 $FP8
}
w1_direct3() {  # W1 in FP8 + FP8 KV: the defaults and Direct decode attention with three stages, twice in turns; one request
  for i in $(seq "${PAIRS:-1}"); do
    bench w1_fp8_$i 256 512 256 $FP8
    TROUPE_ATTN_DIRECT_STAGES=3 bench w1_fp8_direct3_$i 256 512 256 $FP8
  done
  TROUPE_ATTN_DIRECT_STAGES=3 bench b1_fp8_direct3 1 128 384 $FP8
}
w1_int4_fp8() {  # W1 in 4-bit rtn: the defaults; bf16; the FP8 form (TROUPE_INT4_FP8_ROWS) for prompt steps only (1,025
  # rows and more) and for decode steps of many sequences too (129), then with those on the fused kernel, and with FP8 KV
  bench w1_rtn 256 512 256 --quantization rtn
  bench w1_bf16 256 512 256
  TROUPE_INT4_FP8_ROWS=1025 bench w1_rtn_fp8_1025 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=129 bench w1_rtn_fp8_129 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=129 TROUPE_INT4_W4A8=1 bench w1_rtn_fp8_129_fused 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=129 TROUPE_INT4_W4A8=1 bench w1_rtn_fp8_129_fused_fp8kv 256 512 256 --quantization rtn --kv-cache-dtype fp8
}
w1_w4a8() {  # W1 in rtn with decode steps on the fused FP8-form kernel (TROUPE_INT4_W4A8=1 from 129 rows), beside the FP8
  # form for prompt steps only (1,025) and bf16; rtn loads take ~45 s (the CPU quantizes), so each run gets 150 s
  export BENCH_T=150
  TROUPE_INT4_FP8_ROWS=129 TROUPE_INT4_W4A8=1 bench w1_rtn_fp8_129_fused 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=1025 bench w1_rtn_fp8_1025 256 512 256 --quantization rtn
  bench w1_bf16 256 512 256
}
w1_w4a8_quick() {  # the fused form's W1 and bf16's, then the FP8 form for prompt steps only (for a short budget)
  export BENCH_T=150
  TROUPE_INT4_FP8_ROWS=129 TROUPE_INT4_W4A8=1 bench w1_rtn_fp8_129_fused 256 512 256 --quantization rtn
  bench w1_bf16 256 512 256
  TROUPE_INT4_FP8_ROWS=1025 bench w1_rtn_fp8_1025 256 512 256 --quantization rtn
}
w1_rtn_forms() {  # rtn's FP8 form: decode steps of 256 rows on two kernels (256); on the fused kernel (129 + W4A8);
  # prompt steps only (1,025)
  export BENCH_T=150
  TROUPE_INT4_FP8_ROWS=256 bench w1_rtn_fp8_256 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=129 TROUPE_INT4_W4A8=1 bench w1_rtn_fp8_129_fused 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=1025 bench w1_rtn_fp8_1025 256 512 256 --quantization rtn
}
core() {  # for a short budget: W1 in bf16, rtn in the FP8 form (fused from 129 rows; two kernels from 256), FP8 + FP8 KV
  export BENCH_T=150
  bench w1_bf16 256 512 256
  TROUPE_INT4_FP8_ROWS=129 TROUPE_INT4_W4A8=1 bench w1_rtn_fp8_129_fused 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=256 bench w1_rtn_fp8_256 256 512 256 --quantization rtn
  bench w1_fp8 256 512 256 $FP8
}
quick_fp8() {  # for a short budget: FP8 + FP8 KV W1 with the defaults and with Direct's three stages
  bench w1_fp8 256 512 256 $FP8
  TROUPE_ATTN_DIRECT_STAGES=3 bench w1_fp8_direct3 256 512 256 $FP8
  # and with down_proj on the TMA wgmma GEMM (0.058 against cuBLASLt's 0.062 ms at 256 rows: ~0.1 ms a decode step)
  TROUPE_ATTN_DIRECT_STAGES=3 TROUPE_FP8_WGMMA=3 TROUPE_FP8_WGMMA_TMA=1 bench w1_fp8_direct3_tma_deep 256 512 256 $FP8
}
quick_rtn() {  # for a short budget: rtn W1 with the defaults and in the FP8 form from 1,025 rows
  bench w1_rtn 256 512 256 --quantization rtn
  TROUPE_INT4_FP8_ROWS=1025 bench w1_rtn_fp8_1025 256 512 256 --quantization rtn
}
quick() { quick_fp8; quick_rtn; }
b1_all() {  # one request's time a token (128 in, 384 out) in bf16, rtn and FP8 + FP8 KV (issue 12: <= 1.6 ms; 13: <= 2.4)
  export BENCH_T=120
  bench b1_bf16 1 128 384
  bench b1_rtn 1 128 384 --quantization rtn
  bench b1_fp8 1 128 384 $FP8
}
w1_single() {  # W1 in FP8 + FP8 KV, the defaults and the single-pass silu_and_mul_fp8 in turns, then bf16
  for i in 1 2; do
    bench w1_fp8_$i 256 512 256 $FP8
    TROUPE_FP8_SINGLE_PASS=1 bench w1_fp8_single_$i 256 512 256 $FP8
  done
  bench w1_bf16 256 512 256
}
issue_figures() {  # W1 FP8 + FP8 KV (defaults, single pass), W1 bf16, one request FP8 / rtn / bf16 (128 in, 384 out)
  bench w1_fp8 256 512 256 $FP8
  TROUPE_FP8_SINGLE_PASS=1 bench w1_fp8_single 256 512 256 $FP8
  bench w1_bf16 256 512 256
  export BENCH_T=120
  bench b1_fp8 1 128 384 $FP8
  bench b1_rtn 1 128 384 --quantization rtn
  bench b1_bf16 1 128 384
}
w1_single_quick() {  # the same for a short budget: single pass, the defaults, single pass
  TROUPE_FP8_SINGLE_PASS=1 bench w1_fp8_single_1 256 512 256 $FP8
  bench w1_fp8_1 256 512 256 $FP8
  TROUPE_FP8_SINGLE_PASS=1 bench w1_fp8_single_2 256 512 256 $FP8
}
b1_trigger() {  # one FP8 + FP8 KV request: the defaults and o_proj launched while attention runs, twice in turns
  for i in 1 2; do
    bench b1_fp8_$i 1 128 384 $FP8
    TROUPE_FP8_ATTN_TRIGGER=1 bench b1_fp8_trigger_$i 1 128 384 $FP8
  done
}
export -f bench figures issue_figures w1_single w1_single_quick b1_all core w1_rtn_forms w1_fused w1_tma w1_direct3 w1_int4_fp8 w1_w4a8 w1_w4a8_quick quick quick_fp8 quick_rtn b1_trigger
for s in ${STEPS:-issue_figures full_check}; do
  case $s in
    full_check) CHECK_ARGS=--no-timing step $s 330 bash scripts/gpu/check.sh ;;
    attn_timing) CHECK_ARGS=--attention-timing step $s 150 bash scripts/gpu/check.sh ;;
    fp8_silu_rows) CHECK_ARGS=--fp8-silu step $s 60 bash scripts/gpu/check.sh ;;
    fp8kv_rows) CHECK_ARGS="--fp8-kv --no-models --no-timing" step $s 150 bash scripts/gpu/check.sh ;;
    fp8kv_f16_rows) CHECK_ARGS=--fp8-kv-f16 step $s 150 bash scripts/gpu/check.sh ;;
    fp8_weights_rows) CHECK_ARGS="--fp8-weights --no-timing" step $s 200 bash scripts/gpu/check.sh ;;
    fp8_decode_timing) CHECK_ARGS=--fp8-decode-timing step $s 100 bash scripts/gpu/check.sh ;;
    b1_prof_fp8) CHECK=0 MODES=b1-prof-fp8 OPS_LINES=80 step $s 90 bash bundle/profile.sh ;;
    figures) step $s 200 bash -c figures ;;
    w1_fused) step $s 270 bash -c w1_fused ;;
    w1_tma) step $s 130 bash -c w1_tma ;;
    w1_direct3) step $s 260 bash -c w1_direct3 ;;
    b1_trigger) step $s 200 bash -c b1_trigger ;;
    w1_int4_fp8) step $s 330 bash -c w1_int4_fp8 ;;
    w1_w4a8) step $s 300 bash -c w1_w4a8 ;;
    w1_w4a8_quick) step $s 300 bash -c w1_w4a8_quick ;;
    w1_rtn_forms) step $s 200 bash -c w1_rtn_forms ;;
    core) step $s 260 bash -c core ;;
    b1_all) step $s 200 bash -c b1_all ;;
    issue_figures) step $s 330 bash -c issue_figures ;;
    w1_single) step $s 240 bash -c w1_single ;;
    w1_single_quick) step $s 150 bash -c w1_single_quick ;;
    figures_long) LONG=1 LIMIT=$((end - SECONDS - 25)) step $s 420 bash scripts/gpu/figures.sh ;;
    quick) step $s 240 bash -c quick ;;
    quick_fp8) step $s 170 bash -c $s ;;
    quick_rtn) step $s 120 bash -c $s ;;
    fp8_trigger_rows) TROUPE_FP8_ATTN_TRIGGER=1 CHECK_ARGS="--fp8-weights --no-ops --no-timing" step $s 150 bash scripts/gpu/check.sh ;;
    int4_rows) CHECK_ARGS="--int4 --no-models --no-timing" step $s 90 bash scripts/gpu/check.sh ;;
    int4_timing) CHECK_ARGS="--int4 --no-models" step $s 180 bash scripts/gpu/check.sh ;;
    w1_prof) CHECK=0 MODES="b256-prof-fp8 b256-prof" OPS_LINES=70 step $s 150 bash bundle/profile.sh ;;
    w1_prof_rtn) CHECK=0 MODES="b256-prof-rtn" OPS_LINES=70 step $s 90 bash bundle/profile.sh ;;
    w1_prof_single) TROUPE_FP8_SINGLE_PASS=1 CHECK=0 MODES="b256-prof-fp8" OPS_LINES=40 step $s 90 bash bundle/profile.sh ;;
    w1_prof_fused) TROUPE_FP8_FUSED=2 CHECK=0 MODES="b256-prof-fp8" OPS_LINES=70 step $s 90 bash bundle/profile.sh ;;
    fp8kv_all_rows) CHECK_ARGS="--fp8-kv --no-timing" step $s 200 bash scripts/gpu/check.sh ;;
    step_ncu_fp8) Q=fp8 step $s 170 bash scripts/gpu/step_ncu.sh ;;
    attn_ncu_fp8) KV=fp8 step $s 150 bash scripts/gpu/attention_ncu.sh ;;
    attn_ncu_bf16) KV=auto step $s 150 bash scripts/gpu/attention_ncu.sh ;;
    b1_prof_rtn) CHECK=0 MODES=b1-prof-rtn OPS_LINES=80 step $s 90 bash bundle/profile.sh ;;
  esac
done
tar czf "$O/logs.tgz" -C "$R" . 2>/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader
for d in "$R"/*/; do
  n=$(basename "$d"); echo "######## $n"
  case $n in
    int4_timing) grep -E "checks pass" "$d/gpu_check.txt"; grep FAIL "$d/gpu_check_progress.txt" | head -5; grep -E "^time linear_int4 .*(fp8 form| wgmma 256 overlap)" "$d/gpu_check_progress.txt" | sed -E 's/ {2,}/ /g' | cut -c1-200 | tail -30 ;;
    attn_timing|fp8_decode_timing) grep -E "^time" "$d/gpu_check_progress.txt" | sed -E 's/ {2,}/ /g; s/ - - / /; s/T,K,N=//' | cut -c1-330 | tail -30 ;;
    fp8kv_rows|fp8kv_all_rows|fp8kv_f16_rows|fp8_weights_rows|fp8_trigger_rows|fp8_silu_rows|int4_rows|full_check) grep -E "checks pass" "$d/gpu_check.txt"; grep -c pass "$d/gpu_check_progress.txt"; grep FAIL "$d/gpu_check_progress.txt" | sed -E 's/ {2,}/ /g' | head -12; tail -2 "$d/gpu_check_progress.txt" | cut -c1-200 ;;
    figures|issue_figures|w1_single|w1_single_quick|b1_all|w1_fused|w1_tma|w1_direct3|w1_int4_fp8|w1_w4a8|w1_w4a8_quick|w1_rtn_forms|core|quick|quick_fp8|quick_rtn|b1_trigger) cat "$d/log" ;;
    figures_long) sed -n '/== figures/,$p' "$d/log" ;;
    w1_prof|w1_prof_rtn|w1_prof_fused|w1_prof_single) grep -vE "^ *$" "$d/log" | cut -c1-150 | head -160 ;;
    step_ncu_fp8) grep -vE "^ *$" "$d/log" | tail -45 | cut -c1-110 ;;
    attn_ncu_*) sed -E "s/ {2,}/ /g" "$d/log" | cut -c1-150 | head -60 ;;
    b1_prof_*) head -60 "$d/log" ;;
  esac
done
