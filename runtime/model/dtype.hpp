#pragma once
// Element types of checkpoint tensors, spelled as safetensors spells them, and the conversions
// between the 16-bit and 8-bit float formats and f32 that loading and the CPU reference need.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace troupe {

// Every whole-byte dtype of the safetensors format, declared in the order of the reference implementation's
// Dtype enum: writers lay tensors out by that order (descending), and serialize_safetensors copies it so its
// files are byte-identical to the Python package's. The sub-byte formats (F4, F6_E2M3, F6_E3M2) and AMD's
// FNUZ float8 variants are not supported: nothing troupe loads uses them.
enum class dtype : std::uint8_t {
  boolean,  // BOOL
  u8,       // U8
  i8,       // I8
  f8_e5m2,  // F8_E5M2 (IEEE-like: infinities and NaNs)
  f8_e4m3,  // F8_E4M3 (the "fn" variant: no infinities, NaN = S.1111.111)
  f8_e8m0,  // F8_E8M0 (exponent only, the MX scale format; 0xFF = NaN)
  i16,      // I16
  u16,      // U16
  f16,      // F16
  bf16,     // BF16
  i32,      // I32
  u32,      // U32
  f32,      // F32
  c64,      // C64 (two f32)
  f64,      // F64
  i64,      // I64
  u64,      // U64
};

// The safetensors spelling ("BF16", "F8_E4M3", "BOOL"), used in files and in error messages.
std::string_view name(dtype t);

// Bytes per element (1 for BOOL and the 8-bit floats, 8 for C64).
std::size_t size_in_bytes(dtype t);

// The dtype spelled `s` in a safetensors header; nullopt for anything else (spelling is exact, upper case).
std::optional<dtype> dtype_from_safetensors(std::string_view s);

// The comma-separated list of every supported spelling, for "supported: ..." in error messages.
std::string_view supported_dtype_names();

// True for the types to_f32 can convert: F64, F32, F16, BF16 and the 8-bit floats.
bool is_floating(dtype t);

// bf16 bits -> f32; exact (bf16 is the top half of an f32).
float bf16_to_f32(std::uint16_t bits);
// f32 -> bf16 bits, rounding to nearest even; overflow gives infinity, NaN stays a (quiet) NaN.
std::uint16_t f32_to_bf16(float value);

// `value` as a tensor of `t` holds it: rounded to nearest even for bf16 and f16, unchanged for any other type.
float rounded_to(dtype t, float value);

// IEEE binary16 bits -> f32; exact, subnormals included.
float f16_to_f32(std::uint16_t bits);
// f32 -> IEEE binary16 bits, rounding to nearest even; values from 65520 up become infinity,
// tiny values become f16 subnormals or signed zero, NaN stays a (quiet) NaN.
std::uint16_t f32_to_f16(float value);

// 8-bit float bits -> f32; exact.
float f8_e4m3_to_f32(std::uint8_t bits);
float f8_e5m2_to_f32(std::uint8_t bits);
float f8_e8m0_to_f32(std::uint8_t bits);

// f32 -> 8-bit float bits exactly as CUDA's __nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3 /
// __NV_E5M2) (cuda_fp8.hpp) and Hopper's cvt.rn.satfinite: round to nearest even; magnitudes beyond the
// largest finite (infinities included) saturate to it (±448 / ±57344); NaN becomes 0x7F; values at or
// below half the smallest subnormal become a zero of their sign. The FP8 KV cache's CPU twin rounds here.
std::uint8_t f32_to_f8_e4m3(float value);
std::uint8_t f32_to_f8_e5m2(float value);

// Converts out.size() little-endian elements of floating type `type` starting at `src` to f32.
// Needs is_floating(type) and src.size() == out.size() * size_in_bytes(type); returns false otherwise
// (nothing written). `src` may be unaligned.
bool convert_to_f32(dtype type, std::span<const std::byte> src, std::span<float> out);

} // namespace troupe
