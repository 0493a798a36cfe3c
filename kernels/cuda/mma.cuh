#pragma once
// mma.sync m16n8k16 (bf16 / f16 inputs, fp32 accumulators), shared by the tensor-core kernels
// (paged_attention_mma.cu, linear_int4.cu), and the decode GEMMs' common ending (reduce_tile_outputs).
// Fragments as the PTX ISA lays them out: with g = lane / 4 and t = lane % 4, a[0] holds A(g, 2t..2t+1), a[1]
// A(g+8, 2t..2t+1), a[2] A(g, 2t+8..2t+9), a[3] A(g+8, 2t+8..2t+9); b0 holds B(2t..2t+1, g), b1 B(2t+8..2t+9, g);
// d[0..1] D(g, 2t..2t+1), d[2..3] D(g+8, 2t..2t+1). The lower index sits in the lower 16 bits of a register.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// d += a · b for one m16n8k16 tile.
template <class T> __device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Split K for the decode GEMMs with few output tiles (linear_int4.cu, linear_fp8.cu's cp.async kernels): block
// (tile, split) sums its share of K, writes the f32 sums to partials[split][r][j], and the last of a tile's splits to
// arrive (a ticket per tile, taken after a fence) adds the splits' sums in split order — the same order whatever the
// arrival, so a result does not change from run to run — finishes them and puts the tile's ticket back to zero for
// the next launch. splits == 1: no split, nothing read or written but out. (cuda_ops.cpp, plan_split_k)
struct split_k_args {
  float* partials = nullptr;  // [splits][rows][n] f32
  unsigned* tickets = nullptr;  // one per tile (blockIdx.x), zero between launches
  int splits = 1;
};

// The end of the decode GEMM kernels (linear_int4.cu, linear_fp8.cu), whose blocks make 16 outputs for up to 8·NT
// rows with Warps warps each summing part of K: each warp's m16n8 accumulators (acc[nt][0..1]: output n0 + g, rows
// 8·nt + 2t, + 1; acc[nt][2..3]: output n0 + g + 8, the same rows) meet in shared memory, and
// out[r][j] = finish(sum over the warps (and over the splits of K), r, j), rounded once to T, for the outputs and
// rows that exist. A block of a split launch (split.splits > 1) is split blockIdx.y.
template <class T, int NT, int Warps, class Finish>
__device__ __forceinline__ void reduce_tile_outputs(float (&partial)[Warps][16][NT * 8 + 1], const float (&acc)[NT][4],
                                                    int n0, int rows, int n, T* __restrict__ out, Finish finish,
                                                    const split_k_args& split = {}) {
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    partial[warp][g][nt * 8 + 2 * t] = acc[nt][0];
    partial[warp][g][nt * 8 + 2 * t + 1] = acc[nt][1];
    partial[warp][g + 8][nt * 8 + 2 * t] = acc[nt][2];
    partial[warp][g + 8][nt * 8 + 2 * t + 1] = acc[nt][3];
  }
  __syncthreads();
  auto warps_sum = [&](int o, int r) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < Warps; ++w) sum += partial[w][o][r];
    return sum;
  };
  if (split.splits <= 1) {
    for (int i = threadIdx.x; i < 16 * NT * 8; i += blockDim.x) {
      const int o = i / (NT * 8), r = i % (NT * 8), j = n0 + o;
      if (j >= n || r >= rows) continue;
      out[static_cast<int64_t>(r) * n + j] = from_float<T>(finish(warps_sum(o, r), r, j));
    }
    return;
  }
  const int64_t plane = static_cast<int64_t>(rows) * n;  // one split's sums
  for (int i = threadIdx.x; i < 16 * NT * 8; i += blockDim.x) {
    const int o = i / (NT * 8), r = i % (NT * 8), j = n0 + o;
    if (j >= n || r >= rows) continue;
    __stcg(split.partials + blockIdx.y * plane + static_cast<int64_t>(r) * n + j, warps_sum(o, r));
  }
  __threadfence();  // this block's sums reach L2 before its ticket is taken
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(split.tickets + blockIdx.x, 1u) == static_cast<unsigned>(split.splits - 1);
  __syncthreads();
  if (!last) return;
  __threadfence();  // every other split's sums are visible to this block
  for (int i = threadIdx.x; i < 16 * NT * 8; i += blockDim.x) {
    const int o = i / (NT * 8), r = i % (NT * 8), j = n0 + o;
    if (j >= n || r >= rows) continue;
    float sum = 0.0f;
    for (int sp = 0; sp < split.splits; ++sp) sum += __ldcg(split.partials + sp * plane + static_cast<int64_t>(r) * n + j);
    out[static_cast<int64_t>(r) * n + j] = from_float<T>(finish(sum, r, j));
  }
  if (threadIdx.x == 0) split.tickets[blockIdx.x] = 0;
}

} // namespace troupe::cuda
