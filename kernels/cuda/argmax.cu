// Greedy sampling on the device: the index of each row's largest logit, so that a greedy step
// downloads one integer per sequence instead of a whole vocabulary row.

#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 1024;

// (value, index) with the larger value winning and the smaller index winning ties, as std::max_element does.
__device__ __forceinline__ void keep_better(float& v, int& i, float ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// One block per row.
__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int32_t* __restrict__ out,
                                                          int64_t vocab) {
  const float* row = logits + blockIdx.x * vocab;
  float best = -INFINITY;
  int index = INT32_MAX;
  for (int64_t c = threadIdx.x; c < vocab; c += kThreads) keep_better(best, index, row[c], static_cast<int>(c));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    keep_better(best, index, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
  __shared__ float values[32];
  __shared__ int indices[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    values[warp] = best;
    indices[warp] = index;
  }
  __syncthreads();
  if (warp != 0) return;
  best = values[lane];
  index = indices[lane];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    keep_better(best, index, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
  // A row of NaNs keeps index INT32_MAX; report 0 rather than an id outside the vocabulary.
  if (lane == 0) out[blockIdx.x] = index == INT32_MAX ? 0 : index;
}

} // namespace

void launch_argmax(const tensor& logits, const tensor& out, cudaStream_t stream) {
  if (logits.type != dtype::f32 || out.type != dtype::i32 || out.numel() < logits.dim(0))
    throw std::invalid_argument("cuda argmax: logits must be f32 [R, V] and out i32 [R]");
  if (logits.dim(0) == 0) return;
  argmax_kernel<<<static_cast<unsigned>(logits.dim(0)), kThreads, 0, stream>>>(logits.as<float>(), out.as<int32_t>(),
                                                                                 logits.row_elems());
  check_launch("argmax");
}

} // namespace troupe::cuda
