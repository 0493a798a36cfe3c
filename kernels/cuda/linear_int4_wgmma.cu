// ops::linear_int4 for large batches on Hopper's warpgroup MMA (wgmma, sm_90a): int4_wgmma_kernel, in the spirit of
// Machete (the 4-bit weights are wgmma's A operand, dequantized in registers; the activations its B operand, from
// shared memory). linear_int4.cu's launch_linear_int4 sends it the bf16 / f16 products it takes
// (int4_settings().wgmma); the dequantize-then-cuBLAS path it replaces wrote every weight as bf16 to memory and read
// it back (4.5 bytes a weight against 2 for a bf16 weight: 0.249 ms for gate_up at 256 rows on an H100, bf16's GEMM
// 0.117).
//
// out[r][o] = Σ_k x[r][k] · w[o][k] + bias[o]: D = A · B with A = the weights (M = outputs), B = xᵀ (N = rows), so x's
// rows, K-contiguous, are B's K-major columns as they lie in memory.
//
// A block makes kWgOutputs (128) outputs for BN rows; its two warpgroups 64 outputs each, sharing x's tile. Each stage
// of 64 k brings the x tile (BN rows x 128 bytes, 128-byte swizzled, wgmma.cuh) and the block's packed weights
// (128 outputs x 32 bytes) into shared memory by cp.async, kWgAhead loading ahead. Each thread then dequantizes its A
// fragments of the stage's four k16 slices: for outputs g and g + 8 of its warp, weights 2t, 2t + 1 (and 8 further)
// of each packed word, which this backend's nibble order (int4_pair_nibble) puts in nibbles t and t + 4 — one
// shift and one lop3 a pair (magic_pair), then q − z exactly and the scale rounding once to T, as the dequantizing
// path's weights (and the mma.sync GEMM's) are. Four wgmma m64nBNk16 follow; a warpgroup waits for them before the
// next stage's barrier, so that a buffer is free before it reloads (or, with Overlap, for the stage before's only,
// dequantizing into a second set of fragments meanwhile). Where the output tiles are fewer than the blocks the GPU
// holds at once, K is split over blockIdx.z (plan_int4_split).
//
// H100, 2026-12-06: first 314 TFLOP/s at 4,096 rows (407 with 256-row tiles) against dequantize + cuBLAS's 697, bound
// by the instructions a stage (ncu: tensor pipe 26% busy, issue 52%); with the stage's bookkeeping made once (no
// division or branch a stage) and Overlap, 554 at 4,096 rows and gate_up at 256 rows in 0.165 ms against 0.249. The
// default for 49 to 1,024 rows (int4_switches::wgmma; kernels/cuda/NOTES.md, seventeenth and eighteenth sessions).

#include <bit>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/int4_dequant.cuh"
#include "kernels/cuda/launchers.hpp"
#include "kernels/cuda/wgmma.cuh"

namespace troupe::cuda {
namespace {

constexpr int kWgOutputs = 128;  // a block's outputs: 64 a warpgroup
constexpr int kWgStageK = 64;    // k a stage: 128 bytes of each x row, the swizzle's width
// Stages in shared memory: 4, three loading ahead of the one the tensor cores read; with Overlap 5, three loading
// ahead, one read, and the one before it still read by the wgmma that a warpgroup leaves running into the next stage.
template <bool Overlap> constexpr int kWgStages = Overlap ? 5 : 4;
constexpr int kWgAhead = 3;
constexpr int kWgThreads = 256;  // two warpgroups
// Blocks an SM, by registers: BN / 2 accumulators a thread, and with Overlap a second set of A fragments (ptxas
// serializes the wgmma where the registers cannot hold both sets: two blocks of 128-row tiles could not).
constexpr int wg_blocks_per_sm(int bn, bool overlap) { return overlap ? (bn == 64 ? 2 : 1) : bn == 256 ? 1 : bn == 128 ? 2 : 3; }
template <int BN, bool Overlap> constexpr int kWgBlocksPerSm = wg_blocks_per_sm(BN, Overlap);
// The rows of the tiles a product of `rows` rows takes (launch_linear_int4_wgmma).
int wg_tile_rows(int64_t rows) { return rows <= 64 ? 64 : rows <= 128 || int4_settings().wgmma_rows != 256 ? 128 : 256; }
// Splits of K at least this many stages each (plan_int4_split's min_stages).
constexpr int kWgMinSplitStages = 8;

// A stage in shared memory: x's tile [BN rows][128 bytes] (a multiple of 1024 bytes, so every stage's tile stays
// 1024-aligned), then the packed weights [128 outputs][2 chunks of 16 bytes], chunk c of output o at
// c ^ ((o / 4) % 2): lanes g = 0..7 of a warp read outputs 16w + g at one chunk without bank conflicts.
template <int BN> constexpr int kWgStageBytes = BN * 128 + kWgOutputs * 32;
__device__ __forceinline__ int weight_chunk(int c, int o) { return c ^ ((o >> 2) & 1); }

// The weights 2t, 2t + 1 of packed word w (nibbles t and t + 4 in this backend's order) as the pair (q − z)·s,
// rounded once to T: zm = 128 + z (or 1024 + z) and s in both halves.
template <class T> __device__ __forceinline__ uint32_t dequantize_pair(uint32_t w, int t, uint32_t zm, uint32_t s) {
  static_assert(int4_pair_nibble(0) == 0 && int4_pair_nibble(1) == 4 && int4_pair_nibble(6) == 3 && int4_pair_nibble(7) == 7,
                "dequantize_pair: weights 2t and 2t + 1 sit in nibbles t and t + 4");
  return mul2<T>(sub2<T>(magic_pair<T>(w, t), zm), s);
}

// The scales and zeros (raw T) of a thread's two outputs for one stage: [0] k of the stage's first 32, [1] its last 32
// (two groups where the group is 32).
template <class T> struct wg_scales {
  T sa[2], sb[2], za[2], zb[2];
};

// Overlap (int4_settings().wgmma_overlap): a warpgroup waits only for the wgmma of the stage before (wgmma_wait<1>),
// dequantizing stage s + 1 into a second set of A fragments while stage s's run.
template <class T, int BN, bool Overlap>
__global__ void __launch_bounds__(kWgThreads, kWgBlocksPerSm<BN, Overlap>)
    int4_wgmma_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                      const T* __restrict__ zeros, float* __restrict__ partial, const T* __restrict__ bias,
                      T* __restrict__ out, int rows, int n_out, int k, int group_shift, int stages_per_split) {
  extern __shared__ uint8_t wg_smem_raw[];
  // The tiles need 1024-byte alignment (the swizzle works on address bits 4-9); the launch adds 1 KiB for it.
  uint8_t* smem = wg_smem_raw + ((1024 - (smem_addr(wg_smem_raw) & 1023)) & 1023);
  const int wg = threadIdx.x / 128, warp = threadIdx.x % 128 / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int out0 = blockIdx.x * kWgOutputs, row0 = blockIdx.y * BN;
  const int chunks = k / 32, groups = k >> group_shift;
  const int s_begin = blockIdx.z * stages_per_split;
  const int stages = min(k / kWgStageK - s_begin, stages_per_split);
  // This thread's outputs within the block, and in the layer (clamped: an output past the layer reads the last row's
  // scales; its sums are never written).
  const int oa = wg * 64 + warp * 16 + g, ob = oa + 8;
  const int64_t ga = min(out0 + oa, n_out - 1), gb = min(out0 + ob, n_out - 1);

  constexpr int S = kWgStages<Overlap>;
  // What a stage's copies and scale loads need, made once: this thread's x copies are rows xr + 32i of the tile at
  // chunk xc (the swizzle depends on the row mod 8 only, so copy i lies 32i rows past copy 0), its weight copy chunk wc
  // of output wo. Rows and outputs past the product are clamped, their copies zero-filled: no branch a stage.
  constexpr int kXCopies = BN * 8 / kWgThreads;
  const int xr = threadIdx.x / 8, xc = threadIdx.x % 8, wo = threadIdx.x / 2, wc = threadIdx.x % 2;
  const T* x_src[kXCopies];
  uint32_t x_valid = 0;  // bit i: copy i's row is in the product
#pragma unroll
  for (int i = 0; i < kXCopies; ++i) {
    const int r = row0 + xr + 32 * i;
    x_src[i] = x + static_cast<int64_t>(min(r, rows - 1)) * k + 8 * xc;
    x_valid |= static_cast<uint32_t>(r < rows) << i;
  }
  const uint32_t x_dst = smem_addr(smem) + xr * 128 + wgmma_swizzled_chunk(xc, xr) * 16;
  const uint4* w_src = q + static_cast<int64_t>(min(out0 + wo, n_out - 1)) * chunks + wc;
  const bool w_valid = out0 + wo < n_out;
  const uint32_t w_dst = smem_addr(smem) + BN * 128 + (wo * 2 + weight_chunk(wc, wo)) * 16;
  auto issue = [&](int s) {  // stage s of this split into buffer s % S
    const uint32_t stage = (s % S) * kWgStageBytes<BN>;
    const int k0 = (s_begin + s) * kWgStageK;
#pragma unroll
    for (int i = 0; i < kXCopies; ++i) cp_async16_to(x_dst + stage + i * 32 * 128, x_src[i] + k0, (x_valid >> i) & 1);
    cp_async16_to(w_dst + stage, w_src + k0 / 32, w_valid);
  };
  const T* s_a = scales + ga * groups;
  const T* s_b = scales + gb * groups;
  const T* z_a = zeros + ga * groups;
  const T* z_b = zeros + gb * groups;
  auto scales_of = [&](int s) {
    wg_scales<T> v;
    const int k0 = (s_begin + min(s, stages - 1)) * kWgStageK;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gi = (k0 + 32 * h) >> group_shift;
      v.sa[h] = s_a[gi];
      v.sb[h] = s_b[gi];
      v.za[h] = z_a[gi];
      v.zb[h] = z_b[gi];
    }
    return v;
  };

  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
  pdl_wait();  // launched plainly (a no-op); x is the kernel before's output
#pragma unroll
  for (int i = 0; i < kWgAhead; ++i) {
    if (i < stages) issue(i);
    cp_async_commit();
  }
  wg_scales<T> next = scales_of(0);
  auto step = [&](int s, uint32_t(&frag)[4][4]) {
    // Stage s landed (this thread's copies), visible to the tensor cores' reads (the async proxy), for every thread;
    // every warpgroup's wgmma of the buffer that reloads now, stage s + kWgAhead's, are done (they waited for them).
    cp_async_wait<kWgAhead - 1>();
    fence_proxy_async_shared();
    __syncthreads();
    if (s + kWgAhead < stages) issue(s + kWgAhead);
    cp_async_commit();
    const wg_scales<T> cur = next;
    next = scales_of(s + 1);
    // A step past the last stage reads the last stage's buffer: one that holds finite values, where a buffer never
    // loaded (3 stages and 5 buffers) could hold NaNs, which its zero fragments would not cancel.
    const uint8_t* stage = smem + (min(s, stages - 1) % S) * kWgStageBytes<BN>;
    const uint4* w_tile = reinterpret_cast<const uint4*>(stage + BN * 128);
    const uint4 a0 = w_tile[oa * 2 + weight_chunk(0, oa)], a1 = w_tile[oa * 2 + weight_chunk(1, oa)];
    const uint4 b0 = w_tile[ob * 2 + weight_chunk(0, ob)], b1 = w_tile[ob * 2 + weight_chunk(1, ob)];
    const uint32_t wa[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};  // word j: k = 8j .. 8j + 7 of the stage
    const uint32_t wb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
    // Past the last stage (Overlap runs stages in pairs) the fragments are zeros, scale 0: a select, not a branch,
    // which would make ptxas serialize the wgmma.
    const bool live = s < stages;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t zma = magic_zero<T>(cur.za[h]), zmb = magic_zero<T>(cur.zb[h]);
      const uint32_t sa = live ? splat2(cur.sa[h]) : 0u, sb = live ? splat2(cur.sb[h]) : 0u;
#pragma unroll
      for (int kk = 2 * h; kk < 2 * h + 2; ++kk) {  // slice kk: words 2kk (k 2t, 2t + 1) and 2kk + 1 (k 8 + 2t, ...)
        frag[kk][0] = dequantize_pair<T>(wa[2 * kk], t, zma, sa);
        frag[kk][1] = dequantize_pair<T>(wb[2 * kk], t, zmb, sb);
        frag[kk][2] = dequantize_pair<T>(wa[2 * kk + 1], t, zma, sa);
        frag[kk][3] = dequantize_pair<T>(wb[2 * kk + 1], t, zmb, sb);
      }
    }
    // The wgmma's inputs all made before the fence: with a stage's wgmma still running (Overlap), ptxas serializes
    // the wgmma if an ordinary instruction defines one of their registers after it.
    uint64_t desc[4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      desc[kk] = wgmma_desc_k_major_sw128(smem_addr(stage) + 32 * kk);
      wgmma_pin(desc[kk]);
#pragma unroll
      for (int i = 0; i < 4; ++i) wgmma_pin(frag[kk][i]);
    }
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma_rs<T, BN>(acc, frag[kk], desc[kk]);
    wgmma_commit();
    // Without Overlap every stage's wgmma are done here; with it, all but this stage's (frag must then stay untouched
    // until the next stage's wait: the other set of fragments takes that stage).
    if constexpr (Overlap) wgmma_wait<1>();
    else wgmma_wait<0>();
  };
  if constexpr (Overlap) {
    uint32_t even[4][4], odd[4][4];
    for (int s = 0; s < stages; s += 2) {
      step(s, even);
      step(s + 1, odd);  // with stages odd, a last step of zeros
    }
  } else {
    uint32_t frag[4][4];
    for (int s = 0; s < stages; ++s) step(s, frag);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) wgmma_pin(acc[i]);
  // acc[4i + e]: output oa (e < 2) or ob, row 8i + 2t + e % 2 of the tile.
#pragma unroll
  for (int i = 0; i < BN / 8; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int o = out0 + (e < 2 ? oa : ob), r = row0 + 8 * i + 2 * t + (e & 1);
      if (r >= rows || o >= n_out) continue;
      if (partial) partial[(static_cast<int64_t>(blockIdx.z) * rows + r) * n_out + o] = acc[4 * i + e];
      else out[static_cast<int64_t>(r) * n_out + o] = from_float<T>(plus_bias(acc[4 * i + e], bias, o));
    }
}

template <class T, int BN, bool Overlap>
void launch_wgmma(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out,
                  int rows) {
  const int n_out = static_cast<int>(w.qweight.dim(0)), k = static_cast<int>(x.dim(1)), total = k / kWgStageK;
  const int tiles = (n_out + kWgOutputs - 1) / kWgOutputs * ((rows + BN - 1) / BN);
  // Splits of K where the tiles are fewer than the blocks the SMs hold, each at least 8 stages (512 k).
  const auto [splits, per_split] =
      plan_int4_split(ctx, tiles, total, kWgBlocksPerSm<BN, Overlap> * ctx.sm_count, kWgMinSplitStages, rows, n_out);
  const int smem = kWgStages<Overlap> * kWgStageBytes<BN> + 1024;
  allow_shared_memory<int4_wgmma_kernel<T, BN, Overlap>>(static_cast<size_t>(smem), "linear_int4 wgmma: shared memory");
  const dim3 grid(static_cast<unsigned>((n_out + kWgOutputs - 1) / kWgOutputs), static_cast<unsigned>((rows + BN - 1) / BN),
                  static_cast<unsigned>(splits));
  const T* b = bias.empty() ? nullptr : bias.as<T>();
  int4_wgmma_kernel<T, BN, Overlap><<<grid, kWgThreads, smem, ctx.stream>>>(
      x.as<T>(), static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(),
      splits > 1 ? static_cast<float*>(ctx.int4_scratch) : nullptr, b, out.as<T>(), rows, n_out, k,
      std::countr_zero(static_cast<unsigned>(w.group_size)), per_split);
  check_launch("linear_int4 wgmma");
  finish_int4_split(ctx, splits, b, out.as<T>(), rows, n_out);
}

} // namespace

void launch_linear_int4_wgmma(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias,
                              const tensor& out) {
  const int rows = static_cast<int>(x.dim(0));
  auto launch = [&](auto tag, auto overlap) {
    using T = typename decltype(tag)::type;
    constexpr bool O = decltype(overlap)::value;
    const int bn = wg_tile_rows(rows);
    if (bn == 64) launch_wgmma<T, 64, O>(ctx, x, w, bias, out, rows);
    else if (bn == 128) launch_wgmma<T, 128, O>(ctx, x, w, bias, out, rows);
    else launch_wgmma<T, 256, O>(ctx, x, w, bias, out, rows);
  };
  auto typed = [&](auto overlap) {
    if (x.type == dtype::bf16) launch(std::type_identity<__nv_bfloat16>{}, overlap);
    else launch(std::type_identity<__half>{}, overlap);
  };
  if (int4_settings().wgmma_overlap) typed(std::true_type{});
  else typed(std::false_type{});
}

bool linear_int4_wgmma_splits(const cuda_context& ctx, int64_t rows, int64_t n_out, int64_t k) {
  const int bn = wg_tile_rows(rows);
  const int64_t tiles = (n_out + kWgOutputs - 1) / kWgOutputs * ((rows + bn - 1) / bn);
  const int64_t wave = static_cast<int64_t>(wg_blocks_per_sm(bn, int4_settings().wgmma_overlap)) * ctx.sm_count;
  return tiles < wave && k / kWgStageK / kWgMinSplitStages >= 2;
}

} // namespace troupe::cuda
