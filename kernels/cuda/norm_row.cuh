#pragma once
// One row of the fused residual add + RMS norm, made by a block of kNormThreads threads: add_rms_norm_kernel's body
// (rms_norm.cu), and the end of linear_int4.cu's int4_ring_norm_kernel, whose last block makes its rows' norms with the
// same code, so the two write the same bits.

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

constexpr int kNormThreads = 256;

// 16 bytes read through L2 (ld.global.cg): values other blocks of the same kernel wrote, past this SM's L1.
template <class T, int N> __device__ __forceinline__ vec<T, N> load_vec_cg(const T* p) {
  static_assert(sizeof(T) * N == 16, "one 16-byte load");
  const uint4 v = __ldcg(reinterpret_cast<const uint4*>(p));
  return *reinterpret_cast<const vec<T, N>*>(&v);
}

// residual += x, rounded to T as the stream is stored (as vLLM's fused_add_rms_norm does); the norm is taken of the
// rounded sum and written to x. xr and rr: one row of `hidden`, N elements a load; called by all kNormThreads threads
// of a block. Returns, with Fp8, the max of |x| over this thread's elements as written (0 otherwise). Cg: x and the
// residual read through L2 (written by other blocks of the calling kernel).
template <class T, int N, bool Fp8, bool Cg = false>
__device__ __forceinline__ float add_rms_norm_row(T* __restrict__ xr, T* __restrict__ rr, const T* __restrict__ weight,
                                                  int hidden, float eps) {
  auto load = [](const T* p) {
    if constexpr (Cg) return load_vec_cg<T, N>(p);
    else return load_vec<T, N>(p);
  };
  float sum_sq = 0.0f;
  for (int i = threadIdx.x * N; i < hidden; i += kNormThreads * N) {
    const vec<T, N> a = load(xr + i);
    vec<T, N> r = load(rr + i);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      r.v[k] = from_float<T>(to_float(a.v[k]) + to_float(r.v[k]));
      const float z = to_float(r.v[k]);
      sum_sq += z * z;
    }
    store_vec(rr + i, r);
  }
  const float inv = rsqrtf(block_sum(sum_sq) / hidden + eps);
  float amax = 0.0f;
  for (int i = threadIdx.x * N; i < hidden; i += kNormThreads * N) {
    const vec<T, N> r = load_vec<T, N>(rr + i), w = load_vec<T, N>(weight + i);
    vec<T, N> o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      o.v[k] = from_float<T>(to_float(w.v[k]) * (to_float(r.v[k]) * inv));
      if constexpr (Fp8) amax = fmaxf(amax, fabsf(to_float(o.v[k])));
    }
    store_vec(xr + i, o);
  }
  return amax;
}

} // namespace troupe::cuda
