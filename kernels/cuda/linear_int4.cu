// ops::linear_int4: 4-bit weights in troupe's layout (kernels/ops.hpp, int4_device_weight).
//
// Five paths, by activation type and rows (the choice: kernels/int4_path_rules.hpp, which CI tests):
// - bf16 / f16, up to kInt4DecodeRows (32) rows (decode, bandwidth-bound): int4_mma_kernel streams every packed weight once
//   and runs the products on the tensor cores (mma.sync m16n8k16), in the spirit of Marlin: the weights are the
//   A operand (16 output features), x the B operand (8 rows per tile, zero-padded). A lane's 16-byte load holds 32
//   weights of one output; it turns each word into bf16/f16 pairs with one mask-and-or (the nibble becomes the
//   mantissa of 128 + q, or 1024 + q in f16), one exact subtraction of 128 + zero and one multiplication by the
//   scale, which rounds once, as the dequantizing path does. The pairs come out as nibbles (m, m + 4) of a word,
//   which this backend's nibble order (int4_pair_nibble, ops::int4_nibble: the model packs words so) makes weights
//   2m and 2m + 1, x's pairs as they lie in memory: its B fragments need no byte-permutes (the integer pipe bounds
//   these kernels). A block's 8 warps split K and add their tiles in shared memory. By default the same
//   sums run as int4_ring_kernel (its loop unrolled over the loads in flight); up to 8 rows on layers with outputs
//   enough (gate_up), as int4_wide_kernel (two tiles a block, x loaded once for both); elsewhere where the layer has
//   more outputs than inputs at more than 8 rows, as int4_mma_async_kernel (the weights staged through shared memory
//   by cp.async): launch_mma.
// - f32, up to kInt4CudaCoreRows rows: the CUDA-core kernel (f32 is for checks against references, not for speed).
// - 17 to 48 rows (int4_settings().gemm, by default; K a multiple of 128): int4_gemm_kernel, a tensor-core GEMM
//   that stages each block's weights and x tile in shared memory once.
// - 49 to 1,024 rows (int4_settings().wgmma and wgmma_max_rows; K a multiple of 64, groups a power of two):
//   int4_wgmma_kernel, the warpgroup-MMA GEMM (linear_int4_wgmma.cu); more rows (prefill) and what it does not
//   take: the weight is dequantized into a scratch matrix (one vector store per packed word) and the cuBLASLt GEMM
//   runs on it.
// A fused form for decode steps of up to 8 rows, bit for bit the two ops it replaces: linear_int4_silu (gate/up and
// silu_and_mul: int4_wide_kernel pairing a gate tile with the up tile of the same features; the default).
//
// troupe_gpu_check's op table compares every path with the CPU twin (odd rows, output features and K, groups of
// 32 / 64 / 128); its timings print them at Qwen2.5-7B shapes.

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/int4_dequant.cuh"
#include "kernels/cuda/int4_fp8_codes.cuh"
#include "kernels/cuda/launchers.hpp"
#include "kernels/cuda/mma.cuh"
#include "kernels/int4_path_rules.hpp"

namespace troupe::cuda {
namespace {

constexpr int kWarps = 8;  // warps per block of the fused kernels
// The decode kernels take up to kInt4DecodeRows (32) rows (kernels/int4_path_rules.hpp). H200, first version: at 64
// rows (0.253 ms, gate_up) the tensor-core kernel lost to dequantize + GEMM (~0.21 ms); at 32 rows it won (0.124
// against 0.206).

// What a lane reads for one block of K: 32 weights of each of its two outputs, with their scales and zeros.
template <class T> struct int4_stage {
  uint4 wa, wb;
  T sa, sb, za, zb;
};
// The same in the lean form (int4_settings().lean): the scales' and zeros' bits each in a 32-bit register. The ring
// kernel's SASS packs int4_stage's four 16-bit values two to a register, and every step's copy of a stage moves and
// unpacks them: 12 PRMTs a step on the integer pipe, the kernels' bound.
struct int4_lean_stage {
  uint4 wa, wb;
  uint32_t sa, sb, za, zb;
};
// A stage's scale as f32, from either form (magic_zero takes its zero either way); the same values.
template <class T> __device__ __forceinline__ float stage_scale(T s) { return to_float(s); }
template <class T> __device__ __forceinline__ float stage_scale(uint32_t bits) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  else return __uint_as_float(bits << 16);
}
// x's 32 zeros for a lane past K or past the rows, in the lean form: its x loads then read here instead of being
// predicated, and no register is zeroed before each (CS2R, 6-8 a step).
__device__ uint4 kZeroX[4];

// A lane's stage at chunk c of K (in group gi) for one tile: outputs row_a and row_b's 32 weights, scales and zeros. An
// output past the layer's comes as row 0 (the caller's row_a / row_b), whose sums nobody writes: loading it costs
// nothing where the layer's outputs fill whole tiles, where the branches around the loads and the zeroing of the stage
// cost the integer pipe (the kernels' bound) ~10 instructions every step.
// Stage int4_stage<T> or int4_lean_stage (its scales' and zeros' 16 bits zero-extended into 32-bit registers).
template <class T, class Stage>
__device__ __forceinline__ void load_stage(Stage& st, const uint4* __restrict__ q, const T* __restrict__ scales,
                                           const T* __restrict__ zeros, int64_t row_a, int64_t row_b, int chunks,
                                           int groups, int c, int gi) {
  using element = std::conditional_t<std::is_same_v<Stage, int4_lean_stage>, uint16_t, T>;
  const element* __restrict__ s = reinterpret_cast<const element*>(scales);
  const element* __restrict__ z = reinterpret_cast<const element*>(zeros);
  st.wa = load_streaming(q + row_a * chunks + c), st.sa = s[row_a * groups + gi], st.za = z[row_a * groups + gi];
  st.wb = load_streaming(q + row_b * chunks + c), st.sb = s[row_b * groups + gi], st.zb = z[row_b * groups + gi];
}

// One block makes 16 output features (n0 = 16·blockIdx.x) for up to 8·NT rows of x. K is cut in blocks of 128
// (4 lanes × 32 weights per output); warp w takes blocks w, w + 8, ... Lane (g, t) = (lane / 4, lane % 4) loads
// outputs n0 + g and n0 + g + 8 at k = 128·b + 32t .. + 31, and x's rows 8·tile + g at the same k. Each warp
// keeps kAhead blocks of weights, scales and zeros in flight while it computes one: a block's math is short,
// and without this every block would wait a full trip to memory (H200: 1.1 TB/s → see the timings).
constexpr int kAhead = 3;
// Twice as many lost (H100, 2026-12-05, ms at one row, 3 / 6 blocks: gate_up 0.047 / 0.052, down 0.030 / 0.030, q/k/v
// 0.012 / 0.013; one request 3.33 / 3.35 ms a token).

// One warp's share of one block of K (chunk c of 32 weights a lane, `live` false past K): cur's weights of
// outputs n0 + g and n0 + g + 8 dequantized to T, times x's rows 8·tile + g at the same k, added into acc.
// Stage int4_lean_stage (the lean form; scales after the sum): x read from kZeroX where the rows or K end.
template <class T, int NT, bool ScaleAfter, bool SkipOne = false, class Stage = int4_stage<T>>
__device__ __forceinline__ void int4_mma_step(float (&acc)[NT][4], const Stage& cur, const T* __restrict__ x,
                                              int rows, int k, int c, bool live, int g) {
  constexpr bool lean = std::is_same_v<Stage, int4_lean_stage>;
  static_assert(!lean || (ScaleAfter && SkipOne), "the lean form is the ring kernel's");
  const uint32_t za = magic_zero<T>(cur.za);
  const uint32_t zb = magic_zero<T>(cur.zb);
  uint32_t sa = 0, sb = 0;
  if constexpr (!lean) {
    const uint32_t one = splat2(from_float<T>(1.0f));
    sa = ScaleAfter ? one : splat2(cur.sa), sb = ScaleAfter ? one : splat2(cur.sb);
  }
  float block_acc[NT][4];
  zero_tiles(block_acc);
  float (&sums)[NT][4] = ScaleAfter ? block_acc : acc;
  const uint32_t words_a[4] = {cur.wa.x, cur.wa.y, cur.wa.z, cur.wa.w};
  const uint32_t words_b[4] = {cur.wb.x, cur.wb.y, cur.wb.z, cur.wb.w};
#pragma unroll
  for (int nt = 0; nt < NT; nt += 2) {
    // x for two tiles at once (8 loads in flight), then the weights, then the products.
    uint4 xv[2][4];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = (nt + h) * 8 + g;
      const bool in = nt + h < NT && live && r < rows;
      if constexpr (lean) {
        const uint4* __restrict__ from =
            in ? reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * k + c * 32) : kZeroX;
#pragma unroll
        for (int i = 0; i < 4; ++i) xv[h][i] = from[i];
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
          xv[h][i] = in ? *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * k + c * 32 + i * 8)
                        : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t da[4], db[4];
      if constexpr (ScaleAfter && SkipOne) {  // the ring kernel: no multiplication by one
        dequantize_word_unscaled<T>(words_a[i], za, da);
        dequantize_word_unscaled<T>(words_b[i], zb, db);
      } else {
        dequantize_word<T>(words_a[i], za, sa, da);
        dequantize_word<T>(words_b[i], zb, sb, db);
      }
      const uint32_t a0[4] = {da[0], db[0], da[1], db[1]};  // word i's weights 0,1 | 2,3 (nibbles 0,4 | 1,5)
      const uint32_t a1[4] = {da[2], db[2], da[3], db[3]};  // weights 4,5 | 6,7 (nibbles 2,6 | 3,7)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (nt + h >= NT) break;
        const uint4 v = xv[h][i];
        // x's 8 values as the pairs the weights come in (int4_pair_nibble): (x0, x1), (x2, x3), (x4, x5), (x6, x7).
        mma16816<T>(sums[nt + h], a0, v.x, v.y);
        mma16816<T>(sums[nt + h], a1, v.z, v.w);
      }
    }
  }
  if constexpr (ScaleAfter) {
    const float fa = stage_scale<T>(cur.sa), fb = stage_scale<T>(cur.sb);  // d[0..1] output g's, d[2..3] g + 8's
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      acc[nt][0] += fa * block_acc[nt][0];
      acc[nt][1] += fa * block_acc[nt][1];
      acc[nt][2] += fb * block_acc[nt][2];
      acc[nt][3] += fb * block_acc[nt][3];
    }
  }
}

// ScaleAfter (groups a multiple of 128, so a warp's block of K lies in one group of each output): the tensor
// cores sum (q − z)·x exactly, and the scale multiplies the block's fp32 sums, saving one multiplication per
// weight pair; otherwise each weight is scaled (rounded to T) before the product.
template <class T, int NT, bool ScaleAfter>
__global__ void __launch_bounds__(kWarps * 32)
    int4_mma_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                    const T* __restrict__ zeros, const T* __restrict__ bias, T* __restrict__ out, int rows, int n_out,
                    int k, int group) {
  __shared__ float partial[kWarps][16][NT * 8 + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 16;
  const int chunks = k / 32, groups = k / group, blocks = (chunks + 3) / 4;
  const int out_a = n0 + g, out_b = n0 + g + 8;
  const bool has_a = out_a < n_out, has_b = out_b < n_out;
  const int64_t row_a = static_cast<int64_t>(has_a ? out_a : 0), row_b = static_cast<int64_t>(has_b ? out_b : 0);
  float acc[NT][4];
  zero_tiles(acc);

  // Block b's stage for this lane; a lane past K (or past the outputs) gets zero weights and scales.
  auto load = [&](int b) {
    int4_stage<T> st{};
    const int c = b * 4 + t;
    if (b < blocks && c < chunks) {
      const int gi = c * 32 / group;
      // load_stage's two lines, written out: through the helper this kernel's machine code changes (its rolled ring).
      if (has_a) st.wa = load_streaming(q + row_a * chunks + c), st.sa = scales[row_a * groups + gi], st.za = zeros[row_a * groups + gi];
      if (has_b) st.wb = load_streaming(q + row_b * chunks + c), st.sb = scales[row_b * groups + gi], st.zb = zeros[row_b * groups + gi];
    }
    return st;
  };
  int4_stage<T> ahead[kAhead];
#pragma unroll
  for (int i = 0; i < kAhead; ++i) ahead[i] = load(warp + i * kWarps);
  pdl_wait();  // the weights do not depend on the kernel before; x does
  for (int b = warp; b < blocks; b += kWarps) {
    const int4_stage<T> cur = ahead[0];
#pragma unroll
    for (int i = 0; i + 1 < kAhead; ++i) ahead[i] = ahead[i + 1];
    ahead[kAhead - 1] = load(b + kAhead * kWarps);
    const int c = b * 4 + t;
    int4_mma_step<T, NT, ScaleAfter>(acc, cur, x, rows, k, c, c < chunks, g);
  }
  reduce_tile_outputs<T, NT, kWarps>(partial, acc, n0, rows, n_out, out,
                                 [&](float sum, int, int j) { return plus_bias(sum, bias, j); });
}

// int4_ring_kernel's sums: each warp's accumulators for block blockIdx.x's 16 outputs (reduce_tile_outputs adds them).
// Lean (int4_settings().lean; one row tile, scales after the sum): int4_lean_stage, x from kZeroX past the rows or K,
// and each slot's step made before its next load, not on a copy of it (24 register moves a step in the SASS).
template <class T, int NT, bool ScaleAfter, int Warps, int Ahead, bool Lean = false>
__device__ __forceinline__ void int4_ring_sums(float (&acc)[NT][4], const T* __restrict__ x, const uint4* __restrict__ q,
                                               const T* __restrict__ scales, const T* __restrict__ zeros, int rows,
                                               int n_out, int k, int group_shift) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 16;
  const int chunks = k / 32, groups = chunks >> group_shift, blocks = (chunks + 3) / 4;
  const int out_a = n0 + g, out_b = n0 + g + 8;
  // An output past the layer's reads row 0 (load_stage).
  const int64_t row_a = out_a < n_out ? out_a : 0, row_b = out_b < n_out ? out_b : 0;
  zero_tiles(acc);

  // Block b's stage for this lane into st (c < chunks implies b < blocks). Past K a slot keeps what it held — zeros, or
  // a stage already used: finite weights and scales, met there by x's zeros (int4_mma_step's `live`).
  using stage = std::conditional_t<Lean, int4_lean_stage, int4_stage<T>>;
  auto load = [&](int b, stage& st) {
    const int c = b * 4 + t;
    if (c < chunks) load_stage<T>(st, q, scales, zeros, row_a, row_b, chunks, groups, c, c >> group_shift);
  };
  stage ahead[Ahead] = {};
#pragma unroll
  for (int i = 0; i < Ahead; ++i) load(warp + i * Warps, ahead[i]);
  pdl_wait();  // the weights do not depend on the kernel before; x does
  for (int b0 = warp; b0 < blocks; b0 += Ahead * Warps) {
#pragma unroll
    for (int i = 0; i < Ahead; ++i) {
      const int b = b0 + i * Warps;
      if (b >= blocks) break;
      if constexpr (Lean) {
        const int c = b * 4 + t;
        int4_mma_step<T, NT, ScaleAfter, true, stage>(acc, ahead[i], x, rows, k, c, c < chunks, g);
        load(b + Ahead * Warps, ahead[i]);
      } else {
        const stage cur = ahead[i];
        load(b + Ahead * Warps, ahead[i]);
        const int c = b * 4 + t;
        int4_mma_step<T, NT, ScaleAfter, true>(acc, cur, x, rows, k, c, c < chunks, g);
      }
    }
  }
}

// int4_mma_kernel's product with its loop unrolled over the ring of blocks in flight (int4_settings().ring,
// TROUPE_INT4_RING=1, the default; written in the twelfth session of 2026-12-06): the rolled loop moves each
// in-flight stage down the ring every block (30 register moves), divides by the group size for every load, and
// multiplies every dequantized pair by one where the scale comes after the sum; here the ring's slots stay put, the
// group is a shift (group_shift = log2(group / 32): groups a power of two from 32) and ScaleAfter skips the
// multiplication. The same sums in the same order: bit for bit int4_mma_kernel's outputs (at Warps = kWarps).
// Its variants (int4_settings().ring, TROUPE_INT4_RING=0|1|2|3|4): 1 as int4_mma_kernel, 8 warps a block (85 registers
// at one row tile: 2 blocks an SM); 2 the same capped for 3 blocks an SM at one row tile (80 registers, 28 bytes
// spilled); 3 with 4 warps a block (each warp twice the blocks of K; 5 blocks an SM at one row tile); 4 chooses by layer
// (launch_mma); 5 two loads ahead instead of three, capped for 4 blocks an SM at one row tile (64 registers, 10 bytes
// spilled: 32 warps an SM against 16; written after the last call); 0 leaves int4_mma_kernel. Bits equal to
// int4_mma_kernel's on every shape of the GPU check (1 and 2; 5 the same order of sums).
// Measured and taken out (thirteenth and fourteenth sessions, H100; history has them): one row tile on 7 warps where
// they divide K / 128, x loaded a step ahead, both (one rtn request 3.19 / 3.16 / 3.16 ms a token against 3.18), and 1
// or 2 warps a tile where tiles abound (3.71 / 3.35 against 3.23; gate_up at one row 0.060 / 0.039 ms against 0.041).
template <class T, int NT, bool ScaleAfter, int Warps, int MinBlocks, int Ahead = kAhead, bool Lean = false>
__global__ void __launch_bounds__(Warps * 32, MinBlocks)
    int4_ring_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                     const T* __restrict__ zeros, const T* __restrict__ bias, T* __restrict__ out, int rows, int n_out,
                     int k, int group_shift) {
  __shared__ float partial[Warps][16][NT * 8 + 1];
  float acc[NT][4];
  int4_ring_sums<T, NT, ScaleAfter, Warps, Ahead, Lean>(acc, x, q, scales, zeros, rows, n_out, k, group_shift);
  reduce_tile_outputs<T, NT, Warps>(partial, acc, blockIdx.x * 16, rows, n_out, out,
                                 [&](float sum, int, int j) { return plus_bias(sum, bias, j); });
}

// The ring kernel with Tiles output tiles a block (int4_settings().wide, the default where it applies: one row tile,
// scales after the sum, blocks enough; fourteenth session): each warp's step loads x's fragments once for
// all its tiles, and each warp makes Tiles times the work for one prologue and one block's reduction, where the ring
// kernel's warps make 3-4 steps over K = 3,584 (gate_up) and then reduce. Per output the same sums in the same order as
// int4_ring_kernel and int4_mma_kernel (the check's bits rows). Two tiles with two loads ahead: 126 registers, 2 blocks
// an SM, 4 KiB of weights in flight a warp. H200, 2026-12-06, gate_up at one row 0.037 ms (1.96 TB/s) against the
// cp.async kernel's 0.041 and the ring kernel's 0.040; 8 rows 0.038 against 0.044 / 0.042; one rtn request 2.87 ms a
// token against 2.97 / 2.98 (two runs) with the cp.async kernel on gate_up. Three loads ahead (161 registers, or capped
// at 128 with 344 bytes spilled): 0.058 ms and 3.57 ms a token. On down_proj (224 tiles: 112 blocks, fewer than the
// SMs) it loses, 0.026 against the ring kernel's 0.022.
template <class T, int Tiles, class Stage = int4_stage<T>>
__device__ __forceinline__ void int4_wide_step(float (&acc)[Tiles][1][4], const Stage (&cur)[Tiles],
                                               const T* __restrict__ x, int rows, int k, int c, bool live, int g) {
  // x's 8 values of word i, whose pairs are the weights' (int4_pair_nibble): B fragments as they lie in memory.
  uint4 xb[4];
  if constexpr (std::is_same_v<Stage, int4_lean_stage>) {
    const uint4* __restrict__ from =
        live && g < rows ? reinterpret_cast<const uint4*>(x + static_cast<int64_t>(g) * k + c * 32) : kZeroX;
#pragma unroll
    for (int i = 0; i < 4; ++i) xb[i] = from[i];
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
      xb[i] = live && g < rows ? *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(g) * k + c * 32 + i * 8)
                               : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int m = 0; m < Tiles; ++m) {
    const uint32_t za = magic_zero<T>(cur[m].za);
    const uint32_t zb = magic_zero<T>(cur[m].zb);
    const uint32_t words_a[4] = {cur[m].wa.x, cur[m].wa.y, cur[m].wa.z, cur[m].wa.w};
    const uint32_t words_b[4] = {cur[m].wb.x, cur[m].wb.y, cur[m].wb.z, cur[m].wb.w};
    float block_acc[1][4];
    zero_tiles(block_acc);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t da[4], db[4];
      dequantize_word_unscaled<T>(words_a[i], za, da);
      dequantize_word_unscaled<T>(words_b[i], zb, db);
      const uint32_t a0[4] = {da[0], db[0], da[1], db[1]};
      const uint32_t a1[4] = {da[2], db[2], da[3], db[3]};
      mma16816<T>(block_acc[0], a0, xb[i].x, xb[i].y);
      mma16816<T>(block_acc[0], a1, xb[i].z, xb[i].w);
    }
    const float fa = stage_scale<T>(cur[m].sa), fb = stage_scale<T>(cur[m].sb);
    acc[m][0][0] += fa * block_acc[0][0];
    acc[m][0][1] += fa * block_acc[0][1];
    acc[m][0][2] += fb * block_acc[0][2];
    acc[m][0][3] += fb * block_acc[0][3];
  }
}

// Gated (linear_int4_silu, int4_settings().silu): the weight is gate and up stacked (n_out = 2·I rows), block b's
// tile 0 is gate's features 16b .. 16b + 15 and tile 1 up's same features, and the block writes silu(gate)·up of
// those 16 features into out [rows, I]: each sum rounded to T as the plain kernel writes it, then silu_times as
// silu_and_mul makes it, so the bits are those of the two ops. Trigger: the kernel after (down_proj) may start its
// blocks as this one's last wave starts, streaming its weights into the SMs this one's tail leaves idle.
// Lean (int4_settings().lean): int4_ring_sums' lean form.
template <class T, int Tiles, int Ahead, bool Gated = false, bool Trigger = false, bool Lean = false>
__global__ void __launch_bounds__(kWarps * 32)
    int4_wide_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                     const T* __restrict__ zeros, const T* __restrict__ bias, T* __restrict__ out, int rows, int n_out,
                     int k, int group_shift) {
  static_assert(!Gated || Tiles == 2, "the gated kernel pairs a gate tile with an up tile");
  __shared__ float partial[Tiles][kWarps][16][9];
  if constexpr (Trigger) pdl_launch_dependents();  // it waits for this grid's end before it reads out
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int inter = n_out / 2;  // Gated: the features of each half
  const int n0 = blockIdx.x * 16 * (Gated ? 1 : Tiles);
  const int chunks = k / 32, groups = chunks >> group_shift, blocks = (chunks + 3) / 4;
  int64_t row_a[Tiles], row_b[Tiles];  // an output past the layer's reads row 0 (load_stage)
#pragma unroll
  for (int m = 0; m < Tiles; ++m) {
    const int feature = Gated ? n0 + g : n0 + 16 * m + g, offset = Gated ? m * inter : 0, end = Gated ? inter : n_out;
    row_a[m] = feature < end ? offset + feature : 0, row_b[m] = feature + 8 < end ? offset + feature + 8 : 0;
  }
  float acc[Tiles][1][4];
#pragma unroll
  for (int m = 0; m < Tiles; ++m) zero_tiles(acc[m]);

  // Block b's stages for this lane, a tile each; past K a slot keeps what it held (as int4_ring_sums).
  using stage = std::conditional_t<Lean, int4_lean_stage, int4_stage<T>>;
  auto load = [&](int b, stage (&st)[Tiles]) {
    const int c = b * 4 + t;
#pragma unroll
    for (int m = 0; m < Tiles; ++m)
      if (c < chunks) load_stage<T>(st[m], q, scales, zeros, row_a[m], row_b[m], chunks, groups, c, c >> group_shift);
  };
  stage ahead[Ahead][Tiles] = {};
#pragma unroll
  for (int i = 0; i < Ahead; ++i) load(warp + i * kWarps, ahead[i]);
  pdl_wait();  // the weights do not depend on the kernel before; x does
  for (int b0 = warp; b0 < blocks; b0 += Ahead * kWarps) {
#pragma unroll
    for (int i = 0; i < Ahead; ++i) {
      const int b = b0 + i * kWarps;
      if (b >= blocks) break;
      if constexpr (Lean) {
        const int c = b * 4 + t;
        int4_wide_step<T, Tiles, stage>(acc, ahead[i], x, rows, k, c, c < chunks, g);
        load(b + Ahead * kWarps, ahead[i]);
      } else {
        stage cur[Tiles];
#pragma unroll
        for (int m = 0; m < Tiles; ++m) cur[m] = ahead[i][m];
        load(b + Ahead * kWarps, ahead[i]);
        const int c = b * 4 + t;
        int4_wide_step<T, Tiles>(acc, cur, x, rows, k, c, c < chunks, g);
      }
    }
  }
  if constexpr (Gated) {
    // reduce_tile_outputs' sums for both tiles, then the activation of each feature's pair.
#pragma unroll
    for (int m = 0; m < Tiles; ++m) {
      partial[m][warp][g][2 * t] = acc[m][0][0];
      partial[m][warp][g][2 * t + 1] = acc[m][0][1];
      partial[m][warp][g + 8][2 * t] = acc[m][0][2];
      partial[m][warp][g + 8][2 * t + 1] = acc[m][0][3];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 16 * 8; i += blockDim.x) {
      const int o = i / 8, r = i % 8, j = n0 + o;
      if (j >= inter || r >= rows) continue;
      float gate = 0.0f, up = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) gate += partial[0][w][o][r];
#pragma unroll
      for (int w = 0; w < kWarps; ++w) up += partial[1][w][o][r];
      const T gate_out = from_float<T>(plus_bias(gate, bias, j)), up_out = from_float<T>(plus_bias(up, bias, inter + j));
      out[static_cast<int64_t>(r) * inter + j] = from_float<T>(silu_times(to_float(gate_out), to_float(up_out)));
    }
  } else {
#pragma unroll
    for (int m = 0; m < Tiles; ++m)
      reduce_tile_outputs<T, 1, kWarps>(partial[m], acc[m], n0 + 16 * m, rows, n_out, out,
                                        [&](float sum, int, int j) { return plus_bias(sum, bias, j); });
  }
}

// The same product with the packed weights staged through shared memory (int4_settings().async: by itself where the
// layer has more outputs than inputs; H200, 2026-12-05, ms at 1 row (int4_mma_kernel / this): gate_up 0.045 /
// 0.041, qkv 0.012 / 0.012, o_proj 0.008 / 0.010, down 0.030 / 0.040; one request 3.28 / 3.54 ms a token with it on
// every layer; splitting K over more blocks lost too), as linear_fp8.cu's fp8_mma_async_kernel: cp.async
// keeps kInt4Stages - 1 stages of 16 rows × 256 bytes (512 weights) in flight a block without registers. A block of
// 4 warps makes 16 outputs over all of K; each stage, warp w takes chunks 4w .. 4w + 3 of the stage's 16 (lane t
// chunk 4w + t: one of int4_mma_kernel's blocks of K), so int4_mma_step does the rest alike. Scales and zeros,
// small, come from global memory kInt4Stages - 1 stages ahead in registers.
constexpr int kInt4AsyncWarps = 4;
constexpr int kInt4Stages = 5;
constexpr int kInt4StageChunks = 16;                   // 16-byte chunks (32 weights) of each row a stage holds
constexpr int kInt4StagePitch = kInt4StageChunks + 4;  // uint4s: rows 64 bytes apart mod 128, reads without conflicts

template <class T, int NT, bool ScaleAfter, bool Lean = false>
__global__ void __launch_bounds__(kInt4AsyncWarps * 32)
    int4_mma_async_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                          const T* __restrict__ zeros, const T* __restrict__ bias, T* __restrict__ out, int rows,
                          int n_out, int k, int group) {
  __shared__ uint4 w_s[kInt4Stages][16][kInt4StagePitch];
  __shared__ float partial[kInt4AsyncWarps][16][NT * 8 + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 16;
  const int chunks = k / 32, groups = k / group, stages = (chunks + kInt4StageChunks - 1) / kInt4StageChunks;
  const int out_a = n0 + g, out_b = n0 + g + 8;
  const bool has_a = out_a < n_out, has_b = out_b < n_out;
  const int64_t row_a = static_cast<int64_t>(has_a ? out_a : 0), row_b = static_cast<int64_t>(has_b ? out_b : 0);
  // Stage s of the 16 rows into buffer s % kInt4Stages: 256 chunks, 2 a thread; zeros past K or the outputs.
  auto issue = [&](int s) {
    uint4(*buf)[kInt4StagePitch] = w_s[s % kInt4Stages];
#pragma unroll
    for (int i = 0; i < 16 * kInt4StageChunks / (kInt4AsyncWarps * 32); ++i) {
      const int idx = threadIdx.x + i * kInt4AsyncWarps * 32, row = idx / kInt4StageChunks, col = idx % kInt4StageChunks;
      const int c = s * kInt4StageChunks + col;
      const bool valid = n0 + row < n_out && c < chunks;
      cp_async16(&buf[row][col], valid ? q + static_cast<int64_t>(n0 + row) * chunks + c : q, valid);
    }
  };
  // This lane's scales and zeros at stage s; zeros past K or past the outputs.
  auto scales_of = [&](int s) {
    int4_stage<T> st{};
    const int c = s * kInt4StageChunks + warp * 4 + t;
    if (s < stages && c < chunks) {
      const int gi = c * 32 / group;
      if (has_a) st.sa = scales[row_a * groups + gi], st.za = zeros[row_a * groups + gi];
      if (has_b) st.sb = scales[row_b * groups + gi], st.zb = zeros[row_b * groups + gi];
    }
    return st;
  };
  float acc[NT][4];
  zero_tiles(acc);
  cp_async_ring_start<kInt4Stages>(stages, issue);
  int4_stage<T> ahead[kInt4Stages - 1];
#pragma unroll
  for (int i = 0; i < kInt4Stages - 1; ++i) ahead[i] = scales_of(i);
  pdl_wait();  // the weights do not depend on the kernel before; x does
  for (int s = 0; s < stages; ++s) {
    cp_async_ring_next<kInt4Stages>(s, stages, issue);
    int4_stage<T> cur = ahead[0];
#pragma unroll
    for (int i = 0; i + 1 < kInt4Stages - 1; ++i) ahead[i] = ahead[i + 1];
    ahead[kInt4Stages - 2] = scales_of(s + kInt4Stages - 1);
    const int col = warp * 4 + t, c = s * kInt4StageChunks + col;
    cur.wa = w_s[s % kInt4Stages][g][col];
    cur.wb = w_s[s % kInt4Stages][g + 8][col];
    // Lean: no multiplication of every pair by one where the scale comes after the sum (the same values).
    int4_mma_step<T, NT, ScaleAfter, Lean && ScaleAfter>(acc, cur, x, rows, k, c, c < chunks, g);
  }
  reduce_tile_outputs<T, NT, kInt4AsyncWarps>(partial, acc, n0, rows, n_out, out,
                                 [&](float sum, int, int j) { return plus_bias(sum, bias, j); });
}

// Whether the wide kernel (int4_settings().wide) takes a layer whose blocks of two tiles number `blocks` at one row tile
// with the scales after the sum: on, the cp.async kernel not forced, and blocks enough to give every SM two
// (int4_settings().wide_min_blocks -1; 0: every layer).
bool wide_takes(int64_t blocks, int sms) {
  const int64_t min_blocks = int4_settings().wide_min_blocks;
  return int4_settings().wide && int4_settings().async <= 0 && blocks >= (min_blocks < 0 ? 2LL * sms : min_blocks);
}

template <class T, int NT>
void launch_mma(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out, int rows, int sms,
                cudaStream_t stream) {
  const int n_out = static_cast<int>(w.qweight.dim(0)), k = static_cast<int>(x.dim(1));
  // TROUPE_INT4_SCALE_BEFORE=1 scales every weight even where groups allow otherwise (to measure the difference).
  static const bool scale_before = std::getenv("TROUPE_INT4_SCALE_BEFORE") != nullptr;
  // The cp.async kernel where it measured faster (H200, 2026-12-05, ms at 1 / 8 rows, register kernel / cp.async:
  // gate_up 0.046 / 0.041 at 1 row, qkv 0.014 / 0.012 at 8; o_proj 0.009 / 0.011, down 0.029 / 0.038): more outputs
  // than inputs at more than one row tile (at one, the lean ring kernel: int4_switches::async), unless
  // int4_settings().async says otherwise.
  const int setting = int4_settings().async;
  const bool scale_after = w.group_size % 128 == 0 && !scale_before,
             async = setting > 0 || (setting < 0 && n_out > k && (NT > 1 || !scale_after || !int4_settings().lean));
  const int group = static_cast<int>(w.group_size);
  // The ring kernel (int4_settings().ring): 1-3 where the register kernel would run; 4 also in place of the cp.async
  // kernel's default choice, with 4 warps a block there (more outputs than inputs: tiles enough to fill the SMs) and 8
  // elsewhere. H100, 2026-12-06, ms at 1 row, register / cp.async / ring 8 warps / ring 4 warps: gate_up 0.049 / 0.044 /
  // 0.043 / 0.040, qkv 0.012 / 0.012 / 0.011 / 0.010, o_proj 0.009 / 0.011 / 0.009 / 0.010, down 0.029 / 0.038 / 0.024 /
  // 0.038; one rtn request 3.30 ms a token with the register kernel, 3.21 with ring 1 (the default).
  // The wide kernel (int4_settings().wide, the default): one row tile, scales after the sum, on layers whose blocks of
  // two tiles give every SM two blocks (gate_up at Qwen2.5-7B shapes; wide_min_blocks 0: every layer), in place of the
  // cp.async and ring kernels, unless the cp.async kernel is forced.
  // The wide and ring kernels take the group as a shift: groups a power of two from 32.
  const bool shifted = group >= 32 && (group & (group - 1)) == 0;
  const int shift = shifted ? std::countr_zero(static_cast<unsigned>(group / 32)) : 0;
  auto launch = [&](auto kernel, int64_t blocks, int warps, const char* what) {
    launch_dependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(warps * 32), stream, what, x.as<T>(),
                     static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(),
                     bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), rows, n_out, k, shift);
  };
  if constexpr (NT == 1) {
    const int64_t wide_blocks = (n_out + 31) / 32;
    if (scale_after && shifted && wide_takes(wide_blocks, sms)) {
      if (int4_settings().lean) launch(int4_wide_kernel<T, 2, 2, false, false, true>, wide_blocks, kWarps, "linear_int4 wide");
      else launch(int4_wide_kernel<T, 2, 2>, wide_blocks, kWarps, "linear_int4 wide");
      return;
    }
  }
  const int chosen = int4_settings().ring;
  const int ring = chosen == 4 ? (setting > 0 ? 0 : n_out > k ? 3 : 1) : async ? 0 : chosen;
  if (ring > 0 && shifted) {
    auto launch_ring = [&](auto kernel, int warps) { launch(kernel, (n_out + 15) / 16, warps, "linear_int4 ring"); };
    constexpr int kCapped = NT == 1 ? 3 : 0;  // variant 2: 3 blocks an SM at one row tile
    if (ring == 2) launch_ring(scale_after ? int4_ring_kernel<T, NT, true, kWarps, kCapped> : int4_ring_kernel<T, NT, false, kWarps, kCapped>, kWarps);
    else if (ring == 3) launch_ring(scale_after ? int4_ring_kernel<T, NT, true, 4, 0> : int4_ring_kernel<T, NT, false, 4, 0>, 4);
    else if (ring == 5) {  // two loads ahead, 4 blocks an SM at one row tile
      constexpr int kLean = NT == 1 ? 4 : 0;
      launch_ring(scale_after ? int4_ring_kernel<T, NT, true, kWarps, kLean, 2> : int4_ring_kernel<T, NT, false, kWarps, kLean, 2>, kWarps);
    } else if (NT == 1 && scale_after && int4_settings().lean) {
      launch_ring(int4_ring_kernel<T, 1, true, kWarps, 0, kAhead, true>, kWarps);
    } else launch_ring(scale_after ? int4_ring_kernel<T, NT, true, kWarps, 0> : int4_ring_kernel<T, NT, false, kWarps, 0>, kWarps);
    return;
  }
  auto async_after = int4_mma_async_kernel<T, NT, true>;
  if constexpr (NT == 1)
    if (int4_settings().lean) async_after = int4_mma_async_kernel<T, 1, true, true>;
  auto kernel = async ? (scale_after ? async_after : int4_mma_async_kernel<T, NT, false>)
                      : (scale_after ? int4_mma_kernel<T, NT, true> : int4_mma_kernel<T, NT, false>);
  // Launched as a programmatic dependent: its blocks may start while the kernel before (a norm, silu_and_mul)
  // finishes, and stream their first weights before they wait for x.
  launch_dependent(kernel, dim3(static_cast<unsigned>((n_out + 15) / 16)), dim3((async ? kInt4AsyncWarps : kWarps) * 32),
                   stream, "linear_int4", x.as<T>(), static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(),
                   w.zeros.as<T>(), bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), rows, n_out, k,
                   static_cast<int>(w.group_size));
}

// Output feature n of every row of x, for n = warp index over the grid (a grid-stride loop). R bounds the
// rows (compile time, so the accumulators stay in registers).
template <class T, int R>
__global__ void __launch_bounds__(kWarps * 32)
    int4_gemv_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                     const T* __restrict__ zeros, const T* __restrict__ bias, T* __restrict__ out, int rows,
                     int n_out, int k, int group) {
  const int lane = threadIdx.x % 32;
  const int chunks = k / 32;  // 16-byte chunks per packed row: 32 weights each
  const int groups = k / group;
  constexpr int V = vec16<T>;  // x elements per 16-byte load
  for (int n = blockIdx.x * kWarps + threadIdx.x / 32; n < n_out; n += gridDim.x * kWarps) {
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    const uint4* row = q + static_cast<int64_t>(n) * chunks;
    for (int c = lane; c < chunks; c += 32) {
      const uint4 packed = row[c];
      const int g = c * 32 / group;  // 32 divides the group: one scale and zero for the chunk
      const float s = to_float(scales[static_cast<int64_t>(n) * groups + g]);
      const float z = to_float(zeros[static_cast<int64_t>(n) * groups + g]);
      const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
      float w[32];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
          w[i * 8 + j] = (static_cast<float>((words[i] >> (4 * int4_pair_nibble(j))) & 15u) - z) * s;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        const T* xr = x + static_cast<int64_t>(r) * k + c * 32;
#pragma unroll
        for (int v = 0; v < 32 / V; ++v) {
          const vec<T, V> xv = load_vec<T, V>(xr + v * V);
#pragma unroll
          for (int e = 0; e < V; ++e) acc[r] += w[v * V + e] * to_float(xv.v[e]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      const float sum = warp_sum(acc[r]);
      if (lane == 0)
        out[static_cast<int64_t>(r) * n_out + n] = from_float<T>(sum + (bias ? to_float(bias[n]) : 0.0f));
    }
  }
}

// Each thread dequantizes one packed word: 8 weights of row n, written as one 8-element vector store.  dense [N, K]
template <class T>
__global__ void int4_dequantize_kernel(const uint32_t* __restrict__ q, const T* __restrict__ scales,
                                       const T* __restrict__ zeros, T* __restrict__ dense, int64_t words, int k,
                                       int group) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= words) return;
  const int64_t n = i / (k / 8), c = (i % (k / 8)) * 8;
  const int64_t at = n * (k / group) + c / group;
  const float s = to_float(scales[at]), z = to_float(zeros[at]);
  const uint32_t word = q[i];
  vec<T, 8> out;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    out.v[j] = from_float<T>((static_cast<float>((word >> (4 * int4_pair_nibble(j))) & 15u) - z) * s);
  store_vec(dense + n * k + c, out);
}

// The FP8 form (int4_path::fp8): row blockIdx.x of the weight requantized to e4m3 per output channel, as
// quantize_fp8 (runtime/model/fp8_formats.hpp, per channel) makes of the row dequantized as int4_dequantize_kernel
// dequantizes it: w[k] = (q − z) · s in f32, scale = max(max|w| / 448, 1 / (448 · 512)) (fp8_activation_scale's IEEE
// quotient), codes[k] = e4m3(w[k] / scale) (fp8_activation_code: nearest even, saturating). Two passes over the row
// (the second from L1 / L2: a row is K / 2 bytes), or one where the scales were made at load (Given: row_scales holds
// them, int4_device_weight::fp8_scale); V words a load (4: 16-byte loads, where K and the groups are multiples of 32,
// so that a load's 32 weights share a group; else 1), 8 codes a word.
template <class T, int V, bool Given>
__global__ void int4_to_fp8_kernel(const uint32_t* __restrict__ q, const T* __restrict__ scales,
                                   const T* __restrict__ zeros, uint8_t* __restrict__ codes, float* __restrict__ row_scales,
                                   int k, int group) {
  const int64_t n = blockIdx.x, loads = k / (8 * V), groups = k / group;
  const vec<uint32_t, V>* qr = reinterpret_cast<const vec<uint32_t, V>*>(q + n * (k / 8));
  const T* sr = scales + n * groups;
  const T* zr = zeros + n * groups;
  auto weights = [&](int64_t i, float (&w)[8 * V]) {
    const int64_t at = i * 8 * V / group;
    const float s = to_float(sr[at]), z = to_float(zr[at]);
    const vec<uint32_t, V> words = qr[i];
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int j = 0; j < 8; ++j)
        w[8 * v + j] = (static_cast<float>((words.v[v] >> (4 * int4_pair_nibble(j))) & 15u) - z) * s;
  };
  float scale;
  if constexpr (Given) {
    scale = row_scales[n];
  } else {
    float amax = 0.0f;
    for (int64_t i = threadIdx.x; i < loads; i += blockDim.x) {
      float w[8 * V];
      weights(i, w);
#pragma unroll
      for (int j = 0; j < 8 * V; ++j) amax = fmaxf(amax, fabsf(w[j]));
    }
    scale = fp8_activation_scale(block_max(amax));
    if (threadIdx.x == 0) row_scales[n] = scale;
  }
  uint8_t* out = codes + n * k;
  for (int64_t i = threadIdx.x; i < loads; i += blockDim.x) {
    float w[8 * V];
    weights(i, w);
#pragma unroll
    for (int h = 0; h < V; h += 2) {  // 16 codes a store where V is 4, else 8
      constexpr int C = V >= 2 ? 16 : 8;
      vec<uint8_t, C> c;
#pragma unroll
      for (int j = 0; j < C; ++j) c.v[j] = fp8_activation_code(w[8 * h + j], scale);
      store_vec(out + i * 8 * V + 8 * h, c);
    }
  }
}

// The same codes by table where the row scales were made at load (Given) and K and the groups are multiples of 32 (the
// 16-byte loads' form): the block makes its row's 16 codes a group into shared memory ([groups][4] registers,
// int4_fp8_table_word), then each thread looks its 32 weights a load up (int4_word_fp8_codes): a quotient per group
// and q instead of per weight (K / 8 of them a row at groups of 128 against K).
template <class T>
__global__ void int4_to_fp8_table_kernel(const uint32_t* __restrict__ q, const T* __restrict__ scales,
                                         const T* __restrict__ zeros, uint8_t* __restrict__ codes,
                                         const float* __restrict__ row_scales, int k, int group) {
  extern __shared__ uint32_t fp8_table[];  // group gi's code of q at byte q % 4 of fp8_table[4 · gi + q / 4]
  const int64_t n = blockIdx.x;
  const int groups = k / group, loads = k / 32;
  const float scale = row_scales[n];
  for (int e = threadIdx.x; e < 4 * groups; e += blockDim.x) {
    const int gi = e / 4;
    fp8_table[e] = int4_fp8_table_word(4 * (e % 4), to_float(zeros[n * groups + gi]), to_float(scales[n * groups + gi]), scale);
  }
  __syncthreads();
  const uint4* qr = reinterpret_cast<const uint4*>(q + n * (k / 8));
  uint8_t* out = codes + n * k;
  for (int i = threadIdx.x; i < loads; i += blockDim.x) {
    const int gi = i * 32 / group;
    const uint32_t tab[4] = {fp8_table[4 * gi], fp8_table[4 * gi + 1], fp8_table[4 * gi + 2], fp8_table[4 * gi + 3]};
    const uint4 words = qr[i];
    const uint2 c0 = int4_word_fp8_codes(words.x, tab), c1 = int4_word_fp8_codes(words.y, tab);
    const uint2 c2 = int4_word_fp8_codes(words.z, tab), c3 = int4_word_fp8_codes(words.w, tab);
    *reinterpret_cast<uint4*>(out + 32 * static_cast<int64_t>(i)) = make_uint4(c0.x, c0.y, c1.x, c1.y);
    *reinterpret_cast<uint4*>(out + 32 * static_cast<int64_t>(i) + 16) = make_uint4(c2.x, c2.y, c3.x, c3.y);
  }
}

template <class T, int R>
void launch_gemv(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out, int rows, cudaStream_t stream) {
  const int n_out = static_cast<int>(w.qweight.dim(0)), k = static_cast<int>(x.dim(1));
  const unsigned blocks = static_cast<unsigned>((n_out + kWarps - 1) / kWarps);
  int4_gemv_kernel<T, R><<<blocks, kWarps * 32, 0, stream>>>(
      x.as<T>(), static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(),
      bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), rows, n_out, k, w.group_size);
}


// ---- Batches of 17 to kInt4GemmAutoRows rows, or up to kInt4GemmRows when forced (int4_settings().gemm; first timed on
// an H100 on 2026-12-06: 1.7x the decode kernels at 32 rows, 1.8x dequantize + cuBLAS at 64, 0.67x it at 256):
// int4_gemm_kernel.
// The decode kernels make 16 outputs a block and read all of x for them: at 32 rows gate_up reads ~0.5 GB of x from L2
// for 68 MB of weights (H100: 0.126-0.146 ms against bf16's 0.101), and above 32 rows the weight is dequantized whole
// into scratch before cuBLAS (0.249 ms at 256 rows against 0.117). Here a block makes kGemmOutputs outputs for RT rows:
// each stage (128 k) brings the block's packed weights and x tile into shared memory once by cp.async (kGemmStages in
// flight), and 8 warps multiply them with int4_mma_step's fragments (weights as A, dequantized in registers; x as B, from
// shared memory), each warp MT x 16 outputs by 32 rows. Where the output tiles
// are fewer than twice the SMs (q/k/v, o_proj, down_proj), K is split over blockIdx.z: each split writes f32 sums to
// scratch and int4_gemm_reduce_kernel adds them in split order, the bias, and rounds once. Each weight is scaled before
// the product (rounded to T), as the dequantizing path does.
constexpr int kGemmOutputs = 128;
constexpr int kGemmStages = 4;
constexpr int kGemmThreads = 256;

// Where chunk c (8 values of x, 16 bytes) of row r of a stage's x tile sits among the row's 16: lanes (g, t) read chunk
// 4t + i of rows g and g + 1 in one phase, which this spreads over all 8 bank groups; 8 consecutive chunks of a row
// (the cp.async writes) stay distinct too.
__device__ __forceinline__ int gemm_x_chunk(int c, int r) { return c ^ (((c >> 3) & 1) << 1) ^ (r & 1); }

template <class T, int MT> struct gemm_scales {
  T sa[MT], sb[MT], za[MT], zb[MT];
};

template <class T, int RT>
__global__ void __launch_bounds__(kGemmThreads, 2)
    int4_gemm_kernel(const T* __restrict__ x, const uint4* __restrict__ q, const T* __restrict__ scales,
                     const T* __restrict__ zeros, float* __restrict__ partial, const T* __restrict__ bias,
                     T* __restrict__ out, int rows, int n_out, int k, int group, int stages_per_split) {
  constexpr int kWarpsRows = RT / 32, kWarpsOut = kGemmThreads / 32 / kWarpsRows;
  constexpr int MT = kGemmOutputs / 16 / kWarpsOut, NT = 4;
  extern __shared__ uint4 gemm_smem[];
  uint4* x_s = gemm_smem;                             // [kGemmStages][RT][16], chunks placed by gemm_x_chunk
  uint4* w_s = gemm_smem + kGemmStages * RT * 16;     // [kGemmStages][kGemmOutputs][4]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int wo = warp % kWarpsOut, wr = warp / kWarpsOut;
  const int out0 = blockIdx.x * kGemmOutputs, row0 = blockIdx.y * RT;
  const int chunks = k / 32, groups = k / group;
  const int s_begin = blockIdx.z * stages_per_split;
  const int stages = min(k / 128 - s_begin, stages_per_split);
  pdl_wait();  // launched plainly (a no-op); x is the kernel before's output

  auto issue = [&](int s) {  // stage s of this split into buffer s % kGemmStages; zeros past the rows or outputs
    const int b = s % kGemmStages, k0 = (s_begin + s) * 128;
    uint4* xb = x_s + b * RT * 16;
#pragma unroll
    for (int i = 0; i < RT * 16 / kGemmThreads; ++i) {
      const int idx = threadIdx.x + i * kGemmThreads, r = idx / 16, c = idx % 16;
      const bool valid = row0 + r < rows;
      cp_async16(&xb[r * 16 + gemm_x_chunk(c, r)], valid ? x + static_cast<int64_t>(row0 + r) * k + k0 + 8 * c : x, valid);
    }
    uint4* wb = w_s + b * kGemmOutputs * 4;
#pragma unroll
    for (int i = 0; i < kGemmOutputs * 4 / kGemmThreads; ++i) {
      const int idx = threadIdx.x + i * kGemmThreads, o = idx / 4, c = idx % 4;
      const bool valid = out0 + o < n_out;
      cp_async16(&wb[o * 4 + c], valid ? q + static_cast<int64_t>(out0 + o) * chunks + k0 / 32 + c : q, valid);
    }
  };
  // This lane's scales and zeros at stage s (its chunk: k = 128·stage + 32t); zeros past the outputs.
  auto scales_of = [&](int s) {
    gemm_scales<T, MT> v;
    const int gi = ((s_begin + s) * 128 + 32 * t) / group;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int oa = out0 + (wo * MT + mt) * 16 + g, ob = oa + 8;
      const bool live = s < stages;
      v.sa[mt] = live && oa < n_out ? scales[static_cast<int64_t>(oa) * groups + gi] : from_float<T>(0.0f);
      v.za[mt] = live && oa < n_out ? zeros[static_cast<int64_t>(oa) * groups + gi] : from_float<T>(0.0f);
      v.sb[mt] = live && ob < n_out ? scales[static_cast<int64_t>(ob) * groups + gi] : from_float<T>(0.0f);
      v.zb[mt] = live && ob < n_out ? zeros[static_cast<int64_t>(ob) * groups + gi] : from_float<T>(0.0f);
    }
    return v;
  };

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) zero_tiles(acc[mt]);
  cp_async_ring_start<kGemmStages>(stages, issue);
  gemm_scales<T, MT> next = scales_of(0);
  for (int s = 0; s < stages; ++s) {
    cp_async_ring_next<kGemmStages>(s, stages, issue);
    const gemm_scales<T, MT> cur = next;
    next = scales_of(s + 1);
    const int b = s % kGemmStages;
    const uint4* xb = x_s + b * RT * 16;
    const uint4* wb = w_s + b * kGemmOutputs * 4;
    uint32_t zma[MT], zmb[MT], sa[MT], sb[MT], words_a[MT][4], words_b[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      zma[mt] = magic_zero<T>(cur.za[mt]);
      zmb[mt] = magic_zero<T>(cur.zb[mt]);
      sa[mt] = splat2(cur.sa[mt]);
      sb[mt] = splat2(cur.sb[mt]);
      const int o = (wo * MT + mt) * 16 + g;
      const uint4 wa = wb[o * 4 + t], wbv = wb[(o + 8) * 4 + t];
      words_a[mt][0] = wa.x, words_a[mt][1] = wa.y, words_a[mt][2] = wa.z, words_a[mt][3] = wa.w;
      words_b[mt][0] = wbv.x, words_b[mt][1] = wbv.y, words_b[mt][2] = wbv.z, words_b[mt][3] = wbv.w;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t a0[MT][4], a1[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        uint32_t da[4], db[4];
        dequantize_word<T>(words_a[mt][i], zma[mt], sa[mt], da);
        dequantize_word<T>(words_b[mt][i], zmb[mt], sb[mt], db);
        a0[mt][0] = da[0], a0[mt][1] = db[0], a0[mt][2] = da[1], a0[mt][3] = db[1];  // word i's weights 0,1 | 2,3
        a1[mt][0] = da[2], a1[mt][1] = db[2], a1[mt][2] = da[3], a1[mt][3] = db[3];  // weights 4,5 | 6,7
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int r = wr * 32 + nt * 8 + g;
        const uint4 v = xb[r * 16 + gemm_x_chunk(4 * t + i, r)];  // x's k = 32t + 8i .. + 7 of this stage
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma16816<T>(acc[mt][nt], a0[mt], v.x, v.y);
          mma16816<T>(acc[mt][nt], a1[mt], v.z, v.w);
        }
      }
    }
  }
  // acc[mt][nt][0..1]: output oa, rows r0 and r0 + 1; [2..3]: output oa + 8, the same rows.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int oa = out0 + (wo * MT + mt) * 16 + g, r0 = row0 + wr * 32 + nt * 8 + 2 * t;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int o = oa + (e >= 2 ? 8 : 0), r = r0 + (e & 1);
        if (r >= rows || o >= n_out) continue;
        if (partial) partial[(static_cast<int64_t>(blockIdx.z) * rows + r) * n_out + o] = acc[mt][nt][e];
        else out[static_cast<int64_t>(r) * n_out + o] = from_float<T>(plus_bias(acc[mt][nt][e], bias, o));
      }
    }
}

template <class T, int RT>
void launch_gemm(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out,
                 int rows) {
  const int n_out = static_cast<int>(w.qweight.dim(0)), k = static_cast<int>(x.dim(1)), total = k / 128;
  const int tiles = (n_out + kGemmOutputs - 1) / kGemmOutputs * ((rows + RT - 1) / RT);
  // Splits of K where the tiles are fewer than twice the SMs, each at least 4 stages (512 k).
  const auto [splits, per_split] = plan_int4_split(ctx, tiles, total, 2 * ctx.sm_count, 4, rows, n_out);
  const int smem = kGemmStages * (RT * 16 + kGemmOutputs * 4) * 16;
  allow_shared_memory<int4_gemm_kernel<T, RT>>(static_cast<size_t>(smem), "linear_int4 gemm: shared memory");
  float* partial = splits > 1 ? static_cast<float*>(ctx.int4_scratch) : nullptr;
  const dim3 grid(static_cast<unsigned>((n_out + kGemmOutputs - 1) / kGemmOutputs), static_cast<unsigned>((rows + RT - 1) / RT),
                  static_cast<unsigned>(splits));
  const T* b = bias.empty() ? nullptr : bias.as<T>();
  int4_gemm_kernel<T, RT><<<grid, kGemmThreads, smem, ctx.stream>>>(
      x.as<T>(), static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(), partial, b, out.as<T>(),
      rows, n_out, k, static_cast<int>(w.group_size), per_split);
  check_launch("linear_int4 gemm");
  finish_int4_split(ctx, splits, b, out.as<T>(), rows, n_out);
}

} // namespace

int4_switches& int4_settings() {
  static int4_switches s{[] {
                           const char* v = std::getenv("TROUPE_INT4_ASYNC");
                           return v && *v ? (*v != '0' ? 1 : 0) : -1;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_GEMM");
                           return !v || !*v || std::string_view(v) == "auto" ? -1 : *v == '0' ? 0 : 1;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_RING");
                           return !v || !*v ? 1 : *v >= '1' && *v <= '5' ? *v - '0' : 0;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_WIDE");
                           return !v || !*v || *v != '0';
                         }(),
                         -1,
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_SILU");
                           return !v || !*v ? 2 : *v == '0' ? 0 : *v == '1' ? 1 : 2;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_LEAN");
                           return !v || !*v || *v != '0';
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_WGMMA");
                           return v && *v >= '0' && *v <= '2' ? *v - '0' : 1;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_WGMMA_ROWS");
                           return v && std::string_view(v) == "128" ? 128 : 256;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_WGMMA_OVERLAP");
                           return !v || !*v || *v != '0';
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_WGMMA_MAX_ROWS");
                           return v && *v ? std::max(0, std::atoi(v)) : 1024;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_WGMMA_NO_SPLIT_ROWS");
                           return v && *v ? std::max(0, std::atoi(v)) : 0;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_W4A8");
                           return v && *v && *v != '0';
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_INT4_FP8_TABLE");
                           return !(v && *v == '0');
                         }()};
  return s;
}

namespace {
// linear_int4's shapes (out_cols: N, or N / 2 for linear_int4_silu), or std::invalid_argument naming them.
void check_int4_shapes(const char* op, const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out,
                       int64_t out_cols) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.qweight.dim(0), g = w.group_size;
  if (w.qweight.type != dtype::i32 || g <= 0 || g % 8 != 0 || k % g != 0 || w.qweight.row_elems() != k / 8 ||
      w.scales.type != x.type || w.zeros.type != x.type || out.type != x.type || w.scales.dim(0) != n ||
      w.scales.row_elems() != k / g || w.zeros.dim(0) != n || w.zeros.row_elems() != k / g || out.dim(0) != rows ||
      out.row_elems() != out_cols || (!bias.empty() && (bias.type != x.type || bias.numel() != n)))
    throw std::invalid_argument(std::string("cuda ") + op + ": x " + shape_of(x) + ", qweight " + shape_of(w.qweight) +
                                ", scales " + shape_of(w.scales) + ", zeros " + shape_of(w.zeros) + ", output " +
                                shape_of(out) + " and group " + std::to_string(g) + " disagree");
}
// Whether the fused decode form (int4_wide_kernel's gated form) takes the product: up to 8 rows
// (one row tile) of bf16 / f16, groups a power of two and a multiple of 128 (the scales after the sum), K in whole
// 32-weight chunks, x and the packed words 16-byte aligned.
bool fused_decode_shape(const tensor& x, const int4_device_weight& w) {
  static const bool scale_before = std::getenv("TROUPE_INT4_SCALE_BEFORE") != nullptr;
  const int64_t g = w.group_size;
  return !scale_before && x.dim(0) <= 8 && (x.type == dtype::bf16 || x.type == dtype::f16) && x.dim(1) % 32 == 0 &&
         g % 128 == 0 && (g & (g - 1)) == 0 && reinterpret_cast<uintptr_t>(w.qweight.data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
}
} // namespace

bool launch_linear_int4_silu(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias,
                             const tensor& out) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.qweight.dim(0), g = w.group_size;
  if (n % 2 != 0)
    throw std::invalid_argument("cuda linear_int4_silu: qweight " + shape_of(w.qweight) +
                                " is not gate and up stacked (an odd number of outputs)");
  check_int4_shapes("linear_int4_silu", x, w, bias, out, n / 2);
  // Where the wide kernel would take the plain product (launch_mma; one block per 16 features).
  const int chosen = int4_settings().silu;
  const int64_t blocks = (n / 2 + 15) / 16;
  if (chosen <= 0 || !fused_decode_shape(x, w) || !wide_takes(blocks, ctx.sm_count)) return false;
  if (rows == 0) return true;
  make_current(ctx);
  const int shift = std::countr_zero(static_cast<unsigned>(g / 32));
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool lean = int4_settings().lean;
    auto kernel = chosen == 2 ? (lean ? int4_wide_kernel<T, 2, 2, true, true, true> : int4_wide_kernel<T, 2, 2, true, true>)
                              : (lean ? int4_wide_kernel<T, 2, 2, true, false, true> : int4_wide_kernel<T, 2, 2, true, false>);
    launch_dependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), ctx.stream, "linear_int4_silu",
                     x.as<T>(), static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(),
                     bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), static_cast<int>(rows), static_cast<int>(n),
                     static_cast<int>(k), shift);
  };
  if (x.type == dtype::bf16) launch(std::type_identity<__nv_bfloat16>{});
  else launch(std::type_identity<__half>{});
  check_launch("linear_int4_silu");
  return true;
}

void launch_linear_int4(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out,
                        int64_t fp8_rows) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.qweight.dim(0), g = w.group_size;
  check_int4_shapes("linear_int4", x, w, bias, out, n);
  if (rows == 0) return;
  make_current(ctx);
  // Which kernel: kernels/int4_path_rules.hpp (CI tests its row ranges).
  const int4_switches& settings = int4_settings();
  const int4_product product{rows, k, g, x.type == dtype::f32,
                             reinterpret_cast<uintptr_t>(w.qweight.data) % 16 == 0 && reinterpret_cast<uintptr_t>(x.data) % 16 == 0};
  const int4_path_switches switches{settings.wgmma, settings.wgmma_max_rows, settings.wgmma_no_split_rows, settings.gemm,
                                    fp8_rows};
  const int r = static_cast<int>(rows);
  switch (choose_int4_path(product, switches, [&] { return linear_int4_wgmma_splits(ctx, rows, n, k); })) {
  case int4_path::wgmma:
    launch_linear_int4_wgmma(ctx, x, w, bias, out);
    return;
  case int4_path::gemm: {
    auto launch = [&](auto tag) {
      using T = typename decltype(tag)::type;
      if (r <= 32) launch_gemm<T, 32>(ctx, x, w, bias, out, r);
      else launch_gemm<T, 64>(ctx, x, w, bias, out, r);
    };
    if (x.type == dtype::bf16) launch(std::type_identity<__nv_bfloat16>{});
    else launch(std::type_identity<__half>{});
    return;
  }
  case int4_path::decode: {
    auto launch = [&](auto tag) {
      using T = typename decltype(tag)::type;
      if (r <= 8) launch_mma<T, 1>(x, w, bias, out, r, ctx.sm_count, ctx.stream);
      else if (r <= 16) launch_mma<T, 2>(x, w, bias, out, r, ctx.sm_count, ctx.stream);
      else launch_mma<T, 4>(x, w, bias, out, r, ctx.sm_count, ctx.stream);
    };
    if (x.type == dtype::bf16) launch(std::type_identity<__nv_bfloat16>{});
    else launch(std::type_identity<__half>{});
    check_launch("linear_int4");
    return;
  }
  case int4_path::cuda_cores:
    // The CUDA-core kernel re-reads x for every output, so it wins only for the fewest rows (H200, 2026-12-05,
    // gate_up at Qwen2.5-7B shapes: 0.068 / 0.097 / 0.160 ms at 1 / 2 / 4 rows; 0.299 and 1.2 ms at 8 and 32).
    if (r <= 1) launch_gemv<float, 1>(x, w, bias, out, r, ctx.stream);
    else if (r <= 2) launch_gemv<float, 2>(x, w, bias, out, r, ctx.stream);
    else launch_gemv<float, 4>(x, w, bias, out, r, ctx.stream);
    check_launch("linear_int4");
    return;
  case int4_path::fp8: {
    // The weight's FP8 form in the scratch (codes [n, k], then n f32 scales unless made at load), then W8A8 FP8 on
    // it: x quantized per token, cuBLASLt's FP8 GEMM (linear_fp8.cu).
    const bool given = !w.fp8_scale.empty();
    if (given && (w.fp8_scale.type != dtype::f32 || w.fp8_scale.numel() != n))
      throw std::invalid_argument("linear_int4: fp8_scale " + w.fp8_scale.shape_string() + " is not [" +
                                  std::to_string(n) + "] f32");
    // The fused kernel where it is on and takes the product (x quantized first; if it does not take it, the codes
    // serve the two-kernel form below).
    std::optional<fp8_activations> xq;
    if (settings.w4a8 && linear_int4_w4a8_takes(rows, k, w, out.type)) {
      xq = quantize_fp8_activations(ctx, x, tensor{});
      if (launch_linear_int4_w4a8(ctx, xq->codes.as<uint8_t>(), xq->scales.as<float>(), rows, k, w, bias, out)) return;
    }
    const size_t code_bytes = static_cast<size_t>(n * k);
    const size_t bytes = code_bytes + (given ? 0 : static_cast<size_t>(n) * sizeof(float));
    grow_scratch(ctx, ctx.int4_scratch, ctx.int4_scratch_bytes, bytes, "linear_int4 fp8");
    auto* codes = static_cast<uint8_t*>(ctx.int4_scratch);
    // 4-byte aligned: k is a multiple of 8
    float* row_scales = given ? static_cast<float*>(w.fp8_scale.data) : reinterpret_cast<float*>(codes + code_bytes);
    dispatch_float(x.type, "linear_int4 fp8", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const auto* words = static_cast<const uint32_t*>(w.qweight.data);
      const bool vectors = k % 32 == 0 && g % 32 == 0 && reinterpret_cast<uintptr_t>(words) % 16 == 0;
      auto launch = [&](auto kernel, unsigned threads, size_t smem) {
        kernel<<<static_cast<unsigned>(n), threads, smem, ctx.stream>>>(words, w.scales.as<T>(), w.zeros.as<T>(), codes,
                                                                        row_scales, static_cast<int>(k), static_cast<int>(g));
      };
      const size_t table_bytes = static_cast<size_t>(k / g) * 16;  // within the 48 KiB a launch has without opting in
      if (vectors && given && settings.fp8_table && table_bytes <= 48 * 1024)
        launch(int4_to_fp8_table_kernel<T>, 128, table_bytes);
      else if (vectors)
        launch(given ? int4_to_fp8_kernel<T, 4, true> : int4_to_fp8_kernel<T, 4, false>, 128, 0);
      else
        launch(given ? int4_to_fp8_kernel<T, 1, true> : int4_to_fp8_kernel<T, 1, false>, 256, 0);
    });
    check_launch("linear_int4 fp8");
    const fp8_device_weight form{tensor(codes, dtype::f8_e4m3, {n, k}), tensor(row_scales, dtype::f32, {n}), tensor{}};
    if (xq) launch_linear_fp8_quantized(ctx, *xq, form, bias, out);
    else launch_linear_fp8(ctx, x, form, bias, out);
    return;
  }
  case int4_path::dequantize:
    break;
  }
  // Larger batches: the dense weight in the scratch, then the GEMM.
  const size_t bytes = static_cast<size_t>(n * k) * size_in_bytes(x.type);
  grow_scratch(ctx, ctx.int4_scratch, ctx.int4_scratch_bytes, bytes, "linear_int4");
  dispatch_float(x.type, "linear_int4", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t words = n * k / 8;
    int4_dequantize_kernel<T><<<static_cast<unsigned>((words + 255) / 256), 256, 0, ctx.stream>>>(
        static_cast<const uint32_t*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(), static_cast<T*>(ctx.int4_scratch),
        words, static_cast<int>(k), static_cast<int>(g));
  });
  check_launch("linear_int4 dequantize");
  cublaslt_linear(ctx, x, tensor(ctx.int4_scratch, x.type, {n, k}), bias, out, false);
}

} // namespace troupe::cuda
