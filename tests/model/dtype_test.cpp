#include "runtime/model/dtype.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace troupe {
namespace {

float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }
constexpr float inf = std::numeric_limits<float>::infinity();

TEST(dtype, spells_every_type_as_safetensors_does_and_parses_it_back) {
  const std::vector<std::pair<dtype, std::size_t>> all = {
      {dtype::boolean, 1}, {dtype::u8, 1},  {dtype::i8, 1},   {dtype::f8_e4m3, 1}, {dtype::f8_e5m2, 1},
      {dtype::f8_e8m0, 1}, {dtype::i16, 2}, {dtype::u16, 2},  {dtype::f16, 2},     {dtype::bf16, 2},
      {dtype::i32, 4},     {dtype::u32, 4}, {dtype::f32, 4},  {dtype::i64, 8},     {dtype::u64, 8},
      {dtype::f64, 8},     {dtype::c64, 8}};
  for (const auto& [t, size] : all) {
    EXPECT_EQ(size_in_bytes(t), size) << name(t);
    EXPECT_EQ(dtype_from_safetensors(name(t)), t) << name(t);
    EXPECT_NE(supported_dtype_names().find(name(t)), std::string_view::npos) << name(t);
  }
  EXPECT_EQ(name(dtype::bf16), "BF16");
  EXPECT_EQ(name(dtype::boolean), "BOOL");
  EXPECT_EQ(name(dtype::f8_e4m3), "F8_E4M3");
}

TEST(dtype, refuses_unknown_and_lower_case_spellings) {
  EXPECT_EQ(dtype_from_safetensors("bf16"), std::nullopt);
  EXPECT_EQ(dtype_from_safetensors("F33"), std::nullopt);
  EXPECT_EQ(dtype_from_safetensors(""), std::nullopt);
  EXPECT_EQ(dtype_from_safetensors("F4"), std::nullopt);
}

TEST(dtype, counts_only_real_number_formats_as_floating) {
  EXPECT_TRUE(is_floating(dtype::f32));
  EXPECT_TRUE(is_floating(dtype::bf16));
  EXPECT_TRUE(is_floating(dtype::f8_e4m3));
  EXPECT_FALSE(is_floating(dtype::i32));
  EXPECT_FALSE(is_floating(dtype::boolean));
  EXPECT_FALSE(is_floating(dtype::c64));
}

TEST(bf16, converts_exact_values_both_ways) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0x4049), 3.140625f);
  EXPECT_EQ(f32_to_bf16(inf), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-inf), 0xFF80);
  EXPECT_EQ(bf16_to_f32(0xFF80), -inf);
}

TEST(bf16, rounds_to_nearest_with_ties_to_even) {
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F80'8000)), 0x3F80);  // 1 + 2^-8: tie, 0x3F80 is even
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F81'8000)), 0x3F82);  // 1 + 3·2^-8: tie, 0x3F82 is even
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F80'8001)), 0x3F81);  // just above the tie rounds up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F80'7FFF)), 0x3F80);  // just below rounds down
  EXPECT_EQ(f32_to_bf16(from_bits(0xBF80'8001)), 0xBF81);  // negative values round by magnitude
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // past bf16's largest: infinity
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F7F'7FFF)), 0x7F7F);             // still below the tie: largest finite
}

TEST(bf16, keeps_subnormals_and_rounds_them_to_even) {
  EXPECT_EQ(f32_to_bf16(from_bits(0x0001'0000)), 0x0001);  // smallest bf16 subnormal, exact
  EXPECT_EQ(f32_to_bf16(from_bits(0x0000'8000)), 0x0000);  // half of it: tie to even zero
  EXPECT_EQ(f32_to_bf16(from_bits(0x0001'8000)), 0x0002);  // 1.5 of it: tie to even 2
  EXPECT_EQ(bf16_to_f32(0x0001), from_bits(0x0001'0000));
  EXPECT_EQ(f32_to_bf16(from_bits(0x007F'FFFF)), 0x0080);  // largest f32 subnormal rounds up to a normal
}

TEST(bf16, keeps_nan_a_nan_even_when_truncation_would_make_infinity) {
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()), 0x7FC0);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7F80'0001)), 0x7FC0);  // signalling NaN, payload only in the low bits
  EXPECT_EQ(f32_to_bf16(from_bits(0xFF80'0001)), 0xFFC0);
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7FC1)));
}

TEST(bf16, round_trips_every_bit_pattern) {
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = bf16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << h;
    } else {
      ASSERT_EQ(f32_to_bf16(f), h) << h;
    }
  }
}

TEST(f16, converts_exact_values_both_ways) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);  // smallest normal
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x7C00), inf);
  EXPECT_EQ(f16_to_f32(0xFC00), -inf);
  EXPECT_EQ(f32_to_f16(inf), 0x7C00);
  EXPECT_EQ(f32_to_f16(-inf), 0xFC00);
}

TEST(f16, rounds_to_nearest_with_ties_to_even_and_overflows_to_infinity) {
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3C00);      // tie, even stays
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);  // tie, rounds to even 2
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);  // below 65504 + half an ulp
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // the tie: 65536 is "even", i.e. infinity
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
  EXPECT_EQ(f32_to_f16(2047.0f / 1024 * 0x1p-15f), 0x0400);  // just under the smallest normal: rounds up to it
}

TEST(f16, produces_and_reads_subnormals) {
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);          // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);          // half of it: tie to even zero
  EXPECT_EQ(f32_to_f16(-0x1p-25f), 0x8000);         // keeps the sign of zero
  EXPECT_EQ(f32_to_f16(0x1p-25f * 1.0001f), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);      // 1.5 ulp: tie to even 2
  EXPECT_EQ(f32_to_f16(1023 * 0x1p-24f), 0x03FF);   // largest subnormal
  EXPECT_EQ(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);  // tie between it and the smallest normal: even wins
  EXPECT_EQ(f32_to_f16(1e-30f), 0x0000);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x83FF), -1023 * 0x1p-24f);
}

TEST(f16, keeps_nan_a_quiet_nan_with_its_sign) {
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::quiet_NaN()), 0x7E00);
  EXPECT_EQ(f32_to_f16(from_bits(0x7F80'0001)), 0x7E00);
  EXPECT_EQ(f32_to_f16(from_bits(0xFFC0'0000)), 0xFE00);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0xFE00)));
}

TEST(f16, round_trips_every_bit_pattern) {
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ(f32_to_f16(f) & 0x7E00, 0x7E00) << h;
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << h;
    }
  }
}

#if defined(__FLT16_MAX__)
// The compiler's own _Float16 conversion (round to nearest even) as an oracle over a spread of f32 patterns.
TEST(f16, matches_the_compilers_float16_conversion_across_the_f32_range) {
  for (std::uint64_t b = 0; b <= 0xFFFF'FFFFu; b += 997) {
    const float f = from_bits(static_cast<std::uint32_t>(b));
    if (std::isnan(f)) continue;
    const _Float16 expected = static_cast<_Float16>(f);
    std::uint16_t bits;
    std::memcpy(&bits, &expected, 2);
    ASSERT_EQ(f32_to_f16(f), bits) << std::hex << b;
  }
}
#endif

TEST(f8, converts_e4m3_e5m2_and_e8m0_exactly) {
  EXPECT_EQ(f8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x7E), 448.0f);  // largest finite: e4m3fn has no infinity
  EXPECT_EQ(f8_e4m3_to_f32(0xFE), -448.0f);
  EXPECT_EQ(f8_e4m3_to_f32(0x01), 0x1p-9f);  // smallest subnormal
  EXPECT_EQ(f8_e4m3_to_f32(0x78), 256.0f);   // S.1111.000 is a number, not infinity
  EXPECT_TRUE(std::isnan(f8_e4m3_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(f8_e4m3_to_f32(0xFF)));
  EXPECT_EQ(f8_e5m2_to_f32(0x3C), 1.0f);
  EXPECT_EQ(f8_e5m2_to_f32(0x7B), 57344.0f);
  EXPECT_EQ(f8_e5m2_to_f32(0x01), 0x1p-16f);
  EXPECT_EQ(f8_e5m2_to_f32(0x7C), inf);
  EXPECT_TRUE(std::isnan(f8_e5m2_to_f32(0x7D)));
  EXPECT_EQ(f8_e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(f8_e8m0_to_f32(0), 0x1p-127f);
  EXPECT_EQ(f8_e8m0_to_f32(254), 0x1p127f);
  EXPECT_TRUE(std::isnan(f8_e8m0_to_f32(0xFF)));
}

// The reference the encoders are checked against, derived from the decoders alone: between two neighbouring
// codes a value goes to the nearer one, a midpoint to the one with an even mantissa (even code).
struct f8_case {
  const char* name;
  std::uint8_t (*encode)(float);
  float (*decode)(std::uint8_t);
  std::uint8_t max_finite;
};
const f8_case f8_formats[] = {{"e4m3", f32_to_f8_e4m3, f8_e4m3_to_f32, 0x7E}, {"e5m2", f32_to_f8_e5m2, f8_e5m2_to_f32, 0x7B}};

TEST(f8, every_finite_code_round_trips_through_f32) {
  for (const f8_case& f : f8_formats)
    for (int c = 0; c < 256; ++c) {
      const auto code = static_cast<std::uint8_t>(c);
      if ((code & 0x7F) > f.max_finite) continue;  // infinities and NaNs: below
      const float v = f.decode(code);
      ASSERT_EQ(f.encode(v), code) << f.name << " code " << c << " value " << v;
    }
}

TEST(f8, rounds_to_the_nearer_code_and_ties_to_the_even_one) {
  for (const f8_case& f : f8_formats)
    for (std::uint8_t c = 0; c < f.max_finite; ++c)
      for (const std::uint8_t sign : {std::uint8_t{0}, std::uint8_t{0x80}}) {
        const float lo = f.decode(c | sign), hi = f.decode((c + 1) | sign);
        const float mid = (lo + hi) / 2;  // exact: both are few-bit floats far from f32's limits
        const std::uint8_t even = (c % 2 == 0 ? c : c + 1) | sign;
        ASSERT_EQ(f.encode(mid), even) << f.name << " tie between codes " << int(c) << " and " << int(c + 1);
        ASSERT_EQ(f.encode(std::nextafter(mid, lo)), c | sign) << f.name << " just below the tie after " << int(c);
        ASSERT_EQ(f.encode(std::nextafter(mid, hi)), (c + 1) | sign) << f.name << " just above the tie after " << int(c);
        // A dense sweep between the two codes: 64 evenly spaced values, each to the nearer code.
        for (int i = 1; i < 64; ++i) {
          const float x = lo + (hi - lo) * static_cast<float>(i) / 64;
          if (x == mid) continue;
          const std::uint8_t nearer = std::fabs(x - lo) < std::fabs(hi - x) ? c | sign : (c + 1) | sign;
          ASSERT_EQ(f.encode(x), nearer) << f.name << " " << x;
        }
      }
}

TEST(f8, saturates_beyond_the_largest_finite_as_cuda_satfinite_does) {
  EXPECT_EQ(f32_to_f8_e4m3(464.0f), 0x7E);   // the tie between 448 and the 480 e4m3fn lacks: the even 448
  EXPECT_EQ(f32_to_f8_e4m3(1e6f), 0x7E);
  EXPECT_EQ(f32_to_f8_e4m3(-1e6f), 0xFE);
  EXPECT_EQ(f32_to_f8_e4m3(inf), 0x7E);
  EXPECT_EQ(f32_to_f8_e4m3(-inf), 0xFE);
  EXPECT_EQ(f32_to_f8_e5m2(61440.0f), 0x7B);  // the tie with 65536 (the even one, infinity) saturates
  EXPECT_EQ(f32_to_f8_e5m2(inf), 0x7B);
  EXPECT_EQ(f32_to_f8_e5m2(-inf), 0xFB);
  EXPECT_EQ(f32_to_f8_e5m2(std::numeric_limits<float>::max()), 0x7B);
}

TEST(f8, makes_every_nan_the_positive_canonical_nan_and_keeps_the_sign_of_zero) {
  for (const float nan : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                          from_bits(0x7F80'0001u), from_bits(0xFFC0'1234u)}) {
    EXPECT_EQ(f32_to_f8_e4m3(nan), 0x7F);
    EXPECT_EQ(f32_to_f8_e5m2(nan), 0x7F);
  }
  EXPECT_EQ(f32_to_f8_e4m3(-0.0f), 0x80);
  EXPECT_EQ(f32_to_f8_e4m3(0x1p-10f), 0x00);  // half the smallest subnormal ties to the even zero
  EXPECT_EQ(f32_to_f8_e4m3(-0x1p-10f), 0x80);
  EXPECT_EQ(f32_to_f8_e4m3(std::nextafter(0x1p-10f, 1.0f)), 0x01);
  EXPECT_EQ(f32_to_f8_e5m2(0x1p-17f), 0x00);
  EXPECT_EQ(f32_to_f8_e5m2(std::nextafter(0x1p-17f, 1.0f)), 0x01);
  EXPECT_EQ(f32_to_f8_e5m2(-1e-30f), 0x80);
}

#if __has_include(<cuda_fp8.h>)
} // namespace
} // namespace troupe
#include <cuda_fp8.h>
namespace troupe {
namespace {
// With the CUDA headers at hand: CUDA's own host conversion over a stride through every f32 bit pattern.
TEST(f8, matches_cuda_nv_cvt_float_to_fp8_satfinite) {
  for (std::uint64_t b = 0; b <= 0xFFFF'FFFFu; b += 251) {
    const float x = from_bits(static_cast<std::uint32_t>(b));
    ASSERT_EQ(f32_to_f8_e4m3(x), __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)) << std::hex << b;
    ASSERT_EQ(f32_to_f8_e5m2(x), __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)) << std::hex << b;
  }
}
#endif

TEST(convert_to_f32, reads_unaligned_little_endian_elements) {
  // One byte of offset so no element is aligned.
  const std::vector<std::uint8_t> raw = {0xAA, 0x80, 0x3F, 0x00, 0xC0, 0x00, 0x00};  // bf16 1.0, -2.0, 0.0
  std::vector<float> out(3);
  ASSERT_TRUE(convert_to_f32(dtype::bf16, std::as_bytes(std::span(raw)).subspan(1, 6), out));
  EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, 0.0f}));
}

TEST(convert_to_f32, rounds_f64_beyond_float_range_as_ieee_does) {
  const double values[] = {1e300, -1e300, 0.5, static_cast<double>(std::numeric_limits<float>::max()) + 0x1p102};
  std::vector<float> out(4);
  ASSERT_TRUE(convert_to_f32(dtype::f64, std::as_bytes(std::span(values)), out));
  EXPECT_EQ(out[0], inf);
  EXPECT_EQ(out[1], -inf);
  EXPECT_EQ(out[2], 0.5f);
  EXPECT_EQ(out[3], std::numeric_limits<float>::max());
}

TEST(convert_to_f32, refuses_integer_types_and_mismatched_sizes) {
  const std::vector<std::byte> four(4);
  std::vector<float> one(1), two(2);
  EXPECT_FALSE(convert_to_f32(dtype::i32, four, one));
  EXPECT_FALSE(convert_to_f32(dtype::f32, four, two));
  EXPECT_FALSE(convert_to_f32(dtype::f16, std::span(four).first(3), one));
  EXPECT_TRUE(convert_to_f32(dtype::f16, four, two));
}

} // namespace
} // namespace troupe

namespace troupe {

TEST(dtype, rounded_to_keeps_what_a_tensor_of_the_type_holds) {
  const float v = 1.0f + std::ldexp(1.0f, -9) + std::ldexp(1.0f, -12);  // between bf16's steps, on no f16 step either
  EXPECT_EQ(rounded_to(dtype::bf16, v), bf16_to_f32(f32_to_bf16(v)));
  EXPECT_EQ(rounded_to(dtype::f16, v), f16_to_f32(f32_to_f16(v)));
  EXPECT_NE(rounded_to(dtype::bf16, v), v);
  EXPECT_NE(rounded_to(dtype::f16, v), v);
  EXPECT_EQ(rounded_to(dtype::f32, v), v);
}

} // namespace troupe
