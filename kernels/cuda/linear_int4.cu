// ops::linear_int4: 4-bit weights in troupe's layout (kernels/ops.hpp, int4_device_weight).
//
// Up to kMaxFusedRows rows (decode of one or a few requests, bandwidth-bound): the fused kernel streams each
// packed weight row once, 16 bytes (32 weights of one group) per lane per step, dequantizes in registers and
// accumulates every row of x against them. More rows: the weight is dequantized into a scratch matrix (one
// vector store per packed word) and the cuBLASLt GEMM runs on it. A fused tensor-core kernel (Marlin's
// approach) and a decode kernel that shares x across outputs are what replace them.
//
// troupe_gpu_check's op table compares both paths with the CPU twin at 0, 1 and 3 rows in f32, bf16 and f16;
// its timings print them at Qwen2.5-7B shapes.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kWarps = 8;  // warps per block of the fused kernel; each warp makes whole output features
constexpr int64_t kMaxFusedRows = 4;

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
        for (int j = 0; j < 8; ++j) w[i * 8 + j] = (static_cast<float>((words[i] >> (4 * j)) & 15u) - z) * s;
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
  for (int j = 0; j < 8; ++j) out.v[j] = from_float<T>((static_cast<float>((word >> (4 * j)) & 15u) - z) * s);
  store_vec(dense + n * k + c, out);
}

template <class T, int R>
void launch_gemv(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out, int rows, cudaStream_t stream) {
  const int n_out = static_cast<int>(w.qweight.dim(0)), k = static_cast<int>(x.dim(1));
  const unsigned blocks = static_cast<unsigned>((n_out + kWarps - 1) / kWarps);
  int4_gemv_kernel<T, R><<<blocks, kWarps * 32, 0, stream>>>(
      x.as<T>(), static_cast<const uint4*>(w.qweight.data), w.scales.as<T>(), w.zeros.as<T>(),
      bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), rows, n_out, k, w.group_size);
}

} // namespace

void launch_linear_int4(cuda_context& ctx, const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.qweight.dim(0), g = w.group_size;
  if (w.qweight.type != dtype::i32 || g <= 0 || g % 8 != 0 || k % g != 0 || w.qweight.row_elems() != k / 8 ||
      w.scales.type != x.type || w.zeros.type != x.type || out.type != x.type || w.scales.dim(0) != n ||
      w.scales.row_elems() != k / g || w.zeros.dim(0) != n || w.zeros.row_elems() != k / g || out.dim(0) != rows ||
      out.row_elems() != n || (!bias.empty() && (bias.type != x.type || bias.numel() != n)))
    throw std::invalid_argument("cuda linear_int4: x " + shape_of(x) + ", qweight " + shape_of(w.qweight) + ", scales " +
                                shape_of(w.scales) + ", zeros " + shape_of(w.zeros) + ", output " + shape_of(out) +
                                " and group " + std::to_string(g) + " disagree");
  if (rows == 0) return;
  make_current(ctx);
  // The fused kernel re-reads x for every output, so it wins only for the fewest rows. H200, 2026-12-05, gate_up
  // at Qwen2.5-7B shapes: fused 0.068 / 0.097 / 0.160 ms at 1 / 2 / 4 rows, but 0.299 and 1.2 ms at 8 and 32,
  // where dequantize + GEMM take 0.204 and 0.206 ms.
  const bool fused = rows <= kMaxFusedRows && k % 32 == 0 && g % 32 == 0 && reinterpret_cast<uintptr_t>(w.qweight.data) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
  if (fused) {
    dispatch_float(x.type, "linear_int4", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const int r = static_cast<int>(rows);
      if (r <= 1) launch_gemv<T, 1>(x, w, bias, out, r, ctx.stream);
      else if (r <= 2) launch_gemv<T, 2>(x, w, bias, out, r, ctx.stream);
      else launch_gemv<T, 4>(x, w, bias, out, r, ctx.stream);
    });
    check_launch("linear_int4");
    return;
  }
  // Larger batches: the dense weight in the scratch, then the GEMM.
  const size_t bytes = static_cast<size_t>(n * k) * size_in_bytes(x.type);
  if (bytes > ctx.int4_scratch_bytes) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(ctx.stream, &capturing), "linear_int4");
    if (capturing != cudaStreamCaptureStatusNone)
      throw std::logic_error("cuda linear_int4: the scratch weight must grow inside a graph capture; run the largest "
                             "layer once before capturing (model::warm_up does)");
    check(cudaStreamSynchronize(ctx.stream), "linear_int4");  // the old scratch may still be read
    if (ctx.int4_scratch) check(cudaFree(ctx.int4_scratch), "linear_int4");
    ctx.int4_scratch = nullptr;
    check(cudaMalloc(&ctx.int4_scratch, bytes), "linear_int4 scratch");
    ctx.int4_scratch_bytes = bytes;
  }
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
