// ops::prefetch on the CUDA backend: a small kernel that asks L2 for the lines of a few tensors (prefetch.global.L2 with
// the evict_last priority, so the weights streamed meanwhile, read once, go first), launched so that the kernel after it
// starts at once: the hint runs beside the big layers, and the small ones it names later read L2 instead of HBM.

#include <cstdlib>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kMaxPrefetched = 8;
struct prefetch_list {
  const char* data[kMaxPrefetched];
  int64_t bytes[kMaxPrefetched];
  int count;
};

__global__ void __launch_bounds__(256) prefetch_l2_kernel(prefetch_list list) {
  pdl_launch_dependents();  // the kernel after starts now; its wait covers this kernel's end
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int i = 0; i < list.count; ++i)
    for (int64_t line = first; line * 128 < list.bytes[i]; line += stride)
      asm volatile("prefetch.global.L2::evict_last [%0];\n" ::"l"(list.data[i] + line * 128));
  // Launched as a programmatic dependent: this kernel ends only after the one before it, so the kernel after, which
  // waits for this one, still waits for that one's output.
  pdl_wait();
}

} // namespace

int& prefetch_setting() {
  static int on = [] {
    const char* v = std::getenv("TROUPE_PREFETCH");
    return v && *v && *v != '0' ? 1 : 0;
  }();
  return on;
}

void launch_prefetch(std::span<const tensor> tensors, cudaStream_t stream) {
  if (prefetch_setting() <= 0 || tensors.empty()) return;
  prefetch_list list{};
  for (const tensor& t : tensors) {
    if (t.empty()) continue;
    if (list.count == kMaxPrefetched)
      throw std::invalid_argument("cuda prefetch: at most " + std::to_string(kMaxPrefetched) + " tensors a call");
    list.data[list.count] = static_cast<const char*>(t.data);
    list.bytes[list.count] = static_cast<int64_t>(t.num_bytes());
    ++list.count;
  }
  if (list.count == 0) return;
  launch_dependent(prefetch_l2_kernel, dim3(32), dim3(256), stream, "prefetch", list);
  check_launch("prefetch");
}

} // namespace troupe::cuda
