#pragma once
// What a cuda_ops holds: its device, stream, cuBLASLt handle and workspace, the GEMM plans it has made,
// and a staging buffer for fp32 uploads. Included only by kernels/cuda/*.

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kernels/cuda/op_profiler.hpp"
#include "kernels/tensor.hpp"

namespace troupe {

// What decides a GEMM's cuBLASLt plan. Alignments are those of the pointers of this call, since an
// algorithm chosen for 256-byte-aligned operands may not run on less aligned ones.
struct gemm_key {
  int64_t m = 0, n = 0, k = 0;  // out is [n, m] row-major: m output features, n tokens, k inputs
  dtype ab = dtype::f32, c = dtype::f32;
  bool bias = false;
  bool accumulate = false;
  bool outer_vec_scales = false;  // FP8: A's and B's scales are vectors (one per output feature, one per token)
  bool split_k = false;           // split-K variants timed beside the heuristic's candidates (cuda::gemm_settings())
  bool fast_accum = false;        // FP8: no promotion of the tensor cores' sums (cuda::gemm_settings().fp8_fast_accum)
  uint8_t candidates = 8;         // how many of the heuristic's algorithms the tuning times (cuda::gemm_settings())
  uint16_t align_a = 0, align_b = 0, align_c = 0, align_bias = 0;
  bool operator==(const gemm_key&) const = default;
};

struct gemm_key_hash {
  size_t operator()(const gemm_key& k) const {
    size_t h = std::hash<int64_t>{}(k.m);
    auto mix = [&h](uint64_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix(static_cast<uint64_t>(k.n));
    mix(static_cast<uint64_t>(k.k));
    mix((uint64_t(k.ab) << 8) | uint64_t(k.c) | (uint64_t(k.bias) << 16) | (uint64_t(k.accumulate) << 17) |
        (uint64_t(k.outer_vec_scales) << 18) | (uint64_t(k.split_k) << 19) | (uint64_t(k.candidates) << 20) |
        (uint64_t(k.fast_accum) << 28));
    mix((uint64_t(k.align_a) << 48) | (uint64_t(k.align_b) << 32) | (uint64_t(k.align_c) << 16) | k.align_bias);
    return h;
  }
};

struct gemm_plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct cuda_context {
  int device = 0;
  int sm_count = 0;  // the device's multiprocessors (kernels that size their grids to fill them)
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  float* staging = nullptr;  // device floats for upload()
  size_t staging_floats = 0;
  // fp32 partial results of split decode attention; allocated once, so graphs may hold its address.
  float* attention_workspace = nullptr;
  int64_t attention_workspace_floats = 0;
  // linear_int4's dequantized weight for batches above the fused kernel's rows; grown outside captures.
  void* int4_scratch = nullptr;
  size_t int4_scratch_bytes = 0;
  // linear_fp8's quantized activations and their scales, and its f32 products where the scales are applied
  // after the GEMM; grown outside captures.
  void* fp8_scratch = nullptr;
  size_t fp8_scratch_bytes = 0;
  void* fp8_products = nullptr;
  size_t fp8_products_bytes = 0;
  // FP8 GEMMs cuBLASLt has no algorithm for, or refused at run time: not asked again (linear.cpp).
  std::unordered_set<gemm_key, gemm_key_hash> fp8_refused;
  std::vector<cudaGraphExec_t> graphs;  // recorded by cuda_ops::end_capture
  // Scratch buffers replaced by grow_scratch while a graph lived: a graph captured before the growth replays with the
  // old address, so the old buffer stays allocated until the context goes.
  std::vector<void*> retired_scratch;
  std::unordered_map<gemm_key, gemm_plan, gemm_key_hash> plans;
  // The heuristic's algorithm per token-count bucket (linear.cpp).
  std::unordered_map<gemm_key, cublasLtMatmulAlgo_t, gemm_key_hash> bucket_algos;
  op_profiler profiler;

  ~cuda_context();
};

// Makes ctx's device the calling thread's current one; sets it only when another is current, so a call
// inside a stream capture stays a pure query.
inline void make_current(const cuda_context& ctx) {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != ctx.device) {
    const cudaError_t e = cudaSetDevice(ctx.device);
    if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: cudaSetDevice: ") + cudaGetErrorString(e));
  }
}

// Gives `buffer` (of `bytes`, on ctx's device) room for `need` bytes: when smaller, waits for ctx's stream (the old
// buffer may still be read) and reallocates it. Never inside a graph capture: throws std::logic_error naming `op`
// there (run the largest step once before capturing, as model::warm_up does). (cuda_ops.cpp)
void grow_scratch(cuda_context& ctx, void*& buffer, size_t& bytes, size_t need, const char* op);

// Runs out = x · weightᵀ (+ bias) (+ out when accumulating) on ctx's stream (linear.cpp).
void cublaslt_linear(cuda_context& ctx, const tensor& x, const tensor& weight, const tensor& bias, const tensor& out,
                     bool accumulate);

// The FP8 GEMM of linear_fp8 on ctx's stream: out[t][n] = (Σ_k xq[t][k] · weight[n][k]) (· weight_scales[n] ·
// x_scales[t] when both are given: cuBLASLt's outer-vector scaling) (+ bias[n]), fp32 accumulation, rounded once
// to out's dtype. xq [T, K] and weight [N, K] f8_e4m3; scales f32 device vectors [N] and [T]. Returns false, having
// run nothing, when cuBLASLt has no algorithm for it or refuses it (then remembered: it is not asked again).
bool cublaslt_linear_fp8(cuda_context& ctx, const tensor& xq, const tensor& weight, const float* weight_scales,
                         const float* x_scales, const tensor& bias, const tensor& out);

} // namespace troupe
