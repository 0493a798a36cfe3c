#pragma once
// Which CUDA kernel runs a 4-bit product (kernels/cuda/linear_int4.cu's launch_linear_int4), apart from CUDA so CI
// pins the row ranges (tests/int4_path_rules_test.cpp). Header only: the CUDA library includes it without linking
// anything. The figures behind each threshold are in kernels/cuda/launchers.hpp (int4_switches) and
// kernels/cuda/NOTES.md.

#include <bit>
#include <cstdint>

namespace troupe {

enum class int4_path {
  wgmma,       // int4_wgmma_kernel, the warpgroup-MMA GEMM (linear_int4_wgmma.cu)
  gemm,        // int4_gemm_kernel, the shared-memory GEMM
  decode,      // the decode kernels that stream each weight once (ring, wide, cp.async: launch_mma)
  cuda_cores,  // the f32 CUDA-core kernel (checks against references)
  dequantize,  // the weight dequantized into scratch, then cuBLASLt's GEMM
  fp8,         // the weight requantized to FP8 per output channel into scratch, then linear_fp8 (W4A8: x quantized too)
};

constexpr int64_t kInt4CudaCoreRows = 4;    // f32 rows the CUDA-core kernel takes
constexpr int64_t kInt4DecodeRows = 32;     // rows the decode kernels take
constexpr int64_t kInt4GemmAutoRows = 64;   // the shared-memory GEMM by default: 17 to this
constexpr int64_t kInt4GemmRows = 512;      // ... and forced (int4_switches::gemm 1): up to this
constexpr int64_t kInt4WgmmaAutoRows = 48;  // the wgmma GEMM by default: above this (to wgmma_max_rows)

// The product: rows x k by the weight's groups of `group`, activations f32 or not (bf16 / f16), x and the packed
// words 16-byte aligned or not.
struct int4_product {
  int64_t rows = 0, k = 0, group = 0;
  bool f32 = false, aligned = true;
};

// The switches the choice reads (int4_switches of the same names).
struct int4_path_switches {
  int wgmma = 1;  // 0 never, 1 by rows, 2 every product it can take
  int64_t wgmma_max_rows = 1024, wgmma_no_split_rows = 0;
  int gemm = -1;  // 0 never, -1 by rows, 1 up to kInt4GemmRows
  int64_t fp8_rows = 0;  // products of this many rows or more on the FP8 form (0: never)
};

// The first kernel that takes the product, in this order: the FP8 form (any product of fp8_rows rows or more, where
// fp8_rows is set: int4_fp8_rows(), which the CPU backend follows too), the wgmma GEMM (bf16 / f16, K a multiple of 64, groups a
// power of two; above kInt4WgmmaAutoRows rows up to wgmma_max_rows, 0 any, and above wgmma_no_split_rows, where set,
// only where `wgmma_splits()` says it would not split K), the shared-memory GEMM (K a multiple of 128; 17 to
// kInt4GemmAutoRows rows), the decode kernels (up to kInt4DecodeRows), the CUDA-core kernel (f32, up to
// kInt4CudaCoreRows), else dequantize + cuBLAS. Every kernel but the last needs K and the groups multiples of 32 and
// the product aligned. wgmma_splits is asked only where its answer decides.
template <class Splits>
int4_path choose_int4_path(const int4_product& p, const int4_path_switches& s, Splits&& wgmma_splits) {
  const bool fits = p.aligned && p.k % 32 == 0 && p.group % 32 == 0;
  const bool tensor_cores = fits && !p.f32;
  if (s.fp8_rows > 0 && p.rows >= s.fp8_rows) return int4_path::fp8;
  if (tensor_cores && p.k % 64 == 0 && std::has_single_bit(static_cast<uint64_t>(p.group))) {
    if (s.wgmma == 2) return int4_path::wgmma;
    if (s.wgmma == 1 && p.rows > kInt4WgmmaAutoRows && (s.wgmma_max_rows == 0 || p.rows <= s.wgmma_max_rows) &&
        (s.wgmma_no_split_rows == 0 || p.rows <= s.wgmma_no_split_rows || !wgmma_splits()))
      return int4_path::wgmma;
  }
  if (tensor_cores && p.k % 128 == 0 &&
      ((s.gemm > 0 && p.rows <= kInt4GemmRows) || (s.gemm < 0 && p.rows > 16 && p.rows <= kInt4GemmAutoRows)))
    return int4_path::gemm;
  if (tensor_cores && p.rows <= kInt4DecodeRows) return int4_path::decode;
  if (fits && p.f32 && p.rows <= kInt4CudaCoreRows) return int4_path::cuda_cores;
  return int4_path::dequantize;
}

constexpr int64_t kInt4W4a8MaxRows = 1024;  // the FP8 form's fused kernel: at most this many rows

// Whether the FP8 form's fused kernel (int4_settings().w4a8) takes a product by its shape: bf16 / f16, 1 to
// kInt4W4a8MaxRows rows, K a multiple of its 128-k stages, groups a multiple of 64 (each thread's 64 k of a stage
// within one group). The CUDA launcher adds what is not shape: the channels' scales made at load, aligned words.
constexpr bool int4_w4a8_shape(const int4_product& p) {
  return !p.f32 && p.rows > 0 && p.rows <= kInt4W4a8MaxRows && p.k % 128 == 0 && p.group % 64 == 0;
}

} // namespace troupe
