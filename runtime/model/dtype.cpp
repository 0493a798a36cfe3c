#include "runtime/model/dtype.hpp"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace troupe {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; troupe reads it in place and supports little-endian hosts only");
static_assert(std::numeric_limits<float>::is_iec559, "f16/bf16 conversions assume IEEE binary32 floats");

namespace {

struct dtype_row {
  dtype type;
  std::string_view spelling;
  std::size_t size;
  bool floating;
};

// Ordered as the enum, so the row of a dtype is at index static_cast<size_t>(t).
constexpr std::array<dtype_row, 17> rows{{
    {dtype::boolean, "BOOL", 1, false},
    {dtype::u8, "U8", 1, false},
    {dtype::i8, "I8", 1, false},
    {dtype::f8_e5m2, "F8_E5M2", 1, true},
    {dtype::f8_e4m3, "F8_E4M3", 1, true},
    {dtype::f8_e8m0, "F8_E8M0", 1, true},
    {dtype::i16, "I16", 2, false},
    {dtype::u16, "U16", 2, false},
    {dtype::f16, "F16", 2, true},
    {dtype::bf16, "BF16", 2, true},
    {dtype::i32, "I32", 4, false},
    {dtype::u32, "U32", 4, false},
    {dtype::f32, "F32", 4, true},
    {dtype::c64, "C64", 8, false},
    {dtype::f64, "F64", 8, true},
    {dtype::i64, "I64", 8, false},
    {dtype::u64, "U64", 8, false},
}};

constexpr bool rows_follow_enum() {
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (static_cast<std::size_t>(rows[i].type) != i) return false;
  }
  return true;
}
static_assert(rows_follow_enum());

// A double beyond float's range is undefined behaviour to cast; round it as IEEE would instead:
// below FLT_MAX + half an ulp (2^103) it is FLT_MAX, from there on infinity.
float f64_to_f32(double d) {
  constexpr double overflow = static_cast<double>(std::numeric_limits<float>::max()) + 0x1p103;
  if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max()) {
    const float magnitude =
        std::fabs(d) >= overflow ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::max();
    return d < 0 ? -magnitude : magnitude;
  }
  return static_cast<float>(d);
}

const dtype_row& row(dtype t) { return rows[static_cast<std::size_t>(t)]; }

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // safetensors offsets need not be aligned
  return v;
}

} // namespace

std::string_view name(dtype t) { return row(t).spelling; }
std::size_t size_in_bytes(dtype t) { return row(t).size; }
bool is_floating(dtype t) { return row(t).floating; }

std::optional<dtype> dtype_from_safetensors(std::string_view s) {
  for (const auto& r : rows) {
    if (r.spelling == s) return r.type;
  }
  return std::nullopt;
}

std::string_view supported_dtype_names() {
  return "BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64";
}

float rounded_to(dtype t, float value) {
  if (t == dtype::bf16) return bf16_to_f32(f32_to_bf16(value));
  if (t == dtype::f16) return f16_to_f32(f32_to_f16(value));
  return value;
}

float bf16_to_f32(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

std::uint16_t f32_to_bf16(float value) {
  const auto x = std::bit_cast<std::uint32_t>(value);
  if ((x & 0x7FFF'FFFFu) > 0x7F80'0000u) {
    // NaN: truncating could clear every payload bit and make infinity; set the quiet bit instead.
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  }
  // Round to nearest even: add just under half an ulp, plus one when the kept lsb is odd.
  // A carry out of the mantissa bumps the exponent, which is exactly right (up to infinity).
  const std::uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

float f16_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  const std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa × 2^-24 is exact in f32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F80'0000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

std::uint16_t f32_to_f16(float value) {
  const auto x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t magnitude = x & 0x7FFF'FFFFu;
  if (magnitude > 0x7F80'0000u) {
    return static_cast<std::uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));  // quiet NaN
  }
  // 65520 (= 65504 + half an ulp) is a tie between 65504 (odd mantissa) and 65536: even wins, i.e. infinity.
  if (magnitude >= 0x477F'F000u) return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (magnitude >= 0x3880'0000u) {
    // Normal f16: rebias the exponent (127 -> 15) and round away 13 mantissa bits to nearest even.
    const std::uint32_t rebiased = magnitude - (112u << 23);
    const std::uint32_t rounding = 0xFFFu + ((rebiased >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rebiased + rounding) >> 13));
  }
  // Subnormal f16 (or zero): the result is round(value / 2^-24) as an integer mantissa.
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself ties to even zero too)
  const std::uint32_t significand = (magnitude & 0x7F'FFFFu) | 0x80'0000u;
  const std::uint32_t shift = 126u - exponent;  // 14..24
  std::uint32_t result = significand >> shift;
  const std::uint32_t remainder = significand & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  if (remainder > half || (remainder == half && (result & 1u))) ++result;  // may reach 0x400: smallest normal
  return static_cast<std::uint16_t>(sign | result);
}

float f8_e4m3_to_f32(std::uint8_t bits) {
  const bool negative = bits & 0x80u;
  const int exponent = (bits >> 3) & 0xF;
  const int mantissa = bits & 0x7;
  float magnitude;
  if (exponent == 15 && mantissa == 7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  } else {
    magnitude = std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  }
  return negative ? -magnitude : magnitude;
}

// E5M2 has f16's exponent and the top two bits of its mantissa: it is the high byte of an f16.
float f8_e5m2_to_f32(std::uint8_t bits) { return f16_to_f32(static_cast<std::uint16_t>(bits << 8)); }

namespace {

// One 8-bit float format, as cuda_fp8.hpp's __nv_cvt_double_to_fp8 describes it with double bit patterns.
struct f8_format {
  std::uint64_t mantissa_bits;        // stored mantissa bits (3 or 2)
  std::uint32_t exponent_bias;        // 7 or 15
  std::uint64_t half_min_subnormal;   // at or below: zero
  std::uint64_t overflow_threshold;   // above: the largest finite (SATFINITE)
  std::uint64_t min_normal;
  std::uint8_t max_finite;
};

constexpr f8_format e4m3{3, 7, 0x3F50'0000'0000'0000u /* 2^-10 */, 0x407D'0000'0000'0000u /* 448 + 16 */,
                         0x3F90'0000'0000'0000u /* 2^-6 */, 0x7E};
// E5M2's threshold is 57344 + 4096 = 61440 less one ulp: 61440 itself ties to even, which is past the largest
// finite, so it saturates too.
constexpr f8_format e5m2{2, 15, 0x3EE0'0000'0000'0000u /* 2^-17 */, 0x40EE'0000'0000'0000u - 1 /* 61440 */,
                         0x3F10'0000'0000'0000u /* 2^-14 */, 0x7B};

// The host path of __nv_cvt_float_to_fp8 with __NV_SATFINITE: every f32 is exact as a double, so rounding the
// double once is rounding the float once.
std::uint8_t f32_to_f8(float value, const f8_format& f) {
  if (std::isnan(value)) return 0x7F;  // CUDA makes every NaN the canonical positive one first
  const auto x = std::bit_cast<std::uint64_t>(static_cast<double>(value));
  const std::uint64_t magnitude = x & 0x7FFF'FFFF'FFFF'FFFFu;
  const auto sign = static_cast<std::uint8_t>((x >> 63) << 7);
  const std::uint64_t half_ulp = std::uint64_t{1} << (52 - f.mantissa_bits - 1);  // of the f8, in the double
  const std::uint64_t mask = (std::uint64_t{1} << f.mantissa_bits) - 1;
  auto mantissa = static_cast<std::uint8_t>((x >> (52 - f.mantissa_bits)) & mask);  // truncated
  std::uint8_t result;
  if (magnitude <= f.half_min_subnormal) {
    result = 0;
  } else if (magnitude > f.overflow_threshold) {
    result = f.max_finite;
  } else if (magnitude >= f.min_normal) {
    const auto exponent = static_cast<std::uint8_t>(((x >> 52) & 0x7FF) - 1023 + f.exponent_bias);
    result = static_cast<std::uint8_t>((exponent << f.mantissa_bits) | mantissa);
    const std::uint64_t rest = x & (2 * half_ulp - 1);
    if (rest > half_ulp || (rest == half_ulp && (mantissa & 1u))) ++result;  // a carry bumps the exponent: right
  } else {
    // Subnormal: shift the significand (implicit bit included) right by how far the exponent is below normal.
    const int exponent = static_cast<int>((x >> 52) & 0x7FF) - 1023 + static_cast<int>(f.exponent_bias);
    const int shift = 1 - exponent;  // 1 .. mantissa_bits + 1
    mantissa = static_cast<std::uint8_t>(mantissa | (1u << f.mantissa_bits));
    result = static_cast<std::uint8_t>(mantissa >> shift);
    const std::uint64_t rest = (x | (std::uint64_t{1} << 52)) & ((half_ulp << (shift + 1)) - 1);
    if (rest > (half_ulp << shift) || (rest == (half_ulp << shift) && (result & 1u))) ++result;
  }
  return static_cast<std::uint8_t>(result | sign);
}

} // namespace

std::uint8_t f32_to_f8_e4m3(float value) { return f32_to_f8(value, e4m3); }
std::uint8_t f32_to_f8_e5m2(float value) { return f32_to_f8(value, e5m2); }

float f8_e8m0_to_f32(std::uint8_t bits) {
  if (bits == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(bits) - 127);
}

bool convert_to_f32(dtype type, std::span<const std::byte> src, std::span<float> out) {
  if (!is_floating(type) || src.size() / size_in_bytes(type) != out.size() ||
      src.size() % size_in_bytes(type) != 0) {
    return false;
  }
  const std::byte* p = src.data();
  const std::size_t n = out.size();
  switch (type) {
  case dtype::f32:
    if (n) std::memcpy(out.data(), p, n * sizeof(float));
    return true;
  case dtype::f64:
    for (std::size_t i = 0; i < n; ++i) out[i] = f64_to_f32(load<double>(p + 8 * i));
    return true;
  case dtype::f16:
    for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load<std::uint16_t>(p + 2 * i));
    return true;
  case dtype::bf16:
    for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load<std::uint16_t>(p + 2 * i));
    return true;
  case dtype::f8_e4m3:
    for (std::size_t i = 0; i < n; ++i) out[i] = f8_e4m3_to_f32(static_cast<std::uint8_t>(p[i]));
    return true;
  case dtype::f8_e5m2:
    for (std::size_t i = 0; i < n; ++i) out[i] = f8_e5m2_to_f32(static_cast<std::uint8_t>(p[i]));
    return true;
  case dtype::f8_e8m0:
    for (std::size_t i = 0; i < n; ++i) out[i] = f8_e8m0_to_f32(static_cast<std::uint8_t>(p[i]));
    return true;
  default:
    return false;
  }
}

} // namespace troupe
