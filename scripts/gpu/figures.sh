#!/usr/bin/env bash
# The benchmark figures issues 12, 13 and 15 ask for, at Qwen2.5-7B shapes with random weights, in one run
# within LIMIT seconds (default 540), most wanted first; what would not fit is skipped, saying so:
#   1. W1 of ../shared/GPU.md (256 prompts x 512 in x 256 out, greedy, EOS ignored) in bf16, 4-bit (rtn) and
#      FP8 weights + FP8 KV (issue 12 item 2: rtn >= 1.1x bf16; issue 13 item 2: fp8+fp8 KV >= 1.5x bf16);
#   2. one request's time per output token (128 in, 384 out) in bf16, rtn and fp8+fp8 KV (issue 12: <= 1.6 ms;
#      issue 13: <= 2.4 ms);
#   3. KV blocks with an auto and an FP8 cache (issue 13: >= 1.95x);
#   4. with STRUCTURED=1 (a bundle made with STRUCTURED=1): W1 at 256 sequences with the Qwen3 tokenizer,
#      unconstrained and half constrained by data/structured_schema.json (issue 15 item 4: the bitmask time);
#   5. with LONG=1: 64 prompts of 8,000 tokens, 256 out, bf16 and FP8 KV (issue 13 item 3);
#   6. with VARIANTS=1: what is not yet measured, first: one FP8 request with W8A16 products for steps of up to 4
#      rows (TROUPE_FP8_W16_ROWS=4: no activation quantizer), and with 1024-thread quantizer blocks
#      (TROUPE_FP8_WIDE_ROWS=16); 32 rtn requests at once with (the default) and without the shared-memory 4-bit GEMM
#      for 17 to 64 rows (TROUPE_INT4_GEMM=0); W1 in bf16 and in FP8 + FP8 KV with the prefill attention's lean form
#      (TROUPE_ATTN_PREFILL_LEAN=1: three blocks an SM) and FP8 W1 with the GEMM tuning over 32 of cuBLASLt's candidates
#      (TROUPE_GEMM_CANDIDATES=32); one FP8 request with wide blocks and fused inputs, and W1 with FP8 inputs
#      quantized by the kernel before the layer (TROUPE_FP8_FUSED=1); VARIANTS=2 also one request on each measured alternative
#      of the defaults (the element-by-element quantizer, fused inputs, the cp.async
#      choices, no PDL), to measure them again on another card. VARIANTS=int4: the 4-bit decode kernels (below);
#      VARIANTS=wgmma: W1 with the 4-bit warpgroup-MMA GEMM (below); VARIANTS=fp8wgmma: W1 with the FP8 one (below).
#      (W1 with the FP8 cache on f16 mma: scripts/gpu/batch.sh's w1_set.)
# A table comes last; logs in $OUT/figures.tgz.
#   LIMIT=540 bash scripts/gpu/figures.sh        (on the GPU machine, after scripts/gpu/bundle.sh here)
#   PARTS="b1 kv" picks parts 1-3 (w1, b1, kv; default all three); STRUCTURED=1 and LONG=1 add 4 and 5.
set -u
cd "$(dirname "$0")/../.." || exit 1
bash scripts/gpu/unpack.sh bundle
export LD_LIBRARY_PATH="bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/troupe-figures}; mkdir -p "$OUT/figures"
m=bundle/data/qwen2.5-7b-shape
end=$((SECONDS + ${LIMIT:-540}))
left() { echo $((end - SECONDS)); }
table=()

# run TAG NEED_SECONDS COMMAND...: runs the command with the time left (less 5 s) if NEED_SECONDS are left.
run() {
  local tag=$1 need=$2; shift 2
  if [ "$(left)" -lt "$need" ]; then table+=("$tag: skipped (needs ${need} s, $(left) s left)"); return 1; fi
  timeout $(($(left) - 5)) "$@" >"$OUT/figures/$tag.txt" 2>&1
}
w1() {  # tag, then extra flags
  local tag=$1; shift
  run "w1_$tag" 60 bundle/troupe bench throughput --backend cuda --load-format dummy --model $m --num-prompts 256 \
    --input-len 512 --output-len 256 --max-model-len 1024 --temperature 0 "$@" || return
  table+=("W1 $tag: $(grep -E 'output tokens/s' "$OUT/figures/w1_$tag.txt" | head -1)")
}
b1() {
  local tag=$1; shift
  run "b1_$tag" 40 bundle/troupe bench throughput --backend cuda --load-format dummy --model $m --num-prompts 1 \
    --input-len 128 --output-len 384 --max-model-len 1024 --temperature 0 "$@" || return
  table+=("1 request $tag: $(grep -E 'output tokens/s' "$OUT/figures/b1_$tag.txt" | head -1) | $(grep -E 'us per step' "$OUT/figures/b1_$tag.txt" | head -1)")
}

b32() {  # 32 requests at once: decode steps of 32 rows (the 4-bit GEMM's range, 17-64 rows)
  local tag=$1; shift
  run "b32_$tag" 40 bundle/troupe bench throughput --backend cuda --load-format dummy --model $m --num-prompts 32 \
    --input-len 128 --output-len 256 --max-model-len 1024 --temperature 0 "$@" || return
  table+=("32 requests $tag: $(grep -E 'output tokens/s' "$OUT/figures/b32_$tag.txt" | head -1) | $(grep -E 'us per step' "$OUT/figures/b32_$tag.txt" | head -1)")
}

parts=" ${PARTS:-w1 b1 kv} "
want() { [[ "$parts" == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if want w1; then
  w1 bf16
  w1 rtn --quantization rtn
  w1 fp8_fp8kv --quantization fp8 --kv-cache-dtype fp8
fi
if want b1; then
  b1 bf16
  b1 rtn --quantization rtn
  b1 fp8_fp8kv --quantization fp8 --kv-cache-dtype fp8
fi
# VARIANTS=1: the alternatives not yet measured, first (they are what the call is for); VARIANTS=2 also the
# defaults' alternatives, to measure the defaults again on another card. One request each, W1 where it may matter.
# VARIANTS=small runs only the one-request and 32-request ones, VARIANTS=w1 only the W1 ones (so that two calls can
# split them, each beside its own baseline: PARTS=b1 with the first, PARTS=w1 with the second).
variants=${VARIANTS:-0}
if [ "$variants" = 1 ] || [ "$variants" = 2 ] || [ "$variants" = small ]; then
  TROUPE_FP8_W16_ROWS=4 b1 fp8_fp8kv_w16 --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_WIDE_ROWS=16 b1 fp8_fp8kv_wide --quantization fp8 --kv-cache-dtype fp8
  b32 rtn --quantization rtn
  TROUPE_INT4_GEMM=0 b32 rtn_no_gemm --quantization rtn
  TROUPE_FP8_WIDE_ROWS=16 TROUPE_FP8_FUSED=1 b1 fp8_fp8kv_wide_fused --quantization fp8 --kv-cache-dtype fp8
fi
if [ "$variants" = 1 ] || [ "$variants" = 2 ] || [ "$variants" = w1 ]; then
  TROUPE_GEMM_CANDIDATES=32 w1 fp8_fp8kv_32_candidates --quantization fp8 --kv-cache-dtype fp8
  TROUPE_ATTN_PREFILL_LEAN=1 w1 bf16_lean_prefill
  TROUPE_ATTN_PREFILL_LEAN=1 w1 fp8_fp8kv_lean_prefill --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_FUSED=1 w1 fp8_fp8kv_fused --quantization fp8 --kv-cache-dtype fp8
fi
# VARIANTS=int4 (with PARTS=none): the 4-bit decode kernels, one rtn request with the defaults twice (q/k/v on the
# lean ring kernel at one row since the eighteenth session: 2.77 → 2.69 ms a step against the cp.async kernel, H100;
# TROUPE_INT4_ASYNC=1 would also take gate/up off the wide kernel, so it is not the old default), ring 5 on
# o_proj / down_proj (TROUPE_INT4_RING=5: more warps an SM, tied when the integer pipe bound the kernel), the kernels
# without their lean form (TROUPE_INT4_LEAN=0), the two ops for gate/up (TROUPE_INT4_SILU=0); FP8 + FP8 KV; 32
# requests; W1 rtn (skipped if LIMIT runs out). One-request figures move by up to 3% between calls (fourteenth session,
# H100: the same kernels 3.18 and 3.23 ms a token in two calls) and much less within one (H200: 2.973 and 2.979), so
# compare within one call, against a baseline run twice (scripts/gpu/ab.sh compares two builds so). Bound the run with
# LIMIT (default 540 s), not `timeout`: a run cut off from outside prints no table and leaves its logs untarred
# (fifteenth session).
if [ "$variants" = int4 ]; then
  b1 rtn --quantization rtn
  b1 rtn_again --quantization rtn
  TROUPE_INT4_RING=5 b1 rtn_ring5 --quantization rtn
  TROUPE_INT4_LEAN=0 b1 rtn_not_lean --quantization rtn
  TROUPE_INT4_SILU=0 b1 rtn_two_ops --quantization rtn
  b1 fp8_fp8kv --quantization fp8 --kv-cache-dtype fp8
  b32 rtn --quantization rtn
  w1 rtn --quantization rtn
fi
# VARIANTS=wgmma (with PARTS=none): W1 in rtn with the defaults (the warpgroup-MMA GEMM for steps of 49 to 1,024 rows,
# 256-row tiles above 128 rows, stages overlapped), in rtn on dequantize + cuBLAS above 64 rows as before the
# eighteenth session (TROUPE_INT4_WGMMA=0), in bf16, with q/k/v and o_proj on dequantize + cuBLAS above 128 rows
# where the wgmma GEMM would split K (TROUPE_INT4_WGMMA_NO_SPLIT_ROWS=128), with 128-row tiles not overlapped (TROUPE_INT4_WGMMA_ROWS=128
# TROUPE_INT4_WGMMA_OVERLAP=0), on prefill's steps too (TROUPE_INT4_WGMMA_MAX_ROWS=0), then bf16 and rtn again (a
# short LIMIT runs the first ones).
if [ "$variants" = wgmma ]; then
  w1 rtn --quantization rtn
  TROUPE_INT4_WGMMA=0 w1 rtn_dequantize --quantization rtn
  w1 bf16
  TROUPE_INT4_WGMMA_NO_SPLIT_ROWS=128 w1 rtn_wgmma_no_split --quantization rtn
  TROUPE_INT4_WGMMA_ROWS=128 TROUPE_INT4_WGMMA_OVERLAP=0 w1 rtn_wgmma128 --quantization rtn
  TROUPE_INT4_WGMMA_MAX_ROWS=0 w1 rtn_wgmma_all --quantization rtn
  w1 bf16_again
  w1 rtn_again --quantization rtn
fi
# VARIANTS=fp8wgmma (with PARTS=none): one FP8 + FP8 KV request with the defaults, with the quantizer inside the GEMV
# for gate_up and down (TROUPE_FP8_QGEMV=1) and for every one-row product (TROUPE_FP8_QGEMV=2); W1 in FP8 + FP8 KV with the defaults (cuBLASLt above 8 rows), with the
# warpgroup-MMA FP8 GEMM for 9 to 1,024 rows where its tiles are fewer than the SMs (TROUPE_FP8_WGMMA=1: q/k/v,
# o_proj, down_proj at 256 rows; 128-row tiles), bf16, on every product of those rows (TROUPE_FP8_WGMMA=2), with
# 64-row tiles (TROUPE_FP8_WGMMA_ROWS=64), then the default again.
if [ "$variants" = fp8wgmma ]; then
  b1 fp8_fp8kv --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_QGEMV=1 b1 fp8_fp8kv_qgemv1 --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_QGEMV=2 b1 fp8_fp8kv_qgemv2 --quantization fp8 --kv-cache-dtype fp8
  w1 fp8_fp8kv --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_WGMMA=1 w1 fp8_fp8kv_wgmma --quantization fp8 --kv-cache-dtype fp8
  w1 bf16
  TROUPE_FP8_WGMMA=2 w1 fp8_fp8kv_wgmma_every --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_WGMMA=1 TROUPE_FP8_WGMMA_ROWS=64 w1 fp8_fp8kv_wgmma64 --quantization fp8 --kv-cache-dtype fp8
  w1 fp8_fp8kv_again --quantization fp8 --kv-cache-dtype fp8
fi
if [ "$variants" = 2 ]; then
  TROUPE_FP8_QUANTIZE_VEC=0 b1 fp8_fp8kv_quantize_scalar --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_FUSED=1 b1 fp8_fp8kv_fused --quantization fp8 --kv-cache-dtype fp8
  TROUPE_INT4_ASYNC=0 b1 rtn_no_async --quantization rtn
  TROUPE_INT4_ASYNC=1 b1 rtn_async_all --quantization rtn
  TROUPE_FP8_GEMV=0 TROUPE_FP8_MMA_ASYNC=0 b1 fp8_fp8kv_mma_only --quantization fp8 --kv-cache-dtype fp8
  TROUPE_FP8_GEMV=0 b1 fp8_fp8kv_no_gemv --quantization fp8 --kv-cache-dtype fp8
  TROUPE_NO_PDL=1 b1 fp8_fp8kv_no_pdl --quantization fp8 --kv-cache-dtype fp8
fi
want kv && for kv in auto fp8; do
  run "kv_$kv" 30 bundle/troupe generate --backend cuda --load-format dummy --model $m --max-model-len 4096 \
    --prompt-token-ids 1,2,3 --max-tokens 4 --kv-cache-dtype $kv || continue
  table+=("KV cache $kv: $(grep -oE '= [0-9]+ blocks' "$OUT/figures/kv_$kv.txt" | head -1)")
done
if [ "${STRUCTURED:-0}" = 1 ]; then
  for fraction in 0 0.5; do
    run "structured_$fraction" 60 bundle/troupe bench throughput --backend cuda --load-format dummy --model $m \
      --tokenizer bundle/data/qwen3-tokenizer --num-prompts 256 --max-num-seqs 256 --input-len 512 --output-len 256 \
      --max-model-len 1024 --structured-fraction "$fraction" --structured-schema bundle/data/structured_schema.json || continue
    table+=("structured $fraction: $(grep -E 'output tokens/s' "$OUT/figures/structured_$fraction.txt" | head -1) | $(grep -iE 'mask' "$OUT/figures/structured_$fraction.txt" | tr '\n' ' ')")
  done
fi
if [ "${LONG:-0}" = 1 ]; then
  for kv in auto fp8; do
    run "long_$kv" 120 bundle/troupe bench throughput --backend cuda --load-format dummy --model $m --num-prompts 64 \
      --input-len 8000 --output-len 256 --max-model-len 8448 --temperature 0 --kv-cache-dtype $kv || continue
    table+=("long 64x8000 kv $kv: $(grep -E 'output tokens/s|total tokens/s' "$OUT/figures/long_$kv.txt" | tr '\n' ' ')")
  done
fi
(cd "$OUT" && tar czf figures.tgz figures && rm -rf figures)
echo "== figures (Qwen2.5-7B shapes, random weights)"
printf '%s\n' "${table[@]}"
