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

// NT m16n8 accumulator tiles set to zero.
template <int NT> __device__ __forceinline__ void zero_tiles(float (&acc)[NT][4]) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nt][i] = 0.0f;
}

// The end of the decode GEMM kernels (linear_int4.cu, linear_fp8.cu), whose blocks make 16 outputs for up to 8·NT
// rows with Warps warps each summing part of K: each warp's m16n8 accumulators (acc[nt][0..1]: output n0 + g, rows
// 8·nt + 2t, + 1; acc[nt][2..3]: output n0 + g + 8, the same rows) meet in shared memory, and
// out[r][j] = finish(sum over the warps, r, j), rounded once to T, for the outputs and rows that exist.
template <class T, int NT, int Warps, class Finish>
__device__ __forceinline__ void reduce_tile_outputs(float (&partial)[Warps][16][NT * 8 + 1], const float (&acc)[NT][4],
                                                    int n0, int rows, int n, T* __restrict__ out, Finish finish) {
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    partial[warp][g][nt * 8 + 2 * t] = acc[nt][0];
    partial[warp][g][nt * 8 + 2 * t + 1] = acc[nt][1];
    partial[warp][g + 8][nt * 8 + 2 * t] = acc[nt][2];
    partial[warp][g + 8][nt * 8 + 2 * t + 1] = acc[nt][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 16 * NT * 8; i += blockDim.x) {
    const int o = i / (NT * 8), r = i % (NT * 8), j = n0 + o;
    if (j >= n || r >= rows) continue;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < Warps; ++w) sum += partial[w][o][r];
    out[static_cast<int64_t>(r) * n + j] = from_float<T>(finish(sum, r, j));
  }
}

} // namespace troupe::cuda
