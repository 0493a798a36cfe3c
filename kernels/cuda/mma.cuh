#pragma once
// mma.sync m16n8k16 (bf16 / f16 inputs, fp32 accumulators), shared by the tensor-core kernels
// (paged_attention_mma.cu, linear_int4.cu). Fragments as the PTX ISA lays them out: with g = lane / 4 and
// t = lane % 4, a[0] holds A(g, 2t..2t+1), a[1] A(g+8, 2t..2t+1), a[2] A(g, 2t+8..2t+9), a[3] A(g+8, 2t+8..2t+9);
// b0 holds B(2t..2t+1, g), b1 B(2t+8..2t+9, g); d[0..1] D(g, 2t..2t+1), d[2..3] D(g+8, 2t..2t+1). The lower
// index sits in the lower 16 bits of a register.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

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

} // namespace troupe::cuda
