// RMS norm, the fused residual add + RMS norm that ends every attention and MLP block (also quantizing its output
// for an FP8 linear), and Qwen3's per-head RMS norm of q and k.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 256;

// One block per row; the sum of squares is taken in fp32. x may alias out: each thread reads an
// element before it writes that same element.
template <class T, int N>
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(const T* x, const T* __restrict__ weight, T* out,
                                                            int hidden, float eps) {
  pdl_launch_dependents();  // the linear after the norm may start streaming its 4-bit weights
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * hidden;
  T* o = out + static_cast<int64_t>(blockIdx.x) * hidden;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x * N; i < hidden; i += kThreads * N) {
    const vec<T, N> v = load_vec<T, N>(xr + i);
#pragma unroll
    for (int k = 0; k < N; ++k) sum_sq += to_float(v.v[k]) * to_float(v.v[k]);
  }
  const float inv = rsqrtf(block_sum(sum_sq) / hidden + eps);
  for (int i = threadIdx.x * N; i < hidden; i += kThreads * N) {
    const vec<T, N> v = load_vec<T, N>(xr + i), w = load_vec<T, N>(weight + i);
    vec<T, N> r;
#pragma unroll
    for (int k = 0; k < N; ++k) r.v[k] = from_float<T>(to_float(w.v[k]) * (to_float(v.v[k]) * inv));
    store_vec(o + i, r);
  }
}

// residual += x, rounded to T as the stream is stored (as vLLM's fused_add_rms_norm does); the norm is
// taken of the rounded sum and written to x. Fp8: then each row quantized for the FP8 linear after it, exactly as
// linear_fp8's quantization of x would (the max of |x| over the row as rounded to T, then each element divided by
// the row's scale: fp8_activation_scale, or *static_scale), codes into codes [rows, hidden], scales into scales.
template <class T, int N, bool Fp8>
__global__ void __launch_bounds__(kThreads)
    add_rms_norm_kernel(T* __restrict__ x, T* __restrict__ residual, const T* __restrict__ weight, int hidden, float eps,
                        const float* __restrict__ static_scale, uint8_t* __restrict__ codes, float* __restrict__ scales) {
  pdl_launch_dependents();  // the linear after the norm may start streaming its 4-bit weights
  T* xr = x + static_cast<int64_t>(blockIdx.x) * hidden;
  T* rr = residual + static_cast<int64_t>(blockIdx.x) * hidden;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x * N; i < hidden; i += kThreads * N) {
    const vec<T, N> a = load_vec<T, N>(xr + i);
    vec<T, N> r = load_vec<T, N>(rr + i);
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
  for (int i = threadIdx.x * N; i < hidden; i += kThreads * N) {
    const vec<T, N> r = load_vec<T, N>(rr + i), w = load_vec<T, N>(weight + i);
    vec<T, N> o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      o.v[k] = from_float<T>(to_float(w.v[k]) * (to_float(r.v[k]) * inv));
      if constexpr (Fp8) amax = fmaxf(amax, fabsf(to_float(o.v[k])));
    }
    store_vec(xr + i, o);
  }
  if constexpr (Fp8) {
    const float s = static_scale ? *static_scale : fp8_activation_scale(block_max(amax));  // uniform over the block
    if (threadIdx.x == 0) scales[blockIdx.x] = s;
    uint8_t* c = codes + static_cast<int64_t>(blockIdx.x) * hidden;
    for (int i = threadIdx.x * N; i < hidden; i += kThreads * N) {  // this thread's own elements of xr, just written
      const vec<T, N> o = load_vec<T, N>(xr + i);
      vec<uint8_t, N> q;
#pragma unroll
      for (int k = 0; k < N; ++k) q.v[k] = fp8_activation_code(to_float(o.v[k]), s);
      store_vec(c + i, q);
    }
  }
}

constexpr int kHeadsPerBlock = 4;  // one warp per head

// Qwen3's q_norm / k_norm: warp w of block b normalizes head row b * kHeadsPerBlock + w of the
// [T * (nH + nKV)] q and k head rows, in place; the sum of squares in fp32.
template <class T>
__global__ void __launch_bounds__(32 * kHeadsPerBlock) qk_norm_kernel(T* qkv, const T* __restrict__ q_weight,
                                                                      const T* __restrict__ k_weight, int64_t num_rows,
                                                                      int heads_per_token, int num_q_heads, int64_t width,
                                                                      int head_dim, float eps) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kHeadsPerBlock + threadIdx.x / 32;
  if (row >= num_rows) return;
  const int64_t token = row / heads_per_token;
  const int head = static_cast<int>(row % heads_per_token);
  T* x = qkv + token * width + static_cast<int64_t>(head) * head_dim;  // k heads follow the q heads
  const T* w = head < num_q_heads ? q_weight : k_weight;
  float sum_sq = 0.0f;
  for (int i = lane; i < head_dim; i += 32) sum_sq += to_float(x[i]) * to_float(x[i]);
  const float inv = rsqrtf(warp_sum(sum_sq) / head_dim + eps);
  for (int i = lane; i < head_dim; i += 32) x[i] = from_float<T>(to_float(w[i]) * (to_float(x[i]) * inv));
}

void check_norm_args(const tensor& x, const tensor& weight, const tensor& out, const char* op) {
  if (x.type != weight.type || x.type != out.type)
    throw std::invalid_argument(std::string("cuda ") + op + ": x, weight and output must share a dtype");
  if (weight.numel() != x.dim(-1) || out.numel() != x.numel())
    throw std::invalid_argument(std::string("cuda ") + op + ": x " + shape_of(x) + ", weight " + shape_of(weight) +
                                ", output " + shape_of(out));
}

} // namespace

void launch_rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out, cudaStream_t stream) {
  check_norm_args(x, weight, out, "rms_norm");
  const int64_t rows = x.dim(0), hidden = x.dim(-1);
  if (rows == 0) return;
  dispatch_float(x.type, "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int h = static_cast<int>(hidden);
    if (can_vectorize<T>(hidden, {x.data, weight.data, out.data}))
      rms_norm_kernel<T, vec16<T>><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x.as<T>(), weight.as<T>(), out.as<T>(), h, eps);
    else
      rms_norm_kernel<T, 1><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x.as<T>(), weight.as<T>(), out.as<T>(), h, eps);
  });
  check_launch("rms_norm");
}

void launch_qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
                    float eps, cudaStream_t stream) {
  const int64_t d = shape.head_dim, heads = int64_t{shape.num_heads} + shape.num_kv_heads;
  if (qkv.type != q_weight.type || qkv.type != k_weight.type)
    throw std::invalid_argument("cuda qk_norm: qkv, q_weight and k_weight must share a dtype");
  if (q_weight.numel() != d || k_weight.numel() != d || qkv.dim(-1) != (heads + shape.num_kv_heads) * d)
    throw std::invalid_argument("cuda qk_norm: qkv " + shape_of(qkv) + ", q_weight " + shape_of(q_weight) +
                                ", k_weight " + shape_of(k_weight) + " for heads " + std::to_string(shape.num_heads) +
                                "+" + std::to_string(shape.num_kv_heads) + " of " + std::to_string(d));
  const int64_t rows = qkv.dim(0) * heads;
  if (rows == 0) return;
  dispatch_float(qkv.type, "qk_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto blocks = static_cast<unsigned>((rows + kHeadsPerBlock - 1) / kHeadsPerBlock);
    qk_norm_kernel<T><<<blocks, 32 * kHeadsPerBlock, 0, stream>>>(qkv.as<T>(), q_weight.as<T>(), k_weight.as<T>(), rows,
                                                                 static_cast<int>(heads), shape.num_heads, qkv.dim(-1),
                                                                 static_cast<int>(d), eps);
  });
  check_launch("qk_norm");
}

void launch_add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps, cudaStream_t stream) {
  launch_add_rms_norm_fp8(x, residual, weight, eps, tensor{}, fp8_activations{}, stream);
}

void launch_add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                             const tensor& input_scale, const fp8_activations& out, cudaStream_t stream) {
  const char* op = out.codes.empty() ? "add_rms_norm" : "add_rms_norm_fp8";
  check_norm_args(x, weight, residual, op);
  const int64_t rows = x.dim(0), hidden = x.dim(-1);
  const bool fp8 = !out.codes.empty();
  if (fp8 && (out.codes.type != dtype::f8_e4m3 || out.codes.dim(0) != rows || out.codes.row_elems() != hidden ||
              out.scales.type != dtype::f32 || out.scales.numel() != rows ||
              (!input_scale.empty() && (input_scale.type != dtype::f32 || input_scale.numel() != 1))))
    throw std::invalid_argument(std::string("cuda ") + op + ": x " + shape_of(x) + ", codes " + shape_of(out.codes) +
                                " " + std::string(name(out.codes.type)) + ", scales " + shape_of(out.scales) + " disagree");
  if (rows == 0) return;
  const float* static_scale = input_scale.empty() ? nullptr : input_scale.as<float>();
  auto* codes = fp8 ? out.codes.as<uint8_t>() : nullptr;
  auto* scales = fp8 ? out.scales.as<float>() : nullptr;
  dispatch_float(x.type, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int h = static_cast<int>(hidden);
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x.as<T>(), residual.as<T>(), weight.as<T>(), h, eps,
                                                                   static_scale, codes, scales);
    };
    const bool vectors = can_vectorize<T>(hidden, {x.data, residual.data, weight.data}) &&
                         (!fp8 || reinterpret_cast<uintptr_t>(codes) % vec16<T> == 0);
    if (vectors) launch(fp8 ? add_rms_norm_kernel<T, vec16<T>, true> : add_rms_norm_kernel<T, vec16<T>, false>);
    else launch(fp8 ? add_rms_norm_kernel<T, 1, true> : add_rms_norm_kernel<T, 1, false>);
  });
  check_launch(op);
}

} // namespace troupe::cuda
