#pragma once
// How every FP8-weight product (linear_fp8.cu, linear_fp8_wgmma.cu) turns its f32 sum into an output: the sum of row t,
// feature j times both scales (+ bias[j]), before the one rounding to T. Included only by kernels/cuda/*.

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

template <class T>
__device__ __forceinline__ float fp8_output(float sum, const float* __restrict__ x_scales,
                                            const float* __restrict__ w_scales, const T* __restrict__ bias, int64_t t,
                                            int64_t j) {
  const float value = sum * (x_scales[t] * w_scales[j]);
  return bias ? value + to_float(bias[j]) : value;
}

} // namespace troupe::cuda
