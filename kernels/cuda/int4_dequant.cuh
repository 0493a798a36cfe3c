#pragma once
// The 4-bit kernels' shared pieces (linear_int4.cu: decode kernels and the mma.sync GEMM; linear_int4_wgmma.cu: the
// warpgroup GEMM for large batches): packed words made into bf16 / f16 pairs, and the split of K over blocks with the
// kernel that adds the splits' f32 sums. Included only by those two files.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_context.hpp"

namespace troupe::cuda {
namespace {

// The bits of 128.0 (bf16) or 1024.0 (f16) in both halves: or-ing a nibble q into the mantissa makes 128 + q.
template <class T> constexpr uint32_t kMagic = 0x43004300u;
template <> constexpr uint32_t kMagic<__half> = 0x64006400u;

// Pair arithmetic on two T values held in a 32-bit register (the lower index in the lower half), one HSUB2 / HMUL2 /
// HADD2 each.
template <class T> using pair_of = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
template <class T, class Op> __device__ __forceinline__ uint32_t pairwise(uint32_t a, uint32_t b, Op op) {
  const pair_of<T> r = op(*reinterpret_cast<const pair_of<T>*>(&a), *reinterpret_cast<const pair_of<T>*>(&b));
  return *reinterpret_cast<const uint32_t*>(&r);
}
template <class T> __device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b) {
  return pairwise<T>(a, b, [](pair_of<T> x, pair_of<T> y) { return __hsub2(x, y); });
}
template <class T> __device__ __forceinline__ uint32_t mul2(uint32_t a, uint32_t b) {
  return pairwise<T>(a, b, [](pair_of<T> x, pair_of<T> y) { return __hmul2(x, y); });
}
template <class T> __device__ __forceinline__ uint32_t add2(uint32_t a, uint32_t b) {
  return pairwise<T>(a, b, [](pair_of<T> x, pair_of<T> y) { return __hadd2(x, y); });
}
// Both halves of a register set to v.
template <class T> __device__ __forceinline__ uint32_t splat2(T v) {
  const uint16_t bits = *reinterpret_cast<const uint16_t*>(&v);
  return static_cast<uint32_t>(bits) * 0x10001u;
}

// 128 + z (or 1024 + z) in both halves, for the pairs' subtraction: one HADD2 on the splatted zero, exact (z a whole
// number below 2^7), where converting through f32 took a shift, an FADD, an F2F and the splat every output and step.
// From z's 16 bits (int4_lean_stage keeps them in a 32-bit register) or from z itself.
template <class T> __device__ __forceinline__ uint32_t magic_zero(uint32_t bits) {
  return add2<T>(bits * 0x10001u, kMagic<T>);
}
template <class T> __device__ __forceinline__ uint32_t magic_zero(T z) {
  return magic_zero<T>(uint32_t{*reinterpret_cast<const uint16_t*>(&z)});
}

// Nibbles j and j + 4 of w as the pair (m + q_j, m + q_{j+4}), m = 128 (or 1024): one lop3, (a & b) | c. Written as
// C++, `& 0x000F000F | magic` compiles to two LOP3s (the instruction takes one immediate): the decode kernels are
// bound by the integer pipe (half a warp instruction a cycle a scheduler: LOP3, SHF, PRMT, IADD3), where the
// dequantization's and and or were 64 of ~200 such instructions a warp's step of 1 KiB (the ring kernel's SASS).
template <class T> __device__ __forceinline__ uint32_t magic_pair(uint32_t w, int j) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(w >> (4 * j)), "n"(0x000F000F), "n"(kMagic<T>));
  return d;
}
// The 8 weights of one packed word as 4 pairs: d[j] = ((q_j − z)·s, (q_{j+4} − z)·s), j = 0..3. zm = 128 + z
// (or 1024 + z) in both halves, s the scale in both halves.
template <class T> __device__ __forceinline__ void dequantize_word(uint32_t w, uint32_t zm, uint32_t s, uint32_t (&d)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) d[j] = mul2<T>(sub2<T>(magic_pair<T>(w, j), zm), s);
}
// The same without the scale: d[j] = (q_j − z, q_{j+4} − z), exact in T (the ring kernel's ScaleAfter path).
template <class T> __device__ __forceinline__ void dequantize_word_unscaled(uint32_t w, uint32_t zm, uint32_t (&d)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) d[j] = sub2<T>(magic_pair<T>(w, j), zm);
}

// A decode kernel's output before its rounding: the f32 sum plus bias[j] (0 without a bias).
template <class T> __device__ __forceinline__ float plus_bias(float sum, const T* __restrict__ bias, int j) {
  return sum + (bias ? to_float(bias[j]) : 0.0f);
}

// out[i] = Σ_s partial[s][i] in split order, plus the bias, rounded once.  partial [splits, rows, n_out] f32
template <class T>
__global__ void int4_gemm_reduce_kernel(const float* __restrict__ partial, int splits, const T* __restrict__ bias,
                                        T* __restrict__ out, int64_t elems, int n_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= elems) return;
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s) sum += partial[s * elems + i];
  out[i] = from_float<T>(plus_bias(sum, bias, static_cast<int>(i % n_out)));
}

// How a GEMM of `tiles` output tiles over `total` stages of K splits K over blockIdx.z: where the tiles are fewer than
// `wave` (the blocks the GPU runs at once), into up to 8 splits of at least min_stages stages each, none empty, their
// f32 sums in ctx's int4 scratch (grown outside a CUDA graph capture; inside one, fewer splits where it is too small).
struct int4_split {
  int splits, stages_per_split;
};
inline int4_split plan_int4_split(cuda_context& ctx, int tiles, int total, int wave, int min_stages, int rows, int n_out) {
  int splits = tiles >= wave ? 1 : std::min({8, (wave + tiles - 1) / tiles, std::max(1, total / min_stages)});
  auto per_split = [&] { return (total + splits - 1) / splits; };
  splits = (total + per_split() - 1) / per_split();
  auto need = [&] { return static_cast<size_t>(splits) * rows * n_out * sizeof(float); };
  if (splits > 1 && need() > ctx.int4_scratch_bytes) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(ctx.stream, &capturing), "linear_int4 gemm");
    if (capturing == cudaStreamCaptureStatusNone) grow_scratch(ctx, ctx.int4_scratch, ctx.int4_scratch_bytes, need(), "linear_int4");
  }
  while (splits > 1 && need() > ctx.int4_scratch_bytes) {
    --splits;
    splits = (total + per_split() - 1) / per_split();
  }
  return {splits, per_split()};
}

// Adds the splits' sums (plan_int4_split) into out with the bias, where K was split.
template <class T>
void finish_int4_split(cuda_context& ctx, int splits, const T* bias, T* out, int rows, int n_out) {
  if (splits <= 1) return;
  const int64_t elems = static_cast<int64_t>(rows) * n_out;
  int4_gemm_reduce_kernel<T><<<static_cast<unsigned>((elems + 255) / 256), 256, 0, ctx.stream>>>(
      static_cast<const float*>(ctx.int4_scratch), splits, bias, out, elems, n_out);
  check_launch("linear_int4 gemm reduce");
}

} // namespace
} // namespace troupe::cuda
