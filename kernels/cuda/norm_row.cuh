#pragma once
// add_rms_norm's row (rms_norm.cu, add_rms_norm_kernel) made by one warp instead of a block of 256 threads, for kernels
// that end with the norm of their own output (linear_int4.cu's int4_ring_norm_kernel): lane l does the work of the
// kernel's threads l, l + 32, ..., l + 224 in turn — the same elements, the same per-thread sums — and reduces their
// sums as block_sum does (each group of 32 by warp_sum, then the 8 group sums by warp_sum), so the bits are the kernel's.

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// 16 bytes read through L2 (ld.global.cg): values other blocks of the same kernel wrote, past this SM's L1.
template <class T, int N> __device__ __forceinline__ vec<T, N> load_vec_cg(const T* p) {
  static_assert(sizeof(T) * N == 16, "one 16-byte load");
  const uint4 v = __ldcg(reinterpret_cast<const uint4*>(p));
  return *reinterpret_cast<const vec<T, N>*>(&v);
}

// residual += x, rounded to T; x = rms_norm(residual) · weight, rounded to T. x and residual: one row of `hidden`
// (a multiple of N, 16-byte aligned), called by every lane of one warp.
template <class T, int N>
__device__ __forceinline__ void add_rms_norm_row_by_warp(T* __restrict__ x, T* __restrict__ residual,
                                                         const T* __restrict__ weight, int hidden, float eps) {
  constexpr int kThreads = 256, kGroups = kThreads / 32;  // add_rms_norm_kernel's block
  const int lane = threadIdx.x % 32;
  float group_sum[kGroups];
#pragma unroll
  for (int w = 0; w < kGroups; ++w) {
    float sum_sq = 0.0f;
    for (int i = (32 * w + lane) * N; i < hidden; i += kThreads * N) {
      const vec<T, N> a = load_vec_cg<T, N>(x + i);
      vec<T, N> r = load_vec_cg<T, N>(residual + i);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        r.v[k] = from_float<T>(to_float(a.v[k]) + to_float(r.v[k]));
        const float z = to_float(r.v[k]);
        sum_sq += z * z;
      }
      store_vec(residual + i, r);
    }
    group_sum[w] = warp_sum(sum_sq);
  }
  float mine = 0.0f;  // block_reduce's second stage: lane l holds group l's sum (l < 8), 0 past them
#pragma unroll
  for (int w = 0; w < kGroups; ++w) mine = lane == w ? group_sum[w] : mine;
  const float inv = rsqrtf(warp_sum(mine) / hidden + eps);
#pragma unroll
  for (int w = 0; w < kGroups; ++w)
    for (int i = (32 * w + lane) * N; i < hidden; i += kThreads * N) {  // this lane's own elements of residual
      const vec<T, N> r = load_vec<T, N>(residual + i), wt = load_vec<T, N>(weight + i);
      vec<T, N> o;
#pragma unroll
      for (int k = 0; k < N; ++k) o.v[k] = from_float<T>(to_float(wt.v[k]) * (to_float(r.v[k]) * inv));
      store_vec(x + i, o);
    }
}

} // namespace troupe::cuda
