#pragma once
// The sum of one 16-byte run of e4m3 weight codes against x's values at the same k, shared by the one-row FP8 products
// (linear_fp8.cu's W8A16 GEMV and qgemv): one helper, so their sums come out in one order.

#include <cuda_fp8.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace troupe::cuda {

// acc + the 16 products of w's e4m3 codes by x's values at the same k, each added by one fmaf.
__device__ __forceinline__ float dot16_e4m3_f32(const uint4& w, const float (&x)[16], float acc) {
  const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const __half2_raw wr = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(ws[i] >> (16 * h)), __NV_E4M3);
      const float2 wf = __half22float2(*reinterpret_cast<const __half2*>(&wr));
      acc = fmaf(wf.x, x[4 * i + 2 * h], acc);
      acc = fmaf(wf.y, x[4 * i + 2 * h + 1], acc);
    }
  return acc;
}

} // namespace troupe::cuda
