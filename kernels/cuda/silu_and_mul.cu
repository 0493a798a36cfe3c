// The gated MLP activation: silu(gate) * up, in fp32, rounded once; and the same quantized for an FP8 linear.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 256;

// Outputs i .. i + N - 1 of a row whose gate half starts at `gate` (its up half `inter` further on).
template <class T, int N> __device__ __forceinline__ vec<T, N> silu_and_mul_values(const T* gate, int inter, int i) {
  const vec<T, N> g = load_vec<T, N>(gate + i), u = load_vec<T, N>(gate + inter + i);
  vec<T, N> r;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    r.v[k] = from_float<T>(silu_times(to_float(g.v[k]), to_float(u.v[k])));
  }
  return r;
}

// grid (T, ceil(I / (kThreads * N))): each thread makes N outputs of one row.
template <class T, int N>
__global__ void __launch_bounds__(kThreads) silu_and_mul_kernel(const T* __restrict__ x, T* __restrict__ out, int inter) {
  pdl_launch_dependents();  // down_proj may start streaming its 4-bit weights
  const int i = (blockIdx.y * kThreads + threadIdx.x) * N;
  if (i >= inter) return;
  const T* gate = x + static_cast<int64_t>(blockIdx.x) * 2 * inter;
  store_vec(out + static_cast<int64_t>(blockIdx.x) * inter + i, silu_and_mul_values<T, N>(gate, inter, i));
}

// silu_and_mul's row blockIdx.x, each value made exactly as silu_and_mul_kernel makes it, quantized for the FP8 linear
// after it as linear_fp8's quantization of that row would: first the values for their max (or *static_scale), then
// again for the codes, N a thread at a time. 256 threads a block, or 1024 for steps of few rows (fp8_quantize_threads).
template <class T, int N>
__global__ void __launch_bounds__(kWideQuantizeThreads)
    silu_and_mul_fp8_kernel(const T* __restrict__ x, int inter, const float* __restrict__ static_scale,
                            uint8_t* __restrict__ codes, float* __restrict__ scales) {
  pdl_launch_dependents();  // down_proj may start streaming its weights
  const T* gate = x + static_cast<int64_t>(blockIdx.x) * 2 * inter;
  auto values = [&](int i) { return silu_and_mul_values<T, N>(gate, inter, i); };
  float s;
  if (static_scale) {
    s = *static_scale;
  } else {
    float amax = 0.0f;
    for (int i = threadIdx.x * N; i < inter; i += blockDim.x * N) {
      const vec<T, N> r = values(i);
#pragma unroll
      for (int k = 0; k < N; ++k) amax = fmaxf(amax, fabsf(to_float(r.v[k])));
    }
    s = fp8_activation_scale(block_max(amax));
  }
  if (threadIdx.x == 0) scales[blockIdx.x] = s;
  uint8_t* c = codes + static_cast<int64_t>(blockIdx.x) * inter;
  for (int i = threadIdx.x * N; i < inter; i += blockDim.x * N) {
    const vec<T, N> r = values(i);
    vec<uint8_t, N> q;
#pragma unroll
    for (int k = 0; k < N; ++k) q.v[k] = fp8_activation_code(to_float(r.v[k]), s);
    store_vec(c + i, q);
  }
}

// 512 threads and at most 5 vectors a thread (20,480 bf16 outputs a row: Qwen2.5-7B's 18,944, Llama-3-8B's 14,336), so
// that two blocks fit an SM's registers: a 256-row step is one wave on 132 SMs.
constexpr int kSinglePassThreads = 512;
constexpr int kSinglePassMaxVecs = 5;

// silu_and_mul_fp8_kernel's scale and codes of row blockIdx.x from one read of the row (fp8_settings().single_pass):
// thread i keeps values i·N, (i + 512)·N, ... (Vecs vectors of N, those past the row skipped) in registers between the
// max and the codes. The values are made as silu_and_mul_kernel makes them and the max of the same set is the same in
// any order, so the codes and scale are the two-pass kernel's bit for bit.
template <class T, int N, int Vecs>
__global__ void __launch_bounds__(kSinglePassThreads, 2)
    silu_and_mul_fp8_single_pass_kernel(const T* __restrict__ x, int inter, const float* __restrict__ static_scale,
                                        uint8_t* __restrict__ codes, float* __restrict__ scales) {
  pdl_launch_dependents();  // down_proj may start streaming its weights
  const T* gate = x + static_cast<int64_t>(blockIdx.x) * 2 * inter;
  vec<T, N> r[Vecs];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < Vecs; ++j) {
    const int i = (j * kSinglePassThreads + static_cast<int>(threadIdx.x)) * N;
    if (i >= inter) continue;
    r[j] = silu_and_mul_values<T, N>(gate, inter, i);
#pragma unroll
    for (int k = 0; k < N; ++k) amax = fmaxf(amax, fabsf(to_float(r[j].v[k])));
  }
  const float s = static_scale ? *static_scale : fp8_activation_scale(block_max(amax));
  if (threadIdx.x == 0) scales[blockIdx.x] = s;
  uint8_t* c = codes + static_cast<int64_t>(blockIdx.x) * inter;
#pragma unroll
  for (int j = 0; j < Vecs; ++j) {
    const int i = (j * kSinglePassThreads + static_cast<int>(threadIdx.x)) * N;
    if (i >= inter) continue;
    vec<uint8_t, N> q;
#pragma unroll
    for (int k = 0; k < N; ++k) q.v[k] = fp8_activation_code(to_float(r[j].v[k]), s);
    store_vec(c + i, q);
  }
}

} // namespace

void launch_silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out, cudaStream_t stream) {
  const int64_t rows = x.dim(0), inter = x.dim(-1) / 2;
  if (x.dim(-1) != 2 * inter || out.codes.type != dtype::f8_e4m3 || out.codes.dim(0) != rows ||
      out.codes.row_elems() != inter || out.scales.type != dtype::f32 || out.scales.numel() != rows ||
      (!input_scale.empty() && (input_scale.type != dtype::f32 || input_scale.numel() != 1)))
    throw std::invalid_argument("cuda silu_and_mul_fp8: x " + shape_of(x) + ", codes " + shape_of(out.codes) + " " +
                                std::string(name(out.codes.type)) + ", scales " + shape_of(out.scales) + " disagree");
  if (rows == 0) return;
  const float* static_scale = input_scale.empty() ? nullptr : input_scale.as<float>();
  dispatch_float(x.type, "silu_and_mul_fp8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(rows), fp8_quantize_threads(rows), 0, stream>>>(
          x.as<T>(), static_cast<int>(inter), static_scale, out.codes.as<uint8_t>(), out.scales.as<float>());
    };
    constexpr int N = vec16<T>;
    const bool vectors = can_vectorize<T>(inter, {x.data}) && reinterpret_cast<uintptr_t>(out.codes.data) % N == 0;
    const int64_t vecs = (inter + kSinglePassThreads * N - 1) / (kSinglePassThreads * N);
    if (vectors && fp8_settings().single_pass && vecs <= kSinglePassMaxVecs) {
      auto single = [&](auto kernel) {
        kernel<<<static_cast<unsigned>(rows), kSinglePassThreads, 0, stream>>>(
            x.as<T>(), static_cast<int>(inter), static_scale, out.codes.as<uint8_t>(), out.scales.as<float>());
      };
      if (vecs <= 1) single(silu_and_mul_fp8_single_pass_kernel<T, N, 1>);
      else if (vecs <= 2) single(silu_and_mul_fp8_single_pass_kernel<T, N, 2>);
      else if (vecs <= 3) single(silu_and_mul_fp8_single_pass_kernel<T, N, 3>);
      else if (vecs <= 4) single(silu_and_mul_fp8_single_pass_kernel<T, N, 4>);
      else single(silu_and_mul_fp8_single_pass_kernel<T, N, kSinglePassMaxVecs>);
    } else if (vectors) {
      launch(silu_and_mul_fp8_kernel<T, N>);
    } else {
      launch(silu_and_mul_fp8_kernel<T, 1>);
    }
  });
  check_launch("silu_and_mul_fp8");
}

void launch_silu_and_mul(const tensor& x, const tensor& out, cudaStream_t stream) {
  const int64_t rows = x.dim(0), inter = out.dim(-1);
  if (x.type != out.type || x.dim(-1) != 2 * inter || out.dim(0) != rows)
    throw std::invalid_argument("cuda silu_and_mul: x " + shape_of(x) + " and output " + shape_of(out) + " disagree");
  if (rows == 0) return;
  dispatch_float(x.type, "silu_and_mul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int n = static_cast<int>(inter);
    if (can_vectorize<T>(inter, {x.data, out.data})) {
      constexpr int N = vec16<T>;
      const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((inter + kThreads * N - 1) / (kThreads * N)));
      silu_and_mul_kernel<T, N><<<grid, kThreads, 0, stream>>>(x.as<T>(), out.as<T>(), n);
    } else {
      const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((inter + kThreads - 1) / kThreads));
      silu_and_mul_kernel<T, 1><<<grid, kThreads, 0, stream>>>(x.as<T>(), out.as<T>(), n);
    }
  });
  check_launch("silu_and_mul");
}

} // namespace troupe::cuda
