// ops::linear_fp8 for steps of many rows on Hopper's warpgroup MMA (wgmma, sm_90a): fp8_wgmma_kernel, the path
// "wgmma" of linear_fp8.cu. Written for the decode steps of many sequences, whose products cuBLASLt's FP8 GEMM serves
// badly where the outputs are few (H100 W1 profile, 2026-12-05, 256 rows: down_proj 441 TFLOP/s, o_proj 257, q/k/v 368,
// against gate_up's 883; cuBLASLt's candidates held no split-K, and forcing split-K variants changed nothing).
//
// out[r][o] = (Σ_k xq[r][k] · w[o][k]) · x_scales[r] · w_scales[o] (+ bias[o]), the codes e4m3 (fp8_output.cuh): D =
// A · B with A = the weight codes (M = outputs) and B = xqᵀ (N = rows). Both are K-major as they lie in memory (a
// weight row and an x row are runs of k), the only layout wgmma takes for 8-bit operands, and both come from shared
// memory by descriptor.
//
// A block makes kF8Outputs (128) outputs for BN (64 or 128) rows; its two warpgroups 64 outputs each, sharing x's
// tile. Each stage of 128 k brings x's tile (BN rows x 128 bytes) and the weights' (128 outputs x 128 bytes), both
// 128-byte swizzled (wgmma.cuh), into shared memory by cp.async, kF8Ahead stages loading ahead. A warpgroup runs the
// stage's four m64nBNk32 into a fresh set of accumulators, waits for them, and adds them into its f32 sums on the CUDA
// cores: Hopper's FP8 tensor cores keep fewer bits than f32 while they accumulate (DeepSeek-V3's report measured
// about 14; cuBLASLt promotes likewise unless asked for "fast accumulation"), so the sum over a long K (down_proj's
// 18,944) is made in f32 128 products at a time. Where the output tiles are fewer than the SMs, K is split over
// blockIdx.z (kernels/fp8_wgmma_rules.hpp, which CI tests) into f32 partials that fp8_split_reduce_kernel adds in split order.
// With fast accumulation (the default since 2026-12-07, as cuBLASLt's FP8 GEMMs run) the kernel's Fast form keeps the
// sums in the wgmma accumulators for the whole split, with no promotion and two stages' MMA in flight, and takes 256-row
// tiles (TROUPE_FP8_WGMMA_ROWS=256), which at a 256-sequence decode step read each weight once. Measured on an H100
// (2026-12-07): no faster than cuBLASLt on any 256-row decode product (down 0.062-0.064 ms against 0.062). Its
// warp-specialized form, fp8_wgmma_tma_kernel (TROUPE_FP8_WGMMA_TMA=1), has a producer thread load the tiles by TMA on
// mbarriers for two consumer warpgroups: down_proj's decode products take it by default (fp8_switches::wgmma 3, the one
// product where it beat cuBLASLt: 0.058 against 0.062 ms at 256 rows, H100).
//
// H200, 2026-12-06: correct on every op row (f32 1.1-1.3e-4 from exact sums, as cuBLASLt), but slow where cuBLASLt has
// tiles enough: gate_up at 256 rows 0.121 ms (575 TFLOP/s) against 0.067 (1,045), at 4,096 rows 2.079 against 0.828.
// L2-bound at 128 x 128 tiles, and a stage's block barrier keeps the warpgroups in step (kernels/cuda/NOTES.md,
// nineteenth session). fp8_switches::wgmma 1 limits it to products of fewer tiles than SMs, 3 (the default, with the
// TMA form) to the deep ones among them.

#include <cuda.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/fp8_output.cuh"
#include "kernels/cuda/int4_fp8_codes.cuh"
#include "kernels/cuda/launchers.hpp"
#include "kernels/cuda/wgmma.cuh"
#include "kernels/fp8_wgmma_rules.hpp"
#include "kernels/int4_path_rules.hpp"

namespace troupe::cuda {
namespace {

constexpr int kF8Outputs = kFp8WgmmaOutputs;  // a block's outputs: 64 a warpgroup
constexpr int kF8StageK = 128;   // k a stage: 128 codes, 128 bytes of each row, the swizzle's width
constexpr int kF8Threads = 256;  // two warpgroups
constexpr int kF8TmaThreads = 384;  // the TMA form: a producer warpgroup and two consumers
constexpr int kF8Stages = 6;     // buffers in shared memory: (BN + 128) x 128 bytes each, 192 KiB at BN 128
// Stages loading ahead: every warpgroup waits for its stage's wgmma before the next stage's barrier, so the buffer
// the stage before read is free when that barrier passes.
constexpr int kF8Ahead = kF8Stages - 1;
template <int BN> constexpr int kF8StageBytes = (BN + kF8Outputs) * kF8StageK;  // x's tile, then the weights'

// A form that ran a stage's wgmma while the stage before's sums were added (two sets of stage sums, wgmma_wait<1>) was
// no faster (H200, 2026-12-06, gate_up at 256 rows 0.129 ms against 0.121): ptxas serializes wgmma whose accumulators
// other instructions read inside the pipeline stage (its info C7514). Taken out in the twenty-second session.

// The fast forms' stage: warpgroup `wg`'s 64 outputs (its weights 64 · wg rows into the stage's weight tile) times x's
// tile over the stage's 128 k, four k32 wgmma added into acc and committed as one group; returns once the stage
// before's group is done, so one group stays in flight.
template <int BN> __device__ __forceinline__ void wgmma_stage_accumulate(float (&acc)[BN / 2], uint32_t stage, int wg) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    wgmma_ss_e4m3<BN, true>(acc, wgmma_desc_k_major_sw128(stage + BN * 128 + wg * 64 * 128 + 32 * kk),
                            wgmma_desc_k_major_sw128(stage + 32 * kk));
  wgmma_commit();
  wgmma_wait<1>();
}

// A thread's copies of a tile's rows (x's rows or the weight's outputs) r + Step · i of `rows`, each row_bytes long, at
// byte `offset` of each stage (rows past the product clamped, to be zero-filled): their sources into src, and which
// rows are in the product (bit i: copy i's) returned.
template <int Copies, int Step = 32>
__device__ __forceinline__ uint32_t row_copies(const uint8_t* base, int r, int rows, int64_t row_bytes, int offset,
                                               const uint8_t* (&src)[Copies]) {
  uint32_t valid = 0;
#pragma unroll
  for (int i = 0; i < Copies; ++i) {
    src[i] = base + static_cast<int64_t>(min(r + Step * i, rows - 1)) * row_bytes + offset;
    valid |= static_cast<uint32_t>(r + Step * i < rows) << i;
  }
  return valid;
}

// A warpgroup's accumulators zeroed, then the copies of the first Ahead stages issued (`issue(s)`), a commit group each
// (empty past the split's `stages`), once the kernel before is done (launched plainly, a no-op: the codes are the
// quantizer's output).
template <int BN, int Ahead, class Issue>
__device__ __forceinline__ void start_stages(float (&acc)[BN / 2], int stages, Issue&& issue) {
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
  pdl_wait();
#pragma unroll
  for (int i = 0; i < Ahead; ++i) {
    if (i < stages) issue(i);
    cp_async_commit();
  }
}

// A warpgroup's accumulators into the output (or, where K is split, into split blockIdx.z's f32 partials): acc[4i + e]
// is output oa (e < 2) or oa + 8, row r0 + 8i + e % 2 (oa: the warp's output g, r0: the tile's row 2t).
template <class T, int BN>
__device__ __forceinline__ void store_wgmma_tile(const float (&acc)[BN / 2], int oa, int r0, const float* x_scales,
                                                 const float* w_scales, const T* bias, float* partial, T* out, int rows,
                                                 int n_out) {
#pragma unroll
  for (int i = 0; i < BN / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int o = oa + (e < 2 ? 0 : 8), r = r0 + 8 * i + (e & 1);
      if (r >= rows || o >= n_out) continue;
      if (partial) partial[(static_cast<int64_t>(blockIdx.z) * rows + r) * n_out + o] = acc[4 * i + e];
      else out[static_cast<int64_t>(r) * n_out + o] = from_float<T>(fp8_output(acc[4 * i + e], x_scales, w_scales, bias, r, o));
    }
}

// Fast (fast accumulation, the default: gemm_settings().fp8_fast_accum, as cuBLASLt's FP8 GEMMs run): the stages'
// wgmma add straight into one set of accumulators, never promoted, and a stage's group runs while the next stage's is
// issued — two in flight at most, so the loads run kStages - 2 ahead and a stage reloads the buffer the stage two before
// read, whose group the wgmma_wait<1> closing the stage before has seen done. 256-row tiles (BN 256, four stages of
// 48 KiB) are this form's only: a warpgroup's m64n256 holds 128 accumulators a thread.
template <int BN> constexpr int kF8StagesOf = BN == 256 ? 4 : kF8Stages;

template <class T, int BN, bool Fast = false>
__global__ void __launch_bounds__(kF8Threads, 1)
    fp8_wgmma_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales, const uint8_t* __restrict__ w,
                     const float* __restrict__ w_scales, const T* __restrict__ bias, float* __restrict__ partial,
                     T* __restrict__ out, int rows, int n_out, int k, int stages_per_split) {
  extern __shared__ uint8_t f8_smem_raw[];
  // The tiles need 1024-byte alignment (the swizzle works on address bits 4-9); the launch adds 1 KiB for it.
  uint8_t* smem = f8_smem_raw + ((1024 - (smem_addr(f8_smem_raw) & 1023)) & 1023);
  const int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  // The row tiles vary fastest over the grid: the blocks of one output tile's rows run together and read its weights
  // from memory once between them (the other way round, gate_up at 256 rows in 128-row tiles, 4.5 waves, read every
  // weight from memory twice).
  const int row0 = blockIdx.x * BN, out0 = blockIdx.y * kF8Outputs;
  const int s_begin = blockIdx.z * stages_per_split;
  const int stages = min(k / kF8StageK - s_begin, stages_per_split);

  // This thread's copies, made once: rows (of x, or outputs of w) cr + 32i of each tile at chunk cc. The swizzle
  // depends on the row mod 8 only, so copy i lies 32i rows past copy 0. Rows and outputs past the product are
  // clamped and their copies zero-filled: no branch a stage.
  constexpr int kXCopies = BN * 8 / kF8Threads, kWCopies = kF8Outputs * 8 / kF8Threads;
  const int cr = threadIdx.x / 8, cc = threadIdx.x % 8;
  const uint8_t* x_src[kXCopies];
  const uint8_t* w_src[kWCopies];
  const uint32_t x_valid = row_copies<kXCopies>(xq, row0 + cr, rows, k, 16 * cc, x_src);  // bit i: copy i's row is in
  const uint32_t w_valid = row_copies<kWCopies>(w, out0 + cr, n_out, k, 16 * cc, w_src);  // the product
  const uint32_t dst = smem_addr(smem) + cr * 128 + wgmma_swizzled_chunk(cc, cr) * 16;
  constexpr int kStages = kF8StagesOf<BN>;
  static_assert(Fast || BN <= 128, "fp8_wgmma_kernel: 256-row tiles accumulate fast only");
  auto issue = [&](int s) {  // stage s of this split into buffer s % kStages
    const uint32_t stage = dst + (s % kStages) * kF8StageBytes<BN>;
    const int64_t k0 = static_cast<int64_t>(s_begin + s) * kF8StageK;
#pragma unroll
    for (int i = 0; i < kXCopies; ++i) cp_async16_to(stage + i * 32 * 128, x_src[i] + k0, (x_valid >> i) & 1);
#pragma unroll
    for (int i = 0; i < kWCopies; ++i) cp_async16_to(stage + BN * 128 + i * 32 * 128, w_src[i] + k0, (w_valid >> i) & 1);
  };

  constexpr int kAhead = Fast ? kStages - 2 : kF8Ahead;
  float acc[BN / 2];
  start_stages<BN, kAhead>(acc, stages, issue);
  if constexpr (Fast) {
    for (int s = 0; s < stages; ++s) {
      cp_async_wait<kAhead - 1>();  // stage s landed; every warpgroup's group of stage s - 2 is done (see above)
      fence_proxy_async_shared();
      __syncthreads();
      if (s + kAhead < stages) issue(s + kAhead);
      cp_async_commit();
      wgmma_stage_accumulate<BN>(acc, smem_addr(smem) + (s % kStages) * kF8StageBytes<BN>, wg);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) wgmma_pin(acc[i]);
  } else {
    // Stage s's four wgmma into `part` (a fresh sum).
    auto run_stage = [&](int s, float(&part)[BN / 2]) {
      // Stage s landed (this thread's copies), visible to the tensor cores' reads (the async proxy), for every thread;
      // every warpgroup's wgmma of the buffer that reloads now are done.
      cp_async_wait<kAhead - 1>();
      fence_proxy_async_shared();
      __syncthreads();
      if (s + kAhead < stages) issue(s + kAhead);
      cp_async_commit();
      const uint32_t stage = smem_addr(smem) + (min(s, stages - 1) % kStages) * kF8StageBytes<BN>;
      uint64_t desc_a[4], desc_b[4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {  // k32 slice kk: 32 bytes into each row
        desc_a[kk] = wgmma_desc_k_major_sw128(stage + BN * 128 + wg * 64 * 128 + 32 * kk);
        desc_b[kk] = wgmma_desc_k_major_sw128(stage + 32 * kk);
        wgmma_pin(desc_a[kk]);
        wgmma_pin(desc_b[kk]);
      }
      wgmma_fence();
      wgmma_ss_e4m3<BN, false>(part, desc_a[0], desc_b[0]);
#pragma unroll
      for (int kk = 1; kk < 4; ++kk) wgmma_ss_e4m3<BN, true>(part, desc_a[kk], desc_b[kk]);
      wgmma_commit();
    };
    auto promote = [&](float(&part)[BN / 2]) {
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) {
        wgmma_pin(part[i]);
        acc[i] += part[i];
      }
    };
    float part[BN / 2];
    for (int s = 0; s < stages; ++s) {
      run_stage(s, part);
      wgmma_wait<0>();
      promote(part);
    }
  }
  store_wgmma_tile<T, BN>(acc, out0 + wg * 64 + warp * 16 + g, row0 + 2 * t, x_scales, w_scales, bias, partial, out, rows,
                          n_out);
}

// Warp-specialized (TROUPE_FP8_WGMMA_TMA=1, fp8_settings().wgmma_tma; with fast accumulation only): the Fast form's
// product with its loads made by the tensor memory accelerator. Warpgroup 0's first thread is the producer: per stage
// two 2D tile copies (x's BN rows and the weights' 128 outputs, 128 bytes of K each, 128-byte swizzled as wgmma reads
// them; rows past the tensor arrive as zeros) that complete on the stage's "full" mbarrier. Warpgroups 1 and 2 each run
// 64 outputs' wgmma over the stage when it is full, keep one stage's group in flight, and arrive on the stage before's
// "empty" mbarrier once its group is done, so the producer refills it: no block barrier a stage, no thread issuing
// 16-byte copies. Written in the twenty-fourth session with no device time left: off until its rows pass and it is timed.
template <class T, int BN>
__global__ void __launch_bounds__(kF8TmaThreads, 1)
    fp8_wgmma_tma_kernel(const __grid_constant__ CUtensorMap x_map, const __grid_constant__ CUtensorMap w_map,
                         const float* __restrict__ x_scales, const float* __restrict__ w_scales,
                         const T* __restrict__ bias, float* __restrict__ partial, T* __restrict__ out, int rows,
                         int n_out, int total_stages, int stages_per_split) {
  constexpr int kStages = kF8StagesOf<BN>;
  constexpr uint32_t kStageBytes = kF8StageBytes<BN>;
  extern __shared__ uint8_t f8_tma_smem_raw[];
  __shared__ uint64_t full[kStages], empty[kStages];
  const uint32_t smem = smem_addr(f8_tma_smem_raw) + ((1024 - (smem_addr(f8_tma_smem_raw) & 1023)) & 1023);
  const int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row0 = blockIdx.x * BN, out0 = blockIdx.y * kF8Outputs;
  const int s_begin = blockIdx.z * stages_per_split;
  const int stages = min(total_stages - s_begin, stages_per_split);
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbarrier_init(&full[i], 1);   // the producer's arrival, with the stage's bytes
      mbarrier_init(&empty[i], 2);  // one thread of each consumer warpgroup
    }
    mbarrier_init_fence();
  }
  __syncthreads();
  pdl_wait();  // launched plainly (a no-op); the codes are the quantizer's output
  if (wg == 0) {
    if (threadIdx.x != 0) return;
    for (int s = 0; s < stages; ++s) {
      const int b = s % kStages;
      if (s >= kStages) mbarrier_wait(&empty[b], (s / kStages - 1) & 1);  // the consumers are done with stage s - kStages
      mbarrier_arrive_expect_bytes(&full[b], kStageBytes);
      const uint32_t stage = smem + b * kStageBytes;
      const int k0 = (s_begin + s) * kF8StageK;
      tma_load_2d(stage, &x_map, k0, row0, &full[b]);
      tma_load_2d(stage + BN * 128, &w_map, k0, out0, &full[b]);
    }
    return;
  }
  const int cw = wg - 1;  // this consumer's 64 outputs: out0 + 64·cw ..
  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
  for (int s = 0; s < stages; ++s) {
    const int b = s % kStages;
    mbarrier_wait(&full[b], (s / kStages) & 1);
    wgmma_stage_accumulate<BN>(acc, smem + b * kStageBytes, cw);  // stage s - 1's group is done: refill its buffer
    if (s > 0 && threadIdx.x % 128 == 0) mbarrier_arrive(&empty[(s - 1) % kStages]);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) wgmma_pin(acc[i]);
  store_wgmma_tile<T, BN>(acc, out0 + cw * 64 + warp * 16 + g, row0 + 2 * t, x_scales, w_scales, bias, partial, out, rows,
                          n_out);
}

// out[i] = the splits' sums of element i (partial [splits, rows, n_out] f32) added in split order, then scaled as every
// FP8 path's output (fp8_output) and rounded once.
template <class T>
__global__ void fp8_split_reduce_kernel(const float* __restrict__ partial, int splits, const float* __restrict__ x_scales,
                                        const float* __restrict__ w_scales, const T* __restrict__ bias, T* __restrict__ out,
                                        int64_t elems, int n_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= elems) return;
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s) sum += partial[s * elems + i];
  out[i] = from_float<T>(fp8_output(sum, x_scales, w_scales, bias, i / n_out, i % n_out));
}

fp8_wgmma_switches wgmma_switches() {
  const fp8_switches& s = fp8_settings();
  // 256-row tiles are the fast-accumulating form's only.
  const int tile_rows = s.wgmma_rows == 256 && !gemm_settings().fp8_fast_accum ? 128 : s.wgmma_rows;
  return {s.wgmma, tile_rows, s.wgmma_max_rows};
}

// The f32 scratch made ready before any graph's capture (prepare_linear_fp8_wgmma): what any split may need
// (fp8_split_scratch_floats, 8.7 MB on 132 SMs).
size_t fp8_split_scratch_bytes(const cuda_context& ctx) {
  return static_cast<size_t>(fp8_split_scratch_floats(ctx.sm_count)) * sizeof(float);
}

// plan_fp8_split_k's splits (kernels/fp8_wgmma_rules.hpp), the partials in ctx.fp8_products, grown for them outside a
// graph's capture; inside one, before any step grew it, fewer splits where it is too small.
fp8_split_plan plan_fp8_split(cuda_context& ctx, int64_t tiles, int total, int rows, int n_out) {
  const fp8_split_plan plan = plan_fp8_split_k(tiles, total, ctx.sm_count);
  if (plan.splits > 1) prepare_linear_fp8_wgmma(ctx);
  return fit_fp8_split(plan, total, [&](int s) {
    return static_cast<size_t>(s) * rows * n_out * sizeof(float) <= ctx.fp8_products_bytes;
  });
}

// cuTensorMapEncodeTiled, a driver function, through the runtime's entry point (troupe links no libcuda).
using encode_tiled_fn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                     const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                     CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
encode_tiled_fn tensor_map_encoder() {
  static const encode_tiled_fn fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    check(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found),
          "linear_fp8 wgmma tma: the driver's cuTensorMapEncodeTiled");
    if (found != cudaDriverEntryPointSuccess || p == nullptr)
      throw std::runtime_error("linear_fp8 wgmma tma: the driver has no cuTensorMapEncodeTiled (TROUPE_FP8_WGMMA_TMA=0)");
    return reinterpret_cast<encode_tiled_fn>(p);
  }();
  return fn;
}

// The tensor map of `rows` rows of `k` codes at `base` (a row every k bytes) in boxes of 128 bytes by box_rows rows,
// 128-byte swizzled as wgmma_desc_k_major_sw128 reads them; rows past the tensor read as zeros.
CUtensorMap codes_map(const void* base, int64_t rows, int64_t k, int box_rows) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(k)};
  const cuuint32_t box[2] = {kF8StageK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides,
                                          box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw std::runtime_error("linear_fp8 wgmma tma: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(r) +
                             ") for " + std::to_string(rows) + " x " + std::to_string(k) + " codes");
  return map;
}

// Where K was split, the splits' f32 partials added in split order, scaled and rounded into out.
template <class T>
void reduce_splits(cuda_context& ctx, int splits, const float* partial, const float* x_scales, const float* w_scales,
                   const T* bias, T* out, int rows, int n_out) {
  if (splits <= 1) return;
  const int64_t elems = static_cast<int64_t>(rows) * n_out;
  fp8_split_reduce_kernel<T><<<static_cast<unsigned>((elems + 255) / 256), 256, 0, ctx.stream>>>(
      partial, splits, x_scales, w_scales, bias, out, elems, n_out);
  check_launch("linear_fp8 wgmma reduce");
}

template <class T, int BN, bool Fast, bool Tma = false>
void launch_wgmma(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int rows, int k,
                  const fp8_device_weight& w, const T* bias, T* out) {
  const int n_out = static_cast<int>(w.weight.dim(0)), total = k / kF8StageK;
  const auto [splits, per_split] = plan_fp8_split(ctx, fp8_wgmma_tiles_of(rows, n_out, BN), total, rows, n_out);
  const int smem = kF8StagesOf<BN> * kF8StageBytes<BN> + 1024;
  const dim3 grid(static_cast<unsigned>((rows + BN - 1) / BN), static_cast<unsigned>((n_out + kF8Outputs - 1) / kF8Outputs),
                  static_cast<unsigned>(splits));
  auto* partial = splits > 1 ? static_cast<float*>(ctx.fp8_products) : nullptr;
  if constexpr (Tma) {
    static_assert(Fast, "linear_fp8 wgmma: the TMA form accumulates fast");
    allow_shared_memory<fp8_wgmma_tma_kernel<T, BN>>(static_cast<size_t>(smem), "linear_fp8 wgmma tma: shared memory");
    const CUtensorMap x_map = codes_map(codes, rows, k, BN), w_map = codes_map(w.weight.data, n_out, k, kF8Outputs);
    fp8_wgmma_tma_kernel<T, BN><<<grid, kF8TmaThreads, smem, ctx.stream>>>(
        x_map, w_map, x_scales, w.scale.as<float>(), bias, partial, out, rows, n_out, total, per_split);
  } else {
    allow_shared_memory<fp8_wgmma_kernel<T, BN, Fast>>(static_cast<size_t>(smem), "linear_fp8 wgmma: shared memory");
    fp8_wgmma_kernel<T, BN, Fast><<<grid, kF8Threads, smem, ctx.stream>>>(
        codes, x_scales, w.weight.as<uint8_t>(), w.scale.as<float>(), bias, partial, out, rows, n_out, k, per_split);
  }
  check_launch("linear_fp8 wgmma");
  reduce_splits(ctx, splits, partial, x_scales, w.scale.as<float>(), bias, out, rows, n_out);
}

// ---- The 4-bit weights' FP8 form, fused (int4_settings().w4a8; off: see its switch for the timings) ----
//
// linear_int4's FP8 form (int4_path::fp8) without its codes in memory: fp8_wgmma_kernel's Fast form where each stage
// brings the weights' 4-bit words (128 outputs x 64 bytes) instead of their codes, and every thread turns 64 of them
// into e4m3 codes in a shared-memory tile laid out as wgmma reads codes (128-byte swizzled): code = e4m3(((q − z) · s)
// / fp8_scale[o]), the codes int4_to_fp8_kernel makes (fp8_activation_code: the IEEE quotient), so that both ways of
// the form give the same products. Thread t converts output t / 2 (its warpgroup's own 64 outputs: a warpgroup barrier
// orders the codes before its wgmma, not a block one), k 64 · (t % 2) of the stage, within one group (groups a
// multiple of 64). The x tile and the words ring through kW4Stages buffers, kW4Stages − 2 loading ahead as in the Fast
// form; the codes through two buffers, the one a stage writes last read by the wgmma two stages before, which the
// wgmma_wait<1> closing the stage before has seen done.
// The conversion goes by table (int4_fp8_codes.cuh): a thread's 64 weights share one output and one group, so their
// codes are 16 at most, one per q. It makes those 16 (with groups a multiple of 128 the two threads of an output share the stage's group and
// make 8 each, exchanged by shuffle), four to a register, and looks each word's 8 nibbles up by byte permutes: ~2
// instructions a weight where the quotient a weight took ~20 (ptxas: ~1,300 a stage a thread against the tensor cores'
// ~1,000 cycles a stage). The same codes, since each is the same expression of the same q.
constexpr int kW4Stages = 4;
constexpr int kW4CodeBytes = kF8Outputs * kF8StageK;  // a stage's weight codes
template <int BN> constexpr int kW4RingBytes = BN * kF8StageK + kF8Outputs * kF8StageK / 2;  // x's tile, the words
template <int BN> constexpr int kW4SmemBytes = kW4Stages * kW4RingBytes<BN> + 2 * kW4CodeBytes;

template <class T, int BN>
__global__ void __launch_bounds__(kF8Threads, 1)
    int4_w4a8_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales, const uint32_t* __restrict__ q,
                     const T* __restrict__ scales, const T* __restrict__ zeros, const float* __restrict__ w_scales,
                     const T* __restrict__ bias, float* __restrict__ partial, T* __restrict__ out, int rows, int n_out,
                     int k, int group, int stages_per_split) {
  extern __shared__ uint8_t w4_smem_raw[];
  uint8_t* smem = w4_smem_raw + ((1024 - (smem_addr(w4_smem_raw) & 1023)) & 1023);
  const int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row0 = blockIdx.x * BN, out0 = blockIdx.y * kF8Outputs;
  const int s_begin = blockIdx.z * stages_per_split;
  const int stages = min(k / kF8StageK - s_begin, stages_per_split);
  const int64_t groups = k / group;

  // The copies, made once: x's rows cr + 32i at chunk cc (as fp8_wgmma_kernel), the words of outputs wr + 64i at
  // chunk wc (16 bytes: 32 of a stage's 128 k).
  constexpr int kXCopies = BN * 8 / kF8Threads;
  const int cr = threadIdx.x / 8, cc = threadIdx.x % 8, wr = threadIdx.x / 4, wc = threadIdx.x % 4;
  const uint8_t* x_src[kXCopies];
  const uint8_t* w_src[2];
  const uint32_t x_valid = row_copies<kXCopies>(xq, row0 + cr, rows, k, 16 * cc, x_src);
  const uint32_t w_valid = row_copies<2, 64>(reinterpret_cast<const uint8_t*>(q), out0 + wr, n_out, k / 2, 16 * wc, w_src);
  const uint32_t ring = smem_addr(smem), codes = ring + kW4Stages * kW4RingBytes<BN>;
  const uint32_t x_dst = ring + cr * 128 + wgmma_swizzled_chunk(cc, cr) * 16;
  const uint32_t w_dst = ring + BN * kF8StageK + wr * 64 + wc * 16;
  auto issue = [&](int s) {  // stage s of this split into ring buffer s % kW4Stages
    const uint32_t b = (s % kW4Stages) * kW4RingBytes<BN>;
    const int64_t k0 = static_cast<int64_t>(s_begin + s) * kF8StageK;
#pragma unroll
    for (int i = 0; i < kXCopies; ++i) cp_async16_to(x_dst + b + i * 32 * 128, x_src[i] + k0, (x_valid >> i) & 1);
#pragma unroll
    for (int i = 0; i < 2; ++i) cp_async16_to(w_dst + b + i * 64 * 64, w_src[i] + k0 / 2, (w_valid >> i) & 1);
  };

  // This thread's conversion: output ol (of the block's 128), k 64h to 64h + 63 of each stage.
  const int ol = threadIdx.x / 2, h = threadIdx.x % 2;
  const int64_t o_global = min(out0 + ol, n_out - 1);
  const float o_scale = w_scales[o_global];
  const T* s_row = scales + o_global * groups;
  const T* z_row = zeros + o_global * groups;
  const bool pair_shares_group = group % kF8StageK == 0;  // the stage's 128 k in one group: uniform over the block
  // This thread's scale and zero of stage s's group (raw T) are loaded two stages before convert(s) needs them, as the
  // words are: at 256 rows (one row tile) each comes from DRAM, and loaded in the stage that used it its latency was
  // in every stage's chain (H100: gate_up ~3 µs a stage at 64 and 256 rows, 0.9 at 4,096 where they are L2 hits). Two
  // pairs of registers, the even stages' and the odd stages' (the loop runs stages in pairs): no copy between them,
  // which would wait for the load.
  auto load_group = [&](int s, T& sv, T& zv) {
    const int64_t gi = (static_cast<int64_t>(s_begin + min(s, stages - 1)) * kF8StageK + 64 * h) / group;
    sv = s_row[gi];
    zv = z_row[gi];
  };
  T s_even, z_even, s_odd, z_odd;
  load_group(0, s_even, z_even);
  load_group(1, s_odd, z_odd);
  auto convert = [&](int s, T& sv, T& zv) {
    const float sc = to_float(sv), z = to_float(zv);
    load_group(s + 2, sv, zv);
    const uint8_t* words = smem + (s % kW4Stages) * kW4RingBytes<BN> + BN * kF8StageK + ol * 64 + 32 * h;
    const uint4 w0 = *reinterpret_cast<const uint4*>(words), w1 = *reinterpret_cast<const uint4*>(words + 16);
    const uint32_t ws[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
    uint8_t* row = smem + kW4Stages * kW4RingBytes<BN> + (s % 2) * kW4CodeBytes + ol * 128;
    // The codes of q = 4r .. 4r + 3 in tab[r], byte q % 4: int4_to_fp8_kernel's expression of each q.
    auto codes_of = [&](int q0) { return int4_fp8_table_word(q0, z, sc, o_scale); };
    uint32_t tab[4];
    if (pair_shares_group) {  // this thread makes q 8h .. 8h + 7, its pair (lane ^ 1, the other h) the rest
      const uint32_t mine0 = codes_of(8 * h), mine1 = codes_of(8 * h + 4);
      const uint32_t other0 = __shfl_xor_sync(0xffffffffu, mine0, 1), other1 = __shfl_xor_sync(0xffffffffu, mine1, 1);
      tab[0] = h ? other0 : mine0, tab[1] = h ? other1 : mine1;
      tab[2] = h ? mine0 : other0, tab[3] = h ? mine1 : other1;
    } else {
#pragma unroll
      for (int r = 0; r < 4; ++r) tab[r] = codes_of(4 * r);
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) {  // 16 codes a chunk: words 2c and 2c + 1
      const uint2 a = int4_word_fp8_codes(ws[2 * c], tab), b = int4_word_fp8_codes(ws[2 * c + 1], tab);
      *reinterpret_cast<uint4*>(row + wgmma_swizzled_chunk(4 * h + c, ol) * 16) = make_uint4(a.x, a.y, b.x, b.y);
    }
  };

  constexpr int kAhead = kW4Stages - 2;
  float acc[BN / 2];
  start_stages<BN, kAhead>(acc, stages, issue);
  auto stage = [&](int s, T& sv, T& zv) {
    cp_async_wait<kAhead - 1>();  // stage s landed; every warpgroup's group of stage s - 2 is done
    fence_proxy_async_shared();
    __syncthreads();
    if (s + kAhead < stages) issue(s + kAhead);
    cp_async_commit();
    convert(s, sv, zv);
    fence_proxy_async_shared();  // the codes, written by the threads, seen by the tensor cores
    asm volatile("bar.sync %0, 128;\n" ::"r"(wg + 1) : "memory");  // this warpgroup's 64 outputs' codes are in
    const uint32_t b = (s % kW4Stages) * kW4RingBytes<BN>, cb = codes + (s % 2) * kW4CodeBytes;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      wgmma_ss_e4m3<BN, true>(acc, wgmma_desc_k_major_sw128(cb + wg * 64 * 128 + 32 * kk),
                              wgmma_desc_k_major_sw128(ring + b + 32 * kk));
    wgmma_commit();
    wgmma_wait<1>();
  };
  for (int s = 0; s < stages; s += 2) {
    stage(s, s_even, z_even);
    if (s + 1 < stages) stage(s + 1, s_odd, z_odd);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) wgmma_pin(acc[i]);
  store_wgmma_tile<T, BN>(acc, out0 + wg * 64 + warp * 16 + g, row0 + 2 * t, x_scales, w_scales, bias, partial, out, rows,
                          n_out);
}

template <class T, int BN>
void launch_w4a8(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int rows, int k,
                 const int4_device_weight& w, const T* bias, T* out) {
  const int n_out = static_cast<int>(w.qweight.dim(0)), total = k / kF8StageK;
  const auto [splits, per_split] = plan_fp8_split(ctx, fp8_wgmma_tiles_of(rows, n_out, BN), total, rows, n_out);
  const int smem = kW4SmemBytes<BN> + 1024;
  const dim3 grid(static_cast<unsigned>((rows + BN - 1) / BN), static_cast<unsigned>((n_out + kF8Outputs - 1) / kF8Outputs),
                  static_cast<unsigned>(splits));
  auto* partial = splits > 1 ? static_cast<float*>(ctx.fp8_products) : nullptr;
  const auto* w_scales = static_cast<const float*>(w.fp8_scale.data);
  allow_shared_memory<int4_w4a8_kernel<T, BN>>(static_cast<size_t>(smem), "linear_int4 w4a8: shared memory");
  int4_w4a8_kernel<T, BN><<<grid, kF8Threads, smem, ctx.stream>>>(
      codes, x_scales, static_cast<const uint32_t*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(), w_scales, bias,
      partial, out, rows, n_out, k, w.group_size, per_split);
  check_launch("linear_int4 w4a8");
  reduce_splits(ctx, splits, partial, x_scales, w_scales, bias, out, rows, n_out);
}

} // namespace

bool linear_int4_w4a8_takes(int64_t rows, int64_t k, const int4_device_weight& w, dtype out) {
  static_assert(kF8StageK == 128, "int4_w4a8_shape takes K in stages of 128");
  return int4_w4a8_shape({rows, k, w.group_size, out == dtype::f32, true}) && !w.fp8_scale.empty() &&
         reinterpret_cast<uintptr_t>(w.qweight.data) % 16 == 0;
}

bool launch_linear_int4_w4a8(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int64_t rows, int64_t k,
                             const int4_device_weight& w, const tensor& bias, const tensor& out) {
  if (!linear_int4_w4a8_takes(rows, k, w, out.type) || reinterpret_cast<uintptr_t>(codes) % 16 != 0) return false;
  dispatch_float(out.type, "linear_int4 w4a8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, float>) {
      const T* b = bias.empty() ? nullptr : bias.as<T>();
      const int r = static_cast<int>(rows), kk = static_cast<int>(k);
      if (rows <= 64) launch_w4a8<T, 64>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
      else if (rows <= 128) launch_w4a8<T, 128>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
      else launch_w4a8<T, 256>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
    }
  });
  return true;
}

bool linear_fp8_wgmma_chosen(const cuda_context& ctx, int64_t rows, int64_t n_out, int64_t k) {
  return fp8_wgmma_chosen(rows, n_out, k, ctx.sm_count, wgmma_switches());
}

void prepare_linear_fp8_wgmma(cuda_context& ctx) {
  if (ctx.fp8_products_bytes >= fp8_split_scratch_bytes(ctx)) return;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(ctx.stream, &capturing), "linear_fp8 wgmma");
  if (capturing == cudaStreamCaptureStatusNone)
    grow_scratch(ctx, ctx.fp8_products, ctx.fp8_products_bytes, fp8_split_scratch_bytes(ctx), "linear_fp8 wgmma");
}

void launch_linear_fp8_wgmma(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int64_t rows, int64_t k,
                             const fp8_device_weight& w, const tensor& bias, const tensor& out) {
  dispatch_float(out.type, "linear_fp8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* b = bias.empty() ? nullptr : bias.as<T>();
    const int r = static_cast<int>(rows), kk = static_cast<int>(k);
    const int64_t tile_rows = fp8_wgmma_tile_rows(rows, wgmma_switches());
    if (!gemm_settings().fp8_fast_accum) {  // promoting: 64- or 128-row tiles
      if (tile_rows == 64) launch_wgmma<T, 64, false>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
      else launch_wgmma<T, 128, false>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
    } else if (fp8_settings().wgmma_tma) {  // the warp-specialized form, loads by the TMA
      if (tile_rows == 64) launch_wgmma<T, 64, true, true>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
      else if (tile_rows == 128) launch_wgmma<T, 128, true, true>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
      else launch_wgmma<T, 256, true, true>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
    } else if (tile_rows == 64) {
      launch_wgmma<T, 64, true>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
    } else if (tile_rows == 128) {
      launch_wgmma<T, 128, true>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
    } else {
      launch_wgmma<T, 256, true>(ctx, codes, x_scales, r, kk, w, b, out.as<T>());
    }
  });
}

} // namespace troupe::cuda
