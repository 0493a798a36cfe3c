// The element-wise sum of several tensors in a fixed order, for ranks sharing one GPU
// (shared_gpu_communicator.cpp). Its CPU twin is the thread communicator's sum (kernels/cpu/
// thread_communicator.cpp): f32 accumulation in rank order, rounded once, so both give the same bits.

#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

struct summands {
  const void* tensors[kMaxSummands];
  int count;
};

// Only additions: no FMA contraction can change the bits, and each element is read before it is written
// by the same thread, so dst may be one of the summands.
template <class T> __global__ void sum_in_order_kernel(summands s, T* dst, int64_t begin, int64_t end) {
  for (int64_t i = begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < end; i += int64_t(gridDim.x) * blockDim.x) {
    float acc = to_float(static_cast<const T*>(s.tensors[0])[i]);
    for (int r = 1; r < s.count; ++r) acc += to_float(static_cast<const T*>(s.tensors[r])[i]);
    dst[i] = from_float<T>(acc);
  }
}

} // namespace

void launch_sum_in_order(std::span<const void* const> srcs, void* dst, dtype type, int64_t begin, int64_t end,
                         cudaStream_t stream) {
  if (srcs.empty() || srcs.size() > static_cast<size_t>(kMaxSummands))
    throw std::invalid_argument("cuda sum_in_order: needs 1 to " + std::to_string(kMaxSummands) + " tensors, not " +
                                std::to_string(srcs.size()));
  if (end <= begin) return;
  summands s{};
  std::copy(srcs.begin(), srcs.end(), s.tensors);
  s.count = static_cast<int>(srcs.size());
  dispatch_float(type, "sum_in_order", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t blocks = std::min<int64_t>((end - begin + 255) / 256, 4096);
    sum_in_order_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(s, static_cast<T*>(dst), begin, end);
  });
  check_launch("sum_in_order");
}

} // namespace troupe::cuda
