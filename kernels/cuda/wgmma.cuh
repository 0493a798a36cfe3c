#pragma once
// Hopper's warpgroup MMA (wgmma, sm_90a), as linear_int4_wgmma.cu and linear_fp8_wgmma.cu use it: a warpgroup (4 consecutive warps, the
// first a multiple of 4) computes D[64 x N] += A[64 x 16] · B[16 x N] asynchronously, A from registers, B from
// shared memory through a descriptor, D in registers (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-
// Accumulate Instructions").
//
// Fragments, with warp w of the warpgroup, g = lane / 4 and t = lane % 4 (the same per warp as mma.sync m16n8k16's A
// and accumulators, mma.cuh): a[0] holds A(16w + g, 2t..2t+1), a[1] A(16w + g + 8, 2t..2t+1), a[2] A(16w + g,
// 2t+8..2t+9), a[3] A(16w + g + 8, 2t+8..2t+9); d[4i + e] holds D(16w + g + 8·(e / 2), 8i + 2t + e % 2).
//
// B here is K-major with the 128-byte swizzle: column n of B (16-bit elements) is a run of 64 k, 128 bytes, rows of
// B tile placed 128 bytes apart, 8 of them a 1024-byte atom aligned to 1024; the 16-byte chunk c of row n sits at chunk
// position c ^ (n % 8) of its row (wgmma_swizzled_chunk). The descriptor of the k16 slice kk starts 32·kk bytes into
// the tile; its stride between atoms of 8 rows is 1024 bytes.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace troupe::cuda {

// Where 16-byte chunk c of row n of a 128-byte-swizzled tile lies within the row.
__device__ __forceinline__ int wgmma_swizzled_chunk(int c, int n) { return c ^ (n & 7); }

// The shared-memory descriptor of a K-major, 128-byte-swizzled B tile starting at shared address `start` (the tile
// base, 1024-aligned, plus 32 bytes per k16 slice): start >> 4 in bits 0-13, the leading offset (unused by this layout;
// 16 bytes) in 16-29, the stride between 8-row atoms (1024 bytes) in 32-45, base offset 0, swizzle mode 1 (128 bytes)
// in 62-63.
__device__ __forceinline__ uint64_t wgmma_desc_k_major_sw128(uint32_t start) {
  return static_cast<uint64_t>((start & 0x3FFFF) >> 4) | (uint64_t{16 >> 4} << 16) | (uint64_t{1024 >> 4} << 32) |
         (uint64_t{1} << 62);
}

// Orders this warpgroup's register writes (A fragments, accumulators) before the wgmma that follow.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
// Closes the group of the wgmma this warpgroup issued since the last commit.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N of this warpgroup's committed groups are still running.
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins a register in program order for the compiler (an empty asm that reads and writes it): the accumulators after
// wgmma_wait, the A fragments before wgmma_fence, so that no ordinary instruction moves across the asynchronous MMA.
__device__ __forceinline__ void wgmma_pin(float& r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void wgmma_pin(uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ __forceinline__ void wgmma_pin(uint64_t& r) { asm volatile("" : "+l"(r)::"memory"); }

#define TROUPE_WG_D8(d, i)                                                                                             \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]),        \
      "+f"(d[i + 7])
#define TROUPE_WG_D32(d, i) TROUPE_WG_D8(d, i), TROUPE_WG_D8(d, i + 8), TROUPE_WG_D8(d, i + 16), TROUPE_WG_D8(d, i + 24)
// The accumulators' operand numbers, 32 at a time.
#define TROUPE_WG_Q0 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                          \
                     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define TROUPE_WG_Q1 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "                 \
                     "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define TROUPE_WG_Q2 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "                 \
                     "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define TROUPE_WG_Q3 "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "    \
                     "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
// One wgmma m64nNk16 of type TY, always accumulating (scale-d the immediate 1: a predicate made by setp would be an
// ordinary instruction defining a wgmma input, which makes ptxas serialize the wgmma of a pipelined loop): the
// accumulators' numbers D, then A's four registers and the descriptor (A0 .. DESC), then the accumulators' operands.
#define TROUPE_WGMMA(TY, N, D, A0, A1, A2, A3, DESC, ...)                                                            \
  asm volatile("wgmma.mma_async.sync.aligned.m64n" N "k16.f32." TY "." TY " {" D "}, {" A0 ", " A1 ", " A2 ", " A3    \
               "}, " DESC ", 1, 1, 1, 0;\n"                                                                           \
               : __VA_ARGS__                                                                                          \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b))
#define TROUPE_WGMMA_N64(TY) TROUPE_WGMMA(TY, "64", TROUPE_WG_Q0, "%32", "%33", "%34", "%35", "%36", TROUPE_WG_D32(d, 0))
#define TROUPE_WGMMA_N128(TY)                                                                                          \
  TROUPE_WGMMA(TY, "128", TROUPE_WG_Q0 ", " TROUPE_WG_Q1, "%64", "%65", "%66", "%67", "%68", TROUPE_WG_D32(d, 0),      \
               TROUPE_WG_D32(d, 32))
#define TROUPE_WGMMA_N256(TY)                                                                                          \
  TROUPE_WGMMA(TY, "256", TROUPE_WG_Q0 ", " TROUPE_WG_Q1 ", " TROUPE_WG_Q2 ", " TROUPE_WG_Q3, "%128", "%129", "%130",   \
               "%131", "%132", TROUPE_WG_D32(d, 0), TROUPE_WG_D32(d, 32), TROUPE_WG_D32(d, 64), TROUPE_WG_D32(d, 96))

// d += A · B for one k16 slice: A (64 x 16, T = bf16 or f16) from this warpgroup's registers, B (16 x N) by desc_b;
// f32 accumulators, N / 2 a thread. Issued asynchronously: d and a stay untouched until wgmma_wait.
template <class T, int N> __device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b) {
  static_assert(N == 64 || N == 128 || N == 256, "wgmma_rs: N is 64, 128 or 256");
  constexpr bool half = std::is_same_v<T, __half>;
  if constexpr (N == 64) {
    if constexpr (half) TROUPE_WGMMA_N64("f16");
    else TROUPE_WGMMA_N64("bf16");
  } else if constexpr (N == 128) {
    if constexpr (half) TROUPE_WGMMA_N128("f16");
    else TROUPE_WGMMA_N128("bf16");
  } else {
    if constexpr (half) TROUPE_WGMMA_N256("f16");
    else TROUPE_WGMMA_N256("bf16");
  }
}

// d = A · B (Accumulate false: the slice starts a fresh sum, scale-d 0) or d += A · B for one k32 slice of e4m3 codes,
// A (64 x 32) and B (32 x N) both from shared memory by descriptor, K-major and 128-byte swizzled: 32 codes are the
// 32 bytes a bf16 k16 slice spans, so the descriptors are the same (linear_fp8_wgmma.cu). f32 accumulators, N / 2 a
// thread, laid out as wgmma_rs's.
#define TROUPE_WGMMA_SS(N, SD, D, DA, DB, ...)                                                                         \
  asm volatile("wgmma.mma_async.sync.aligned.m64n" N "k32.f32.e4m3.e4m3 {" D "}, " DA ", " DB ", " SD ", 1, 1;\n"      \
               : __VA_ARGS__                                                                                          \
               : "l"(desc_a), "l"(desc_b))
template <int N, bool Accumulate>
__device__ __forceinline__ void wgmma_ss_e4m3(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b) {
  static_assert(N == 64 || N == 128 || N == 256, "wgmma_ss_e4m3: N is 64, 128 or 256");
  if constexpr (N == 64) {
    if constexpr (Accumulate) TROUPE_WGMMA_SS("64", "1", TROUPE_WG_Q0, "%32", "%33", TROUPE_WG_D32(d, 0));
    else TROUPE_WGMMA_SS("64", "0", TROUPE_WG_Q0, "%32", "%33", TROUPE_WG_D32(d, 0));
  } else if constexpr (N == 128) {
    if constexpr (Accumulate)
      TROUPE_WGMMA_SS("128", "1", TROUPE_WG_Q0 ", " TROUPE_WG_Q1, "%64", "%65", TROUPE_WG_D32(d, 0), TROUPE_WG_D32(d, 32));
    else
      TROUPE_WGMMA_SS("128", "0", TROUPE_WG_Q0 ", " TROUPE_WG_Q1, "%64", "%65", TROUPE_WG_D32(d, 0), TROUPE_WG_D32(d, 32));
  } else {
    static_assert(Accumulate, "wgmma_ss_e4m3: N 256 only accumulates");
    TROUPE_WGMMA_SS("256", "1", TROUPE_WG_Q0 ", " TROUPE_WG_Q1 ", " TROUPE_WG_Q2 ", " TROUPE_WG_Q3, "%128", "%129",
                    TROUPE_WG_D32(d, 0), TROUPE_WG_D32(d, 32), TROUPE_WG_D32(d, 64), TROUPE_WG_D32(d, 96));
  }
}

#undef TROUPE_WGMMA_SS
#undef TROUPE_WGMMA_N256
#undef TROUPE_WGMMA_N128
#undef TROUPE_WGMMA_N64
#undef TROUPE_WGMMA
#undef TROUPE_WG_Q3
#undef TROUPE_WG_Q2
#undef TROUPE_WG_Q1
#undef TROUPE_WG_Q0
#undef TROUPE_WG_D32
#undef TROUPE_WG_D8

} // namespace troupe::cuda
