// Dummy weights made on the GPU (ops::fill_random): each element computed from its index in the full tensor
// as random_weight_run (runtime/model/weight_names.cpp) computes it on the host, so a rank's slice of a 70B
// model takes milliseconds instead of a minute of host time and a copy of 4 bytes a weight.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// The value at flat index i of the full tensor: splitmix64's output after i + 1 steps from `state`, mapped as
// random_weight_run maps it. The roundings are spelled out (__fmul_rn, __fadd_rn) so the compiler cannot
// contract them into an FMA that the host does not do.
__device__ __forceinline__ float random_value(uint64_t state, int32_t kind, int64_t i) {
  uint64_t z = state + static_cast<uint64_t>(i + 1) * kGolden;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z = z ^ (z >> 31);
  const float u = __fmul_rn(static_cast<float>(z >> 40), 1.0f / 16777216.0f);
  const float centred = __fadd_rn(__fmul_rn(2.0f, u), -1.0f);  // exact: u has 24 bits
  const float std_dev = 0.02f;
  switch (kind) {
    case 0: return __fmul_rn(centred, __fmul_rn(std_dev, sqrtf(3.0f)));
    case 1: return __fadd_rn(1.0f, __fmul_rn(centred, 0.1f));
    default: return __fmul_rn(centred, std_dev);
  }
}

template <class T>
__global__ void fill_random_kernel(random_slice s, T* __restrict__ out, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    float v = 0.0f;
    if (s.dim != 0) v = random_value(s.state, s.kind, r * s.full_cols + s.begin + c);
    else if (r < s.length) v = random_value(s.state, s.kind, (s.begin + r) * s.full_cols + c);
    out[e] = from_float<T>(v);
  }
}

} // namespace

void launch_fill_random(const random_slice& s, const tensor& out, cudaStream_t stream) {
  const int64_t rows = out.dim(0), cols = out.row_elems();
  if (rows * cols == 0) return;
  dispatch_float(out.type, "fill_random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t blocks = std::min<int64_t>((rows * cols + 255) / 256, 65536);
    fill_random_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(s, out.as<T>(), rows, cols);
  });
  check_launch("fill_random");
}

} // namespace troupe::cuda
