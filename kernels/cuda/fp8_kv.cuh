#pragma once
// The FP8 KV cache on the device (--kv-cache-dtype fp8|fp8_e4m3|fp8_e5m2): how rope_write_kv.cu rounds
// into it and how the attention kernels read it back. Included only by kernels/cuda/*.
//
// The cache holds code = round(x / scale) (ops.hpp, attention_shape). The attention kernels turn codes
// into bf16 / f16 / f32 values exactly (every e4m3 and e5m2 value is one of each) and leave the scales
// to f32 arithmetic: k_scale joins the softmax scale and v_scale multiplies the output, so a cache read
// adds no rounding of its own.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

#include "kernels/tensor.hpp"

namespace troupe::cuda {

inline bool is_fp8(dtype t) { return t == dtype::f8_e4m3 || t == dtype::f8_e5m2; }

// x rounded to the nearest even code, beyond the largest finite saturated, NaN to 0x7F: the conversion
// f32_to_f8_e4m3 / _e5m2 (runtime/model/dtype.hpp) copies, so the CPU twin writes the same bytes.
__device__ __forceinline__ uint8_t fp8_encode(float x, bool e5m2) {
  return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, e5m2 ? __NV_E5M2 : __NV_E4M3);
}

// The scale of a token's FP8 activations (linear_fp8's dynamic quantization, and the norm and activation kernels that
// quantize for it): max(amax / 448, 1 / (448 · 512)), the IEEE quotient whatever the compiler's division flags, as
// fp8_dynamic_scale (runtime/model/fp8_formats.hpp) computes it; the codes are fp8_activation_code's.
__device__ __forceinline__ float fp8_activation_scale(float amax) {
  return fmaxf(__fdiv_rn(amax, 448.0f), 1.0f / (448.0f * 512.0f));
}
// x's e4m3 code over its token's scale.
__device__ __forceinline__ uint8_t fp8_activation_code(float x, float scale) {
  return fp8_encode(__fdiv_rn(x, scale), false);
}

// One code as f32, exactly.
__host__ __device__ __forceinline__ float fp8_decode(uint8_t code, bool e5m2) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(code, e5m2 ? __NV_E5M2 : __NV_E4M3)));
}

// Four codes (lowest byte first) as four values of T (bf16 or f16), exactly, as two registers of pairs
// (lowest first): integer operations and one multiply by a power of two, no conversion instructions.
//
// Each code's 7 magnitude bits land at the bottom of T's exponent field and the top of its mantissa (a
// right shift of the byte by T's exponent bits less the code's), its sign on T's sign: T then holds the
// value times 2^-(T's exponent bias - the code's), normal or subnormal alike; the multiply by that power
// of two (exact; f16 and bf16 arithmetic keeps subnormals) restores it. (A NaN code reads as a finite
// value; codes written by fp8_encode are never NaN unless their input was.)
template <class T> __host__ __device__ __forceinline__ void fp8x4_to(uint32_t codes, bool e5m2, uint32_t (&out)[2]) {
  static_assert(std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>);
  constexpr bool bf16 = std::is_same_v<T, __nv_bfloat16>;
  // Exponent bits: bf16 8, f16 5; e4m3 4, e5m2 5. Biases: bf16 127, f16 15; e4m3 7, e5m2 15.
  const int shift = (bf16 ? 8 : 5) - (e5m2 ? 5 : 4);
  const uint32_t mask = 0x7F007F00u >> shift;
  // Codes 0, 1 in the high bytes of the two halves of `lo`; codes 2, 3 likewise in `hi`.
#ifdef __CUDA_ARCH__
  const uint32_t lo = __byte_perm(codes, 0, 0x1404), hi = __byte_perm(codes, 0, 0x3424);
#else
  const uint32_t lo = ((codes & 0xFFu) << 8) | ((codes & 0xFF00u) << 16);
  const uint32_t hi = ((codes & 0xFF0000u) >> 8) | (codes & 0xFF000000u);
#endif
  const uint32_t pairs[2] = {((lo >> shift) & mask) | (lo & 0x80008000u), ((hi >> shift) & mask) | (hi & 0x80008000u)};
  if (shift == 0) {  // e5m2 is the top byte of an f16 already
    out[0] = pairs[0];
    out[1] = pairs[1];
    return;
  }
  if constexpr (bf16) {
    // 2^120 (e4m3) or 2^112 (e5m2) as bf16: exponent field 247 or 239.
    const uint32_t p = e5m2 ? 0x77807780u : 0x7B807B80u;
    const __nv_bfloat162 factor = *reinterpret_cast<const __nv_bfloat162*>(&p);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const __nv_bfloat162 v = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&pairs[i]), factor);
      out[i] = *reinterpret_cast<const uint32_t*>(&v);
    }
  } else {
    const uint32_t p = 0x5C005C00u;  // 2^8 as f16 (e4m3 only: e5m2 returned above)
    const __half2 factor = *reinterpret_cast<const __half2*>(&p);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const __half2 v = __hmul2(*reinterpret_cast<const __half2*>(&pairs[i]), factor);
      out[i] = *reinterpret_cast<const uint32_t*>(&v);
    }
  }
}

// Four codes (lowest byte first) as four f16 values, exactly, as two registers of pairs (lowest first), by the
// hardware's conversion where it has one: cvt.rn.f16x2.e4m3x2, one instruction a pair. e5m2 is the top byte of an f16
// already (fp8x4_to's byte permute alone). The attention kernel's F16 form (paged_attention_mma.cu) reads the cache so.
__device__ __forceinline__ void fp8x4_to_f16_cvt(uint32_t codes, bool e5m2, uint32_t (&out)[2]) {
  if (e5m2) return fp8x4_to<__half>(codes, true, out);
  const __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes & 0xFFFFu), __NV_E4M3);
  const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes >> 16), __NV_E4M3);
  out[0] = uint32_t(lo.x) | (uint32_t(lo.y) << 16);
  out[1] = uint32_t(hi.x) | (uint32_t(hi.y) << 16);
}

} // namespace troupe::cuda
