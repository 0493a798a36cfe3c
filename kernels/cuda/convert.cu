// fp32 → the tensor's floating dtype on the device, so that uploads move 4 bytes per value over PCIe
// and no host thread spends seconds rounding billions of weights.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

template <class T> __global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<T>(src[i]);
}

} // namespace

void launch_convert_from_f32(const float* src, const tensor& dst, int64_t offset, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_float(dst.type, "convert", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t blocks = std::min<int64_t>((count + 255) / 256, 4096);
    convert_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(src, dst.as<T>() + offset, count);
  });
  check_launch("convert");
}

} // namespace troupe::cuda
