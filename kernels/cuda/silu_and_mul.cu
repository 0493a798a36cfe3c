// The gated MLP activation: silu(gate) * up, in fp32, rounded once.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 256;

// grid (T, ceil(I / (kThreads * N))): each thread makes N outputs of one row.
template <class T, int N>
__global__ void __launch_bounds__(kThreads) silu_and_mul_kernel(const T* __restrict__ x, T* __restrict__ out, int inter) {
  pdl_launch_dependents();  // down_proj may start streaming its 4-bit weights
  const int i = (blockIdx.y * kThreads + threadIdx.x) * N;
  if (i >= inter) return;
  const T* gate = x + static_cast<int64_t>(blockIdx.x) * 2 * inter;
  const vec<T, N> g = load_vec<T, N>(gate + i), u = load_vec<T, N>(gate + inter + i);
  vec<T, N> r;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const float a = to_float(g.v[k]);
    r.v[k] = from_float<T>(a / (1.0f + __expf(-a)) * to_float(u.v[k]));
  }
  store_vec(out + static_cast<int64_t>(blockIdx.x) * inter + i, r);
}

} // namespace

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
