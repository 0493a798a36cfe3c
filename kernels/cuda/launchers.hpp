#pragma once
// Host launchers of the CUDA kernels, one per op (kernels/cuda/<op>.cu). Each takes an explicit stream,
// checks its arguments (std::invalid_argument) and the launch (std::runtime_error), and does not
// synchronize. Shapes as in kernels/ops.hpp. Included only by kernels/cuda/*: it brings in CUDA's
// runtime API header.

#include <cuda_runtime_api.h>

#include <atomic>
#include <span>
#include <string>

#include "kernels/ops.hpp"

namespace troupe {
struct cuda_context;
}

namespace troupe::cuda {

// out[t] = table[ids[t]]; an id outside the table gives a zero row.  ids [T] i32, table [V, H], out [T, H]
void launch_embedding(const tensor& ids, const tensor& table, const tensor& out, cudaStream_t stream);
void launch_embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out,
                            cudaStream_t stream);
void launch_copy_columns(const tensor& x, const tensor& out, cudaStream_t stream);
// ops::linear_int4 on ctx's stream: up to 32 rows, one fused pass that dequantizes each weight as it reads
// it; more rows, a GEMM on the tensor cores (int4_settings() says which) or a dequantization into ctx's scratch weight
// and the cuBLASLt GEMM (linear_int4.cu).
void launch_linear_int4(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out,
                        int64_t fp8_rows = 0);
// The warpgroup-MMA GEMM of linear_int4 (linear_int4_wgmma.cu): x bf16 or f16, K a multiple of 64, groups a power of
// two from 32, x and the packed words 16-byte aligned (launch_linear_int4 checks; any rows).
void launch_linear_int4_wgmma(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias,
                              const tensor& out);
// Whether that GEMM would split K over blocks for a product of `rows` x k by n_out (its output tiles fewer than the
// blocks the SMs hold at once; then f32 partial sums go through memory and a second kernel adds them).
bool linear_int4_wgmma_splits(const cuda_context& ctx, int64_t rows, int64_t n_out, int64_t k);
// ops::linear_int4_silu on ctx's stream: silu_and_mul(linear_int4(x, w)) in one kernel (w gate and up stacked, out
// [T, N / 2]) where int4_wide_kernel takes the product (one row tile, groups a power of two from 128, outputs enough;
// int4_settings().silu); false, having launched nothing, elsewhere. Throws std::invalid_argument on shapes that disagree.
bool launch_linear_int4_silu(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias,
                             const tensor& out);
// How cuBLASLt plans are made (linear.cpp); both are part of a plan's key, so a check can time a shape both ways.
// split_k: the GEMM tuning also times split-K variants where an output has fewer 128 x 128 tiles than the GPU has SMs;
// TROUPE_GEMM_SPLIT_K=1 (no gain at a 256-sequence decode step, H100, 2026-12-06). candidates: how many of cuBLASLt's
// heuristic algorithms the tuning times (at most 64); 8 by default, TROUPE_GEMM_CANDIDATES=N (written in the eleventh
// session of 2026-12-06 with no GPU: the decode step's down_proj, o_proj and q/k/v ran at 441 / 257 / 368 TFLOP/s in
// FP8 on the 8 timed, gate_up at 883 — whether the heuristic's later choices hold better tiles for them).
// fp8_fast_accum: cuBLASLt's FP8 GEMMs keep their sums in the tensor cores for the whole K
// (CUBLASLT_MATMUL_DESC_FAST_ACCUM) rather than promoting them into f32 every so often; TROUPE_GEMM_FP8_FAST_ACCUM=0
// promotes. vLLM's Hopper FP8 GEMMs do the same (csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_fp8_dispatch.cuh:
// every configuration's schedule is a KernelTmaWarpSpecialized*FP8FastAccum). Hopper's FP8 MMA rounds its running sum
// to about 13 bits of mantissa; against exact sums of the same codes that is 1.2e-3 relative at K 3,584 and 3.1e-3 at
// 18,944 (the GPU check's linear_fp8 rows, H100, 2026-12-07; tools/gpu_check.hpp, fp8_gemm_tolerance), where e4m3's own
// rounding of x and the weights is 2^-4. Measured the same day on an H100, same call: W1 in FP8 + FP8 KV 16,491 output
// tok/s against 15,260 promoting (bf16 11,384): prefill steps 193 against 217 ms, decode steps 8.01 against 8.34 ms
// (gate_up at 256 rows 0.071 against 0.078 ms; down, o_proj and q/k/v the same either way). One request: the same.
struct gemm_switches {
  bool split_k = false;
  int candidates = 8;
  bool fp8_fast_accum = true;
};
gemm_switches& gemm_settings();

struct int4_switches {
  // Up to 32 rows on int4_mma_async_kernel (weights staged by cp.async): -1 where the layer has more outputs than inputs
  // (gate_up, qkv: faster there on the H200; o_proj and down slower) and the rows take more than one row tile, 0 never,
  // 1 always. Starts as TROUPE_INT4_ASYNC=0|1. At one row tile the lean ring kernel won on q/k/v (H100, 2026-12-06,
  // one rtn request 2.769 / 2.777 ms a step with the cp.async kernel there, 2.670 / 2.705 without).
  int async = -1;
  // int4_gemm_kernel, the shared-memory GEMM for batches (bf16 / f16, K a multiple of 128): -1 (the default;
  // TROUPE_INT4_GEMM=auto) for 17 to 64 rows, where its op timings beat both the decode kernels and dequantize +
  // cuBLAS; 1 for every product of up to 512 rows (TROUPE_INT4_GEMM=1); 0 never (TROUPE_INT4_GEMM=0: the decode
  // kernels up to 32 rows, then dequantize + cuBLAS). H100, 2026-12-06, gate_up at Qwen2.5-7B shapes: 16 rows 0.075 ms
  // against the decode kernels' 0.072-0.076; 32 rows 0.076 against 0.126 (staged) / 0.146; 64 rows 0.135 against
  // dequantize + cuBLAS 0.239; 256 rows 0.371 against 0.249. The whole model (twelfth session, H100): 32 rtn requests
  // 8.21 ms a step without it, 5.76 with it; troupe_gpu_check's "model random awq ... int4 gemm auto" rows check it.
  int gemm = -1;
  // Up to 32 rows, where int4_mma_kernel runs: int4_ring_kernel, the same sums (the same bits) with its loop unrolled
  // over the loads in flight (1, the default; TROUPE_INT4_RING=0 for int4_mma_kernel; 2, 3 and 5 its variants; 4 by
  // layer, in place of the cp.async kernel too: linear_int4.cu's launch_mma).
  int ring = 1;
  // int4_wide_kernel, two output tiles a block, for one row tile (the default; TROUPE_INT4_WIDE=0 turns it off): where
  // its blocks give every SM two (wide_min_blocks -1; 0 on every layer, for troupe_gpu_check's rows).
  bool wide = true;
  int64_t wide_min_blocks = -1;
  // linear_int4_silu (launch_linear_int4_silu): gate/up and silu_and_mul in one kernel where the wide kernel would take
  // gate/up, with down_proj's blocks let into its last wave's tail (2, the default); 1 without that (TROUPE_INT4_SILU=1);
  // 0 never (TROUPE_INT4_SILU=0: the two ops). H100, 2026-12-06, one rtn request, ms a step (three / three / two runs
  // in one call): two ops 3.165 / 3.155 / 3.189, fused 3.135 / 3.124 / 3.126, fused with the tail 3.086 / 3.097.
  int silu = 2;
  // The lean form of the ring and wide kernels at one row tile (int4_ring_sums' Lean; the default, TROUPE_INT4_LEAN=0 turns
  // it off): the same sums in the same order with fewer integer instructions a step — the scales' and zeros' bits in
  // 32-bit registers, x read from a zero buffer past the rows or K instead of predicated loads, and no copy of each
  // stage before its slot reloads; the cp.async kernel without its multiplication of every pair by one. H100,
  // 2026-12-06, one rtn request in one call: 2.942 ms a step without it, 2.808 with it (the nibble order before it).
  bool lean = true;
  // int4_wgmma_kernel (linear_int4_wgmma.cu), the warpgroup-MMA GEMM: 1 (the default) for products of more than
  // kInt4WgmmaAutoRows (48; kernels/int4_path_rules.hpp) and at most wgmma_max_rows rows (bf16 / f16, K a multiple of 64, groups a power of two), in
  // place of the 17-64-row GEMM and of dequantize + cuBLAS; 2 for every product it can take (troupe_gpu_check's
  // rows); 0 never (TROUPE_INT4_WGMMA=0|1|2). H100, 2026-12-06, ms at Qwen2.5-7B shapes, q/k/v + o_proj + gate_up +
  // down: 64 rows 0.154 against the 17-64-row GEMM's 0.216; 256 rows 0.361 against dequantize + cuBLAS's 0.449; at 32
  // rows the GEMM won (0.132 against 0.148); 33-63 rows were not timed (48 splits them). W1 with rtn weights 8,594 →
  // 9,498 output tok/s (one call).
  int wgmma = 1;
  // The rows of its tiles above 128 rows: 256 (one block an SM, half the weights' dequantization a row; the default,
  // timed in W1) or 128 (two blocks an SM; TROUPE_INT4_WGMMA_ROWS=128). Up to 64 rows the tiles are 64 rows, up to
  // 128 rows 128.
  int wgmma_rows = 256;
  // Its warpgroups leave a stage's wgmma running while they dequantize the next (wgmma_wait<1>, two sets of A
  // fragments, 5 stages of shared memory; on by default, TROUPE_INT4_WGMMA_OVERLAP=0 turns it off). H100, 2026-12-06,
  // gate_up with 256-row tiles: 0.196 → 0.165 ms at 256 rows, 2.610 → 2.006 at 4,096; with 128-row tiles it lost at
  // 256 rows (0.167 → 0.175: one block an SM, not two) and won at 64 (0.085 → 0.078).
  bool wgmma_overlap = true;
  // With wgmma 1, the most rows it takes (TROUPE_INT4_WGMMA_MAX_ROWS, 0: any; default 1,024): decode steps of many
  // sequences on it, prefill's thousands of rows on dequantize + cuBLAS, faster there (H100, 2026-12-06, gate_up at
  // 4,096 rows: 1.710 ms against its best 2.006).
  int wgmma_max_rows = 1024;
  // With wgmma 1, above this many rows a product it would split K for (q/k/v and o_proj at Qwen2.5-7B shapes: 36 and
  // 28 tiles of 128 outputs) goes to dequantize + cuBLAS instead (0: never, the default;
  // TROUPE_INT4_WGMMA_NO_SPLIT_ROWS=128 to time it). H100, 2026-12-06, at 256 rows: q/k/v 0.042 ms on the wgmma GEMM
  // (K split 4 ways) against 0.036, o_proj 0.031 (5 ways) against 0.028; not yet timed in a whole model.
  int wgmma_no_split_rows = 0;
  // In the FP8 form (int4_fp8_rows(), runtime/model/fp8_formats.hpp), steps of up to 1,024 rows on the fused kernel
  // (launch_linear_int4_w4a8: the codes made stage by stage in shared memory, never written to memory) where it takes
  // the layer, instead of int4_to_fp8_kernel then linear_fp8 (TROUPE_INT4_W4A8=1; off). The same codes either way.
  // Its rows pass (H100, 2026-12-07); it lost to the two kernels at 64 and 256 rows (gate_up 0.150 / 0.263 ms against
  // 0.147 / 0.153; 0.919 against 0.850 at 4,096), each stage waiting for its scales' loads; they now load two stages
  // ahead (not yet timed).
  bool w4a8 = false;
  // The FP8 form's conversion (int4_to_fp8, with the scales made at load and 16-byte loads) by table: each group's 16
  // codes made once into shared memory, every weight looked up (int4_fp8_codes.cuh); the same codes as a quotient a
  // weight. On: its rows pass (the check's "fp8 form, scales given" against the CPU twin's codes), and it is faster
  // (H100, 2026-12-07: the form's gate_up at 4,096 rows 0.850 ms against 1.184, down at 256 rows 0.106 against 0.210);
  // TROUPE_INT4_FP8_TABLE=0 goes back to the quotient a weight.
  bool fp8_table = true;
};
int4_switches& int4_settings();
// ops::linear_fp8 on ctx's stream: each token quantized to e4m3 into ctx's scratch, then the first of these that
// takes the shape (linear_fp8.cu): one row of a large weight, a CUDA-core GEMV ("gemv"); up to 8 rows, a tensor-core
// kernel that streams the weights once ("mma", or "mma_async" staging them by cp.async);
// cuBLASLt's FP8 GEMM with the weight and token scales in its epilogue ("outer"), the FP8 GEMM into f32 and a
// kernel applying the scales ("epilogue"), or a CUDA-core kernel ("simt"). Returns the path's name ("none" for
// no rows). w16 (fp8_w16_rows(), runtime/model/fp8_formats.hpp: the step is W8A16's) puts "w16" first where the
// shape allows it: no quantizer, fp8_w16_gemv_kernel multiplies the codes by x itself (up to 4 rows, K a multiple of 16).
// fp8_settings().path forces one ("" chooses; a forced path that cannot run throws std::runtime_error).
const char* launch_linear_fp8(cuda_context& ctx, const tensor& x, const fp8_device_weight& w, const tensor& bias,
                              const tensor& out, bool w16 = false);
// x [rows, k] quantized per token as linear_fp8 quantizes its input (input_scale: the static scale, or empty), into
// ctx's scratch (valid until the next linear_fp8): its codes and scales.
fp8_activations quantize_fp8_activations(cuda_context& ctx, const tensor& x, const tensor& input_scale);
// The 4-bit weights' FP8 form fused (linear_fp8_wgmma.cu, int4_settings().w4a8): x's codes times the weight's e4m3
// codes made from its 4-bit words stage by stage in shared memory — the codes of int4_to_fp8_kernel, with w.fp8_scale
// (made at load) — on the warpgroup MMA. Returns false, having launched nothing, where it does not take the product:
// not its shape (int4_w4a8_shape, kernels/int4_path_rules.hpp), no fp8_scale, unaligned words or codes.
bool launch_linear_int4_w4a8(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int64_t rows, int64_t k,
                             const int4_device_weight& w, const tensor& bias, const tensor& out);
// Whether it takes such a product (the codes 16-byte aligned besides).
bool linear_int4_w4a8_takes(int64_t rows, int64_t k, const int4_device_weight& w, dtype out);
// The warpgroup-MMA GEMM of linear_fp8 (linear_fp8_wgmma.cu): codes [rows, k] e4m3 with their per-row scales, K a
// multiple of 128, 16-byte aligned weight rows (the caller checks). K splits over f32 partials in ctx.fp8_products.
void launch_linear_fp8_wgmma(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int64_t rows, int64_t k,
                             const fp8_device_weight& w, const tensor& bias, const tensor& out);
// Whether the launcher takes that GEMM by itself for a product of `rows` x `n_out` over `k` (fp8_switches::wgmma and its rows,
// on ctx's SMs: fp8_wgmma_chosen, kernels/fp8_wgmma_rules.hpp).
bool linear_fp8_wgmma_chosen(const cuda_context& ctx, int64_t rows, int64_t n_out, int64_t k);
// Grows ctx.fp8_products, outside a CUDA graph's capture, to what any split of launch_linear_fp8_wgmma may need, so that
// a decode graph captured before any eager step of its size still splits K.
void prepare_linear_fp8_wgmma(cuda_context& ctx);
// ops::linear_fp8_silu on ctx's stream: silu_and_mul(linear_fp8(x, w, bias)) in one kernel for one row where
// fp8_settings().silu asks (w gate and up stacked: [2I, K]; out [1, I]); false, having done nothing, where it does not
// take the step (more rows, no switch, a forced path, a W8A16 step (w16), K not a multiple of 16 or past the kernel's
// shared memory). Throws std::invalid_argument where the shapes disagree.
bool launch_linear_fp8_silu(cuda_context& ctx, const tensor& x, const fp8_device_weight& w, const tensor& bias,
                            const tensor& out, bool w16);
// ops::linear_fp8_quantized: the same product of codes already made (add_rms_norm_fp8, silu_and_mul_fp8).
const char* launch_linear_fp8_quantized(cuda_context& ctx, const fp8_activations& x, const fp8_device_weight& w,
                                        const tensor& bias, const tensor& out);
struct fp8_switches {
  // "", "w16", "qgemv", "gemv", "gemv_split", "mma", "mma_async", "wgmma", "outer", "epilogue" or "simt"; TROUPE_FP8_GEMM
  std::string path;
  // Where the launcher chooses "mma", the cp.async kernel: -1 where N >= K (faster there on the H200), 0 never, 1 always.
  // Starts as TROUPE_FP8_MMA_ASYNC=0|1.
  int mma_async = -1;
  // One row on the CUDA-core GEMV (whole 16-byte loads, exact products): -1 for weights of kGemvChosenBytes or more
  // (gate_up, down: faster there on the H200; the small layers faster on the mma kernels), 0 never, 1 every one-row
  // product. Starts as TROUPE_FP8_GEMV=0|1.
  int gemv = -1;
  // Where one row takes the GEMV and K is at least this (0: never), fp8_gemv_split_kernel (a block an output, all its
  // row's loads in flight at once; the path "gemv_split") instead: down_proj's long rows. TROUPE_FP8_GEMV_SPLIT=K.
  // The default since the twenty-third session (2026-12-07; H100, one FP8 + FP8 KV request with the silu kernel and
  // F16 attention, same call: 3.607 ms a step with it and wide_rows 1, 3.714 without; down at one row 0.0316 ms
  // against the GEMV's 0.0354). Gate/up's short rows stay on the GEMV (0.098 ms as a block an output against 0.053).
  int64_t gemv_split = 8192;
  // Activations quantized with 16-byte loads (fp8_quantize_rows_kernel's N > 1) where K allows. On by default since the
  // ninth session of 2026-12-05 (H100, FP8 weights + FP8 KV: one request 4.48 -> 3.84 ms a token, W1 13,541 -> 14,672
  // output tok/s; the same codes bit for bit, per the GPU check); TROUPE_FP8_QUANTIZE_VEC=0 goes back to one element a load.
  bool quantize_vec = true;
  // Steps of at most this many rows quantize activations (linear_fp8's quantizer, silu_and_mul_fp8) with blocks of
  // kWideQuantizeThreads (1024) threads instead of 256 (each row is one block: a one-row step quantizes down_proj's
  // 18,944 inputs on one SM) — the same codes bit for bit (the GPU check's "wide quantizer" rows, every shape). 1 from
  // the twenty-third session of 2026-12-07 (with gemv_split, one request 3.714 -> 3.607 ms a step); 256 since the
  // twenty-fifth (H100, W1 in FP8 + FP8 KV, three calls: decode steps of 256 rows 8.02-8.09 ms against 8.13-8.30,
  // W1 16,575 / 16,588 output tok/s against 16,307 / 16,384 / 16,501). 256 rows of 1024 threads are one wave on a
  // Hopper's 132 SMs (two blocks an SM); past that the wide blocks take more waves than 256-thread blocks would, and
  // no step of more rows was timed. TROUPE_FP8_WIDE_ROWS=N, 0 never.
  int wide_rows = 256;
  // Steps of more than kMmaChosenRows (8) rows, up to wgmma_max_rows, on fp8_wgmma_kernel (linear_fp8_wgmma.cu; the
  // path "wgmma") where K is a multiple of 128, instead of cuBLASLt: 0 (the default) never; 1 the products whose tiles
  // are fewer than the SMs (fp8_wgmma_chosen, kernels/fp8_wgmma_rules.hpp: at 256 rows q/k/v, o_proj and down_proj, where cuBLASLt made few
  // tiles, 257-441 TFLOP/s on an H100; not gate_up, 883 there); 2 every product; 3 mode 1's deep products only (K at least
  // twice the outputs: down_proj, where the TMA form beat cuBLASLt, 0.058 against 0.062 ms at 256 rows on an H100, and
  // lost the rest) (TROUPE_FP8_WGMMA=0|1|2|3). Written in the nineteenth session of 2026-12-06 for the decode steps of
  // many sequences. Its first form (every product, the row tiles slowest over the grid: gate_up's weights read twice
  // at 256 rows) lost on the H200: W1 15,367 → 13,705 output tok/s. Mode 3 with the TMA form is the default since the
  // twenty-eighth session (H100, one call, W1 in FP8 + FP8 KV with Direct's three stages: 16,870 output tok/s against
  // 16,744 without it, decode steps 7.81 against 7.95 ms); 0 goes back to cuBLASLt for every product.
  int wgmma = 3;
  int wgmma_rows = 128;          // rows of its tiles above 64 rows: 128, or 64 (TROUPE_FP8_WGMMA_ROWS)
  int64_t wgmma_max_rows = 1024;  // TROUPE_FP8_WGMMA_MAX_ROWS (0: any)
  // With fast accumulation, the wgmma path's warp-specialized form (fp8_wgmma_tma_kernel: a producer thread's TMA tile
  // copies on mbarriers, two consumer warpgroups, no block barrier a stage); TROUPE_FP8_WGMMA_TMA=1. Written in the
  // twenty-fourth session. Timed in the twenty-fifth (H100, decode at 256 rows, fast accumulation, ms): down 0.058
  // against cuBLASLt's 0.062 (the one product it wins), q/k/v 0.022 / 0.019, o_proj 0.021 / 0.019, gate_up 0.099 /
  // 0.073; W1 with it on the few-tile products 16,356 output tok/s against the defaults' 16,307-16,384. Its rows pass
  // (the full check with it, 0 failing). On (with mode 3 above: down_proj's decode products); TROUPE_FP8_WGMMA_TMA=0
  // takes the cp.async form.
  bool wgmma_tma = true;
  // One row with its quantization inside the GEMV (fp8_qgemv_kernel, the path "qgemv": no quantizer kernel, the same
  // codes and output bits as "gemv"): 0 (the default) never, 1 where "gemv" would be chosen (gate_up, down), 2 for every
  // one-row product (TROUPE_FP8_QGEMV=0|1|2). Written in the nineteenth session of 2026-12-06; off until timed.
  int qgemv = 0;
  // One row's gate/up product and silu_and_mul in one kernel (launch_linear_fp8_silu: fp8_qgemv_kernel's Silu form,
  // the quantizer inside too), bit for bit the two ops (troupe_gpu_check --fp8-silu: 159 of 159 rows, H100,
  // 2026-12-07). The default: H100, one FP8 + FP8 KV request, 3.776 ms a step against 3.851 in one call of the
  // twenty-second session. TROUPE_FP8_SILU=0 runs the two ops.
  bool silu = true;
  // silu_and_mul_fp8 (TROUPE_FP8_FUSED's activation before down_proj) in one read of each row: each thread keeps its
  // values in registers between the row's max and its codes, where the two-pass kernel makes every value twice (the
  // second time from L2 at best: a 256-row decode step's rows are 19 MB, a 16,384-row prompt step's 1.2 GB). 512
  // threads a row, two blocks an SM; rows of up to 5 vectors a thread (20,480 bf16 outputs), the two-pass kernel past
  // that. The same codes
  // and scales (the check's "single pass" rows). TROUPE_FP8_SINGLE_PASS=1; written in the twenty-fourth session with no
  // device time left: off until timed.
  bool single_pass = false;
  std::atomic<const char*> last_path{"none"};   // the path the last call took (troupe_gpu_check prints it)
};
fp8_switches& fp8_settings();
constexpr int kWideQuantizeThreads = 1024;
// The threads of a block that quantizes one row of a step of `rows` rows (fp8_switches::wide_rows).
inline int fp8_quantize_threads(int64_t rows) { return rows <= fp8_settings().wide_rows ? kWideQuantizeThreads : 256; }
// out[i] = x[indices[i]]; any dtype (rows are copied as bytes).  x [T, H], indices [R] i32, out [R, H]
void launch_gather_rows(const tensor& x, const tensor& indices, const tensor& out, cudaStream_t stream);

// out = x / rms(x) * weight.  x, out [T, H], weight [H]; out may be x
void launch_rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out, cudaStream_t stream);
// residual += x (rounded to the residual's dtype); x = rms_norm(residual) * weight.  x, residual [T, H]
void launch_add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps, cudaStream_t stream);
// ops::add_rms_norm_fp8: the same kernel, which then quantizes each normalized row as linear_fp8 would (bitwise the
// codes and scales add_rms_norm followed by linear_fp8's quantization make).
void launch_add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                             const tensor& input_scale, const fp8_activations& out, cudaStream_t stream);

// Qwen3's per-head RMS norm of q and k in place; see ops::qk_norm.
void launch_qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
                    float eps, cudaStream_t stream);

// out = silu(x[:, :I]) * x[:, I:].  x [T, 2I], out [T, I]
void launch_silu_and_mul(const tensor& x, const tensor& out, cudaStream_t stream);
// ops::silu_and_mul_fp8: one block a row makes silu_and_mul's values twice (for the max, then for the codes).
void launch_silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out, cudaStream_t stream);

// Rotary embedding in place on q and k, and the paged K/V write; see ops::rope_write_kv.
// A position outside the rotary table leaves its row unrotated (the engine never plans one).
void launch_rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin, const tensor& slot_mapping,
                          const tensor& k_cache, const tensor& v_cache, const attention_shape& shape, cudaStream_t stream);

// Causal attention over the paged cache for every new token; see ops::paged_attention. Decode steps
// split the context into partitions whose partial results go to `workspace` (fp32, `workspace_floats`
// of them; none: no split).
void launch_paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache, const attention_metadata& meta,
                            const attention_shape& shape, const tensor& out, float* workspace, int64_t workspace_floats,
                            cudaStream_t stream);
// Switches for measuring the attention kernels against each other, read once from the environment
// (TROUPE_ATTN_SIMT=1, TROUPE_NO_ATTN_SPLIT=1, TROUPE_ATTN_PART_KEYS=N, TROUPE_ATTN_PREFILL_LEAN=0); troupe_gpu_check
// sets them.
struct attention_switches {
  bool simt = false;      // bf16/f16 attention on the CUDA-core kernel too
  bool no_split = false;  // decode attention without the context split
  int part_keys = 0;      // > 0: partition length (a multiple of 64) for batches of 128 blocks and more
  int decode_stages = 0;  // 3: the decode layout at head_dim 128 keeps 3 (bf16) or 4 (FP8) tiles in flight, two blocks
                          // an SM, instead of the default two tiles and three blocks (the timings compare them)
  // The prefill layout with Q read into registers before the first tile, its shared memory given to the K/V buffers
  // and three blocks an SM instead of two (paged_attention_mma.cu, "Lean"). The default since 2026-12-07
  // (TROUPE_ATTN_PREFILL_LEAN=0 goes back): H100, ms against the two-block form, bf16 prefill of 4,096 0.810 / 1.072,
  // 2,048 of 8,192 1.327 / 1.728, FP8 cache 1.059 / 1.207 (F16 form); W1 in FP8 + FP8 KV 16,479 / 16,275 output tok/s,
  // bf16 11,271 / 11,223 (same call).
  bool prefill_lean = true;
  // An FP8 cache read into f16 by the hardware's conversion and multiplied on f16 mma, Q scaled into f16's range by a
  // power of two (paged_attention_mma.cu, "F16"). Faster everywhere it was timed (H100, 2026-12-07, bf16 model, ms
  // against the bf16-tile form: decode 256 x 640 0.097 / 0.104, 64 x 4,096 0.236 / 0.242, prefill 4,096 1.212 / 1.270,
  // the mixed step 0.334 / 0.355; W1 in FP8 + FP8 KV 14,857 / 14,593 output tok/s). The default since its check rows
  // passed (troupe_gpu_check --fp8-kv-f16: 72 of 72, H100, 2026-12-07); TROUPE_ATTN_FP8_F16=0 takes the bf16-tile form.
  bool fp8_f16 = true;
  // With fp8_f16, the decode layout reads the staged codes straight into fragments by ldmatrix, no converted tile
  // (paged_attention_mma.cu, "Direct"); TROUPE_ATTN_FP8_DIRECT=0 goes back to the converted tile. Its check rows pass
  // (troupe_gpu_check --fp8-kv-f16: 144 of 144, H100, 2026-12-07) and it is faster where timed (H100, same call, ms
  // against the converting F16 form: decode 256 x 640 0.079 / 0.095, 64 x 4,096 0.190 / 0.234, the mixed step 0.318 /
  // 0.332; W1 in FP8 + FP8 KV 15,104 / 14,883 output tok/s, its decode steps 8.47 / 8.69 ms).
  bool fp8_direct = true;
  // Direct's stages at head_dim 128 (TROUPE_ATTN_DIRECT_STAGES=2|3): 2 (41 KiB of shared memory, four blocks an SM) or
  // 3 (the default: 52 KiB with the staged rows swizzled rather than padded: still four blocks). Why 3: the decode
  // layout is bound by latency, so by the bytes each SM has in flight, and an FP8 tile carries half a bf16 tile's: four
  // blocks of two FP8 stages have one 16 KiB tile each coming while they compute (64 KiB an SM) where bf16's three
  // blocks have 32 KiB each (96 KiB), and read 2.1 against 2.6 TB/s (H100, 256 x 640); with three stages, 128 KiB.
  // Written in the twenty-fifth session; its check rows pass (--fp8-kv-f16, 168 of 168, H100). The default since the
  // twenty-eighth session: two W1 pairs in FP8 + FP8 KV on two H100s, 16,428 / 16,294 and 16,744 / 16,643 output tok/s
  // (decode steps 8.09 / 8.24 and 7.95 / 8.01 ms). TROUPE_ATTN_DIRECT_STAGES=2 goes back.
  int direct_stages = 3;
  // Where attention_shape::next_waits (a 4-bit o_proj after it), the decode kernels let the kernel after start at once
  // (attention_params::trigger) and the combine goes as a programmatic dependent, so o_proj's blocks stream its weights
  // while attention runs: -1 (the default) on decode steps of at most 8 sequences, 1 on every decode step
  // (TROUPE_ATTN_TRIGGER=1), 0 never (TROUPE_ATTN_TRIGGER=0). H100, 2026-12-06, one rtn request: 3.047 / 3.020 ms a step
  // against 3.061 / 3.063 without, in one call; larger batches not yet timed.
  int trigger = -1;
};
attention_switches& attention_settings();

// How many partitions launch_paged_attention splits each sequence's context into (1: no split), and
// their length in positions. Depends on the step's shape, dtype and max_seq_len only (fp32: no split).
int paged_attention_partitions(const attention_metadata& meta, const attention_shape& shape, dtype type, int64_t num_tokens,
                               int64_t workspace_floats, int* part_keys);

// ops::fill_random: each element from its own index (fill_random.cu), bit for bit the CPU twin's before rounding.
void launch_fill_random(const random_slice& s, const tensor& out, cudaStream_t stream);
// dst = src converted to dst's floating dtype.  src: `count` floats on the device
void launch_convert_from_f32(const float* src, const tensor& dst, int64_t offset, int64_t count, cudaStream_t stream);

// The most tensors launch_sum_in_order adds: ranks sharing one GPU.
constexpr int kMaxSummands = 16;
// dst[i] = srcs[0][i] + srcs[1][i] + ..., in that order, for i in [begin, end): f32 accumulation rounded
// once to `type` (f32, bf16 or f16), the thread communicator's bits. dst may be one of srcs; 1 to
// kMaxSummands device pointers (std::invalid_argument otherwise).
void launch_sum_in_order(std::span<const void* const> srcs, void* dst, dtype type, int64_t begin, int64_t end,
                         cudaStream_t stream);

// The custom all-reduce's buffers as this process maps them (kernels/cuda/custom_all_reduce.cpp): rank r's
// signal flags at bases[r], its data kCustomAllReduceSignalBytes after.
constexpr size_t kCustomAllReduceSignalBytes = 8192;
constexpr int kCustomAllReduceMaxBlocks = 64;  // the flags hold this many blocks' slots
constexpr int kCustomAllReduceRanks = 8;       // kCustomAllReduceMaxRanks (kernels/custom_all_reduce_rules.hpp)
struct custom_all_reduce_buffers {
  void* bases[kCustomAllReduceRanks] = {};
  int rank = 0, size = 0;
};
// data = the sum over every rank of its data, in rank order in f32, rounded once to `type` (f32, bf16 or f16):
// one kernel that copies data into this rank's buffer, meets every peer (a barrier per block), sums every
// rank's buffer and meets them again before any buffer may change. `blocks` the same on every rank
// (custom_all_reduce_blocks), at most kCustomAllReduceMaxBlocks; the ranks' buffers hold n elements rounded up
// to 16 bytes. A peer absent for timeout_ns (0: no limit) traps the kernel.  data [n]
void launch_custom_all_reduce(const custom_all_reduce_buffers& buffers, void* data, int64_t n, dtype type, int blocks,
                              uint64_t timeout_ns, cudaStream_t stream);
// Loads the kernel's f32, bf16 and f16 forms for `size` ranks on the current device. CUDA loads a kernel at its
// first launch by default (lazy loading), and a load may wait for the whole device: for a kernel of a rank
// sharing the GPU that spins for this very launch, that wait never ends (CUDA's lazy-loading guide warns of
// kernels that assume they run concurrently).
void load_custom_all_reduce_kernels(int size);

// out[r] = index of the largest value of logits row r (the first on ties).  logits [R, V] f32, out [R] i32
void launch_argmax(const tensor& logits, const tensor& out, cudaStream_t stream);

// out[r] = the token sample_cpu picks for row r (see ops::sample); edits logits in place.
// logits [R, V] f32, batch of R rows, out [R] i32
void launch_sample(const tensor& logits, const sampling_batch& batch, const tensor& out, cudaStream_t stream);

} // namespace troupe::cuda
