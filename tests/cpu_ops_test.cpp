// What the CPU reference ops compute, pinned by hand on tiny inputs: the ops that tensor parallelism, 4-bit and
// FP8 weights added (embedding_shard, copy_columns, linear_int4, linear_fp8). tests/op_rows_test checks every op's
// row invariants; troupe_gpu_check compares the CUDA ops with these.

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "tests/support/scoped_value.hpp"

using namespace troupe;

namespace {

device_buffer f32(cpu_ops& b, std::initializer_list<int64_t> shape, const std::vector<float>& values) {
  device_buffer t = b.alloc(dtype::f32, shape);
  b.upload(t, values);
  return t;
}

device_buffer i32(cpu_ops& b, const std::vector<int32_t>& values) {
  device_buffer t = b.alloc(dtype::i32, {static_cast<int64_t>(values.size())});
  b.upload_raw(t, values.data());
  return t;
}

std::vector<float> read(cpu_ops& b, const tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  b.download(v, t);
  return v;
}

} // namespace

TEST(cpu_ops, embedding_shard_looks_up_its_own_rows_and_zeroes_the_others) {
  cpu_ops b;
  auto table = f32(b, {2, 2}, {10, 11, 20, 21});  // vocabulary rows 5 and 6
  auto ids = i32(b, {6, 4, 5, 7});
  auto out = f32(b, {4, 2}, std::vector<float>(8, -1));
  b.embedding_shard(ids, table, 5, out);
  EXPECT_EQ(read(b, out), (std::vector<float>{20, 21, 0, 0, 10, 11, 0, 0}));
}

// Qwen3's q_norm / k_norm: two tokens of 2 q heads, 1 k head and 1 v head of 2. With eps 0.5, heads [3, 4]
// and [-4, 3] have mean square 12.5, so they scale by 1/sqrt(13) = 0.2773501; [1, -1] by 1/sqrt(1.5) =
// 0.8164966; [2, 2] by 1/sqrt(4.5) = 0.4714045; [0, 0] stays 0. The q weight is ones, the k weight [1, 0.5];
// v is untouched.
TEST(cpu_ops, qk_norm_normalizes_each_q_and_k_head_by_its_own_rms_and_leaves_v) {
  cpu_ops b;
  //                           q0      q1      k       v
  auto qkv = f32(b, {2, 8}, {3, 4,  1, -1,  2, 2,  7, 8,
                             0, 0,  -4, 3,  1, -1, 9, 9});
  auto ones = f32(b, {2}, {1, 1});
  auto k_weight = f32(b, {2}, {1, 0.5f});
  b.qk_norm(qkv, ones, k_weight, attention_shape{2, 1, 2, 16, 1.0f}, 0.5f);
  const std::vector<float> expected{0.8320503f, 1.1094004f, 0.8164966f, -0.8164966f, 0.9428090f, 0.4714045f, 7, 8,
                                    0, 0, -1.1094004f, 0.8320503f, 0.8164966f, -0.4082483f, 9, 9};
  const std::vector<float> got = read(b, qkv);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-6) << "element " << i;
}

TEST(cpu_ops, copy_columns_keeps_the_first_columns_of_each_row) {
  cpu_ops b;
  auto x = f32(b, {2, 3}, {1, 2, 3, 4, 5, 6});
  auto out = f32(b, {2, 2}, std::vector<float>(4, -1));
  b.copy_columns(x, out);
  EXPECT_EQ(read(b, out), (std::vector<float>{1, 2, 4, 5}));
  EXPECT_THROW(b.copy_columns(out, x), std::invalid_argument);  // cannot widen
}

// One output row of 16 inputs in two groups of 8: word 0 holds q = 0, 1, ..., 7 (lowest nibble first),
// word 1 holds 15 everywhere; group 0 has scale 0.5 and zero point 2, group 1 scale 2 and zero point 8.
TEST(cpu_ops, linear_int4_dequantizes_lowest_nibble_first_with_each_groups_scale_and_zero) {
  const troupe::testing::scoped_value<int64_t> w4a16(int4_fp8_rows(), 0);
  cpu_ops b;
  auto qweight = i32(b, {0x76543210, static_cast<int32_t>(0xFFFFFFFFu)});
  auto scales = f32(b, {1, 2}, {0.5f, 2.0f});
  auto zeros = f32(b, {1, 2}, {2.0f, 8.0f});
  std::vector<float> x(16, 0.0f);
  x[3] = 1.0f;   // picks (3 - 2) * 0.5 = 0.5
  x[7] = 10.0f;  // picks (7 - 2) * 0.5 = 2.5
  x[9] = 1.0f;   // picks (15 - 8) * 2 = 14
  auto xt = f32(b, {1, 16}, x);
  auto bias = f32(b, {1}, {0.25f});
  auto out = f32(b, {1, 1}, {-1});
  const int4_device_weight w{tensor(qweight.get().data, dtype::i32, {1, 2}), scales, zeros, 8};
  b.linear_int4(xt, w, bias, out);
  EXPECT_EQ(read(b, out), (std::vector<float>{0.5f + 25.0f + 14.0f + 0.25f}));
}

TEST(cpu_ops, linear_int4_gives_the_bits_of_linear_on_the_dequantized_weight) {
  // W4A16 until the FP8 form's rows below set 3, and after.
  const troupe::testing::scoped_value<int64_t> w4a16(int4_fp8_rows(), 0);
  cpu_ops b;
  const int64_t n = 5, k = 64, g = 32;
  std::vector<int32_t> words(static_cast<size_t>(n * k / 8));
  std::vector<float> dense(static_cast<size_t>(n * k)), scale_values(static_cast<size_t>(n * k / g)),
      zero_values(scale_values.size()), x_values(static_cast<size_t>(3 * k));
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (auto& s : scale_values) s = static_cast<float>(next() % 1000) / 20000.0f + 0.001f;
  for (auto& z : zero_values) z = static_cast<float>(next() % 16);
  for (auto& v : x_values) v = static_cast<float>(static_cast<int32_t>(next() % 2001) - 1000) / 1000.0f;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; c += 8) {
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) {
        const uint32_t q = next() % 16;
        word |= q << (4 * j);
        const size_t at = static_cast<size_t>(r * (k / g) + (c + j) / g);
        dense[static_cast<size_t>(r * k + c + j)] = (static_cast<float>(q) - zero_values[at]) * scale_values[at];
      }
      words[static_cast<size_t>(r * (k / 8) + c / 8)] = static_cast<int32_t>(word);
    }
  auto qweight = i32(b, words);
  auto scales = f32(b, {n, k / g}, scale_values), zeros = f32(b, {n, k / g}, zero_values);
  auto weight = f32(b, {n, k}, dense), x = f32(b, {3, k}, x_values);
  auto got = f32(b, {3, n}, std::vector<float>(15, -1)), expected = f32(b, {3, n}, std::vector<float>(15, -2));
  b.linear_int4(x, {tensor(qweight.get().data, dtype::i32, {n, k / 8}), scales, zeros, static_cast<int32_t>(g)}, tensor{}, got);
  b.linear(x, weight, tensor{}, expected, false);
  EXPECT_EQ(read(b, got), read(b, expected));
  // A group that does not divide the input dimension is refused.
  EXPECT_THROW(b.linear_int4(x, {tensor(qweight.get().data, dtype::i32, {n, k / 8}), scales, zeros, 24}, tensor{}, got),
               std::invalid_argument);

  // The FP8 form (int4_fp8_rows, TROUPE_INT4_FP8_ROWS, the rule both backends take): steps of at least that many rows
  // give linear_fp8's bits on quantize_fp8 of the dequantized weight, per output channel; shorter steps the exact ones.
  const fp8_weight form = quantize_fp8(dense, n, k, true);
  device_buffer codes = b.alloc(dtype::f8_e4m3, {n, k});
  b.upload_raw(codes, form.codes.data());
  auto form_scales = f32(b, {n}, form.scales);
  int4_fp8_rows() = 3;  // until w4a16 restores the setting
  for (const int64_t rows : {2, 3}) {
    const tensor xr(x.get().data, dtype::f32, {rows, k});
    const tensor out_got(got.get().data, dtype::f32, {rows, n}), out_expected(expected.get().data, dtype::f32, {rows, n});
    b.linear_int4(xr, {tensor(qweight.get().data, dtype::i32, {n, k / 8}), scales, zeros, static_cast<int32_t>(g)}, tensor{},
                  out_got);
    if (rows < 3) b.linear(xr, weight, tensor{}, out_expected, false);
    else b.linear_fp8(xr, {codes, form_scales, tensor{}}, tensor{}, out_expected);
    EXPECT_EQ(read(b, got), read(b, expected)) << rows << " rows";
  }
  // And the FP8 form is not the exact product: the weight and x rounded to e4m3 move the sums.
  b.linear(x, weight, tensor{}, expected, false);
  const std::vector<float> fp8_sums = read(b, got), exact = read(b, expected);
  double moved = 0;
  for (size_t i = 0; i < exact.size(); ++i) moved = std::max(moved, double(std::abs(fp8_sums[i] - exact[i])));
  EXPECT_GT(moved, 1e-4);
}

// W8A8 FP8, pinned by hand: one token x = (0.5, -1.75, 3.5, 0) has max 3.5, so its scale is 3.5 / 448 = 2^-7 and
// its codes 64, -224, 448, 0 are exact; weight rows of codes 0x38 (1.0) and 0xC0 (-2.0), 0x30 (0.5) with scales
// 0.25 and 4. Row 0: (64 - 224 + 448 + 0) · 1.0 · (2^-7 · 0.25) = 0.5625, plus its bias 1; row 1: (64 · (-2) + 0 +
// 448 · 0.5) · 2^-7 · 4 = 3, bias -1.
TEST(cpu_ops, linear_fp8_quantizes_each_token_by_its_largest_value_and_scales_the_sums) {
  cpu_ops b;
  device_buffer weight = b.alloc(dtype::f8_e4m3, {2, 4});
  const std::vector<uint8_t> codes = {0x38, 0x38, 0x38, 0x38, 0xC0, 0x00, 0x30, 0x00};
  b.upload_raw(weight, codes.data());
  auto scale = f32(b, {2}, {0.25f, 4.0f});
  auto x = f32(b, {1, 4}, {0.5f, -1.75f, 3.5f, 0.0f});
  auto bias = f32(b, {2}, {1.0f, -1.0f});
  auto out = f32(b, {1, 2}, {-7, -7});
  b.linear_fp8(x, {weight, scale, tensor{}}, bias, out);
  EXPECT_EQ(read(b, out), (std::vector<float>{1.5625f, 2.0f}));
  // A static input scale of 0.5 instead: codes 1, -3.5, 7, 0; row 0: 4.5 · 0.5 · 0.25 = 0.5625 again, by chance
  // of this x; row 1: (1 · (-2) + 7 · 0.5) · 0.5 · 4 = 3.
  auto input_scale = f32(b, {1}, {0.5f});
  b.linear_fp8(x, {weight, scale, input_scale}, tensor{}, out);
  EXPECT_EQ(read(b, out), (std::vector<float>{0.5625f, 3.0f}));
  // A row of zeros divides by the smallest scale and gives zeros.
  auto zeros = f32(b, {1, 4}, {0, 0, 0, 0});
  b.linear_fp8(zeros, {weight, scale, tensor{}}, bias, out);
  EXPECT_EQ(read(b, out), (std::vector<float>{1.0f, -1.0f}));
}

// The twin against a straightforward reference on random data: the same rule written out here (scale = max|x| /
// 448 in f32, floored at 1 / (448 · 512); code = f32_to_f8_e4m3(x / scale), or over the static scale), the codes
// decoded with f8_e4m3_to_f32, the sum in f64; then the scales and the bias. Only the f32 sums differ.
TEST(cpu_ops, linear_fp8_agrees_with_an_f64_reference_on_random_data) {
  cpu_ops b;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& [rows, k, n, static_scale] : {std::tuple<int64_t, int64_t, int64_t, float>{1, 64, 16, 0.0f},
                                                 {5, 200, 33, 0.0f}, {17, 96, 48, 0.01f}, {3, 1000, 7, 0.0f}}) {
    std::vector<float> x_values(static_cast<size_t>(rows * k)), scale_values(static_cast<size_t>(n)),
        bias_values(static_cast<size_t>(n));
    for (auto& v : x_values) v = 3.0f * normal(rng);
    x_values[0] = 1e-30f;  // a tiny value flushes to a zero code
    for (auto& v : scale_values) v = 0.001f + 0.01f * std::abs(normal(rng));
    for (auto& v : bias_values) v = normal(rng);
    std::vector<uint8_t> codes(static_cast<size_t>(n * k));
    for (auto& c : codes) c = static_cast<uint8_t>(rng() & 0xFF);
    for (auto& c : codes)
      if ((c & 0x7F) == 0x7F) c = 0x00;  // no NaN codes: a checkpoint's weights are finite
    device_buffer weight = b.alloc(dtype::f8_e4m3, {n, k});
    b.upload_raw(weight, codes.data());
    auto scale = f32(b, {n}, scale_values), bias = f32(b, {n}, bias_values), x = f32(b, {rows, k}, x_values);
    auto input_scale = f32(b, {1}, {static_scale});
    auto out = f32(b, {rows, n}, std::vector<float>(static_cast<size_t>(rows * n), -1));
    b.linear_fp8(x, {weight, scale, static_scale > 0 ? input_scale.get() : tensor{}}, bias, out);
    const std::vector<float> got = read(b, out);
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0;
      for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::abs(x_values[static_cast<size_t>(r * k + i)]));
      const float s = static_scale > 0 ? static_scale : std::max(amax / 448.0f, 1.0f / (448.0f * 512.0f));
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double term = double(f8_e4m3_to_f32(f32_to_f8_e4m3(x_values[static_cast<size_t>(r * k + i)] / s))) *
                              f8_e4m3_to_f32(codes[static_cast<size_t>(j * k + i)]);
          sum += term;
          magnitude += std::abs(term);
        }
        const double sw = scale_values[static_cast<size_t>(j)], bias = bias_values[static_cast<size_t>(j)];
        // An f32 sum of k terms in 8 running partials errs by at most about (k / 8 + 8) · 2^-24 of Σ|term|.
        const double err = std::abs(got[static_cast<size_t>(r * n + j)] - (sum * s * sw + bias)) /
                           (magnitude * s * sw + std::abs(bias));
        worst = std::max(worst, err);
      }
    }
    EXPECT_LT(worst, 1e-5) << rows << "x" << k << "x" << n;  // k ≤ 1000: (125 + 8) · 2^-24 ≈ 7.9e-6
    EXPECT_GT(worst, 0.0) << "the reference is computed apart, so some sum must differ in its last bits";
  }
  // Another dtype than f8_e4m3 for the weight is refused.
  auto x = f32(b, {1, 4}, {1, 2, 3, 4});
  auto wrong = f32(b, {2, 4}, std::vector<float>(8, 1));
  auto scale = f32(b, {2}, {1, 1});
  auto out = f32(b, {1, 2}, {0, 0});
  EXPECT_THROW(b.linear_fp8(x, {wrong, scale, tensor{}}, tensor{}, out), std::invalid_argument);
}

// W8A16 (fp8_w16_rows, TROUPE_FP8_W16_ROWS, the rule both backends take): a step of at most that many rows multiplies
// the codes' values by x itself (f64 reference here), any larger step quantizes x as before; a static input scale is
// not used by W8A16.
TEST(cpu_ops, linear_fp8_takes_x_unquantized_for_steps_of_at_most_w16_rows) {
  cpu_ops b;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t k = 300, n = 21;
  std::vector<uint8_t> codes(static_cast<size_t>(n * k));
  for (auto& c : codes) c = f32_to_f8_e4m3(40.0f * normal(rng));
  std::vector<float> scale_values(static_cast<size_t>(n)), bias_values(static_cast<size_t>(n));
  for (auto& v : scale_values) v = 0.001f + 0.01f * std::abs(normal(rng));
  for (auto& v : bias_values) v = normal(rng);
  device_buffer weight = b.alloc(dtype::f8_e4m3, {n, k});
  b.upload_raw(weight, codes.data());
  auto scale = f32(b, {n}, scale_values), bias = f32(b, {n}, bias_values), input_scale = f32(b, {1}, {0.02f});
  struct restore {
    int before = fp8_w16_rows();
    ~restore() { fp8_w16_rows() = before; }
  } restore_setting;
  fp8_w16_rows() = 2;
  for (const int64_t rows : {1, 2, 3}) {
    for (const bool static_input : {false, true}) {
      std::vector<float> x_values(static_cast<size_t>(rows * k));
      for (auto& v : x_values) v = 3.0f * normal(rng);
      auto x = f32(b, {rows, k}, x_values);
      auto out = f32(b, {rows, n}, std::vector<float>(static_cast<size_t>(rows * n), -1));
      b.linear_fp8(x, {weight, scale, static_input ? input_scale.get() : tensor{}}, bias, out);
      const std::vector<float> got = read(b, out);
      double worst = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0, magnitude = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double term = double(x_values[static_cast<size_t>(r * k + i)]) * f8_e4m3_to_f32(codes[static_cast<size_t>(j * k + i)]);
            sum += term;
            magnitude += std::abs(term);
          }
          const double sw = scale_values[static_cast<size_t>(j)], bias_j = bias_values[static_cast<size_t>(j)];
          worst = std::max(worst, std::abs(got[static_cast<size_t>(r * n + j)] - (sum * sw + bias_j)) / (magnitude * sw + std::abs(bias_j)));
        }
      // Up to 2 rows: the W8A16 sums, within f32 rounding. 3 rows: x quantized to e4m3 (3 bits of mantissa) first,
      // which moves the sums by far more than rounding does.
      if (rows <= 2) EXPECT_LT(worst, 1e-5) << rows << " rows" << (static_input ? ", static input scale" : "");
      else EXPECT_GT(worst, 1e-4) << rows << " rows" << (static_input ? ", static input scale" : "");
    }
  }
}

// The fused producers of FP8 inputs: add_rms_norm_fp8 and silu_and_mul_fp8 must leave the codes and scales that
// linear_fp8 makes of the unfused op's output, each checked here against the rule written out (scale = max|y| / 448
// floored at 1 / (448 · 512), or the static one; code = f32_to_f8_e4m3(y / scale)); linear_fp8_quantized of those must
// give linear_fp8's output bit for bit. Rows of random size with random values, a row of zeros, a static scale.
TEST(cpu_ops, fused_fp8_inputs_hold_what_linear_fp8_would_make_of_the_unfused_outputs) {
  cpu_ops b;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto expect_codes = [&](const std::vector<float>& y, int64_t rows, int64_t k, float static_scale,
                          const device_buffer& codes, const device_buffer& scales, const char* what) {
    std::vector<uint8_t> got(static_cast<size_t>(rows * k));
    b.download_raw(got.data(), codes);
    const std::vector<float> got_scales = read(b, scales);
    for (int64_t r = 0; r < rows; ++r) {
      float amax = 0;
      for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::abs(y[static_cast<size_t>(r * k + i)]));
      const float s = static_scale > 0 ? static_scale : std::max(amax / 448.0f, 1.0f / (448.0f * 512.0f));
      ASSERT_EQ(got_scales[static_cast<size_t>(r)], s) << what << " row " << r;
      for (int64_t i = 0; i < k; ++i)
        ASSERT_EQ(got[static_cast<size_t>(r * k + i)], f32_to_f8_e4m3(y[static_cast<size_t>(r * k + i)] / s))
            << what << " row " << r << " element " << i;
    }
  };
  for (const auto& [rows, h, inter, static_scale] : {std::tuple<int64_t, int64_t, int64_t, float>{1, 64, 96, 0.0f},
                                                     {7, 48, 80, 0.0f}, {3, 32, 40, 0.02f}}) {
    std::vector<float> xv(static_cast<size_t>(rows * h)), rv(xv.size()), wv(static_cast<size_t>(h)),
        mv(static_cast<size_t>(rows * 2 * inter));
    for (auto& v : xv) v = normal(rng);
    for (auto& v : rv) v = normal(rng);
    for (auto& v : wv) v = 1.0f + 0.1f * normal(rng);
    for (auto& v : mv) v = 2.0f * normal(rng);
    for (int64_t i = 0; i < 2 * inter; ++i) mv[static_cast<size_t>(i)] = 0.0f;  // row 0 of the MLP input: zeros
    auto input_scale = f32(b, {1}, {static_scale});
    const tensor scale_arg = static_scale > 0 ? input_scale.get() : tensor{};

    // add_rms_norm_fp8 against add_rms_norm on copies of the same x and residual.
    auto x1 = f32(b, {rows, h}, xv), r1 = f32(b, {rows, h}, rv), x2 = f32(b, {rows, h}, xv), r2 = f32(b, {rows, h}, rv);
    auto weight = f32(b, {h}, wv);
    device_buffer codes = b.alloc(dtype::f8_e4m3, {rows, h});
    auto scales = f32(b, {rows}, std::vector<float>(static_cast<size_t>(rows), -1));
    b.add_rms_norm_fp8(x1, r1, weight, 1e-6f, scale_arg, {codes, scales});
    b.add_rms_norm(x2, r2, weight, 1e-6f);
    EXPECT_EQ(read(b, x1), read(b, x2));
    EXPECT_EQ(read(b, r1), read(b, r2));
    expect_codes(read(b, x2), rows, h, static_scale, codes, scales, "add_rms_norm_fp8");

    // linear_fp8_quantized of those codes against linear_fp8 of the normalized rows.
    const int64_t n = 24;
    std::vector<uint8_t> wcodes(static_cast<size_t>(n * h));
    for (auto& c : wcodes) c = static_cast<uint8_t>(rng() & 0x7E);  // finite, positive and negative by bit 7 below
    for (size_t i = 0; i < wcodes.size(); i += 3) wcodes[i] |= 0x80;
    device_buffer w8 = b.alloc(dtype::f8_e4m3, {n, h});
    b.upload_raw(w8, wcodes.data());
    auto wscale = f32(b, {n}, std::vector<float>(static_cast<size_t>(n), 0.01f));
    auto bias = f32(b, {n}, std::vector<float>(static_cast<size_t>(n), 0.5f));
    auto out1 = f32(b, {rows, n}, std::vector<float>(static_cast<size_t>(rows * n), -1));
    auto out2 = f32(b, {rows, n}, std::vector<float>(static_cast<size_t>(rows * n), -2));
    b.linear_fp8_quantized({codes, scales}, {w8, wscale, tensor{}}, bias, out1);
    b.linear_fp8(x2, {w8, wscale, scale_arg}, bias, out2);
    EXPECT_EQ(read(b, out1), read(b, out2));

    // silu_and_mul_fp8 against silu_and_mul.
    auto mlp = f32(b, {rows, 2 * inter}, mv);
    auto act = f32(b, {rows, inter}, std::vector<float>(static_cast<size_t>(rows * inter), 0));
    device_buffer act_codes = b.alloc(dtype::f8_e4m3, {rows, inter});
    auto act_scales = f32(b, {rows}, std::vector<float>(static_cast<size_t>(rows), -1));
    b.silu_and_mul_fp8(mlp, scale_arg, {act_codes, act_scales});
    b.silu_and_mul(mlp, act);
    expect_codes(read(b, act), rows, inter, static_scale, act_codes, act_scales, "silu_and_mul_fp8");
  }
  // Codes of another width are refused, naming the op.
  auto x = f32(b, {2, 8}, std::vector<float>(16, 1.0f));
  device_buffer narrow = b.alloc(dtype::f8_e4m3, {2, 5});
  auto scales = f32(b, {2}, {0, 0});
  try {
    b.silu_and_mul_fp8(x, tensor{}, {narrow, scales});  // x [2, 8] makes rows of 4
    ADD_FAILURE() << "silu_and_mul_fp8 took codes of 5 columns for rows of 4";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("silu_and_mul_fp8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.linear_fp8_quantized({narrow, scales}, {b.alloc(dtype::f8_e4m3, {3, 4}), f32(b, {3}, {1, 1, 1}), tensor{}},
                                      tensor{}, f32(b, {2, 3}, std::vector<float>(6, 0))),
               std::invalid_argument);  // codes of 5 columns by a weight of 4
  auto residual = f32(b, {2, 8}, std::vector<float>(16, 0.5f)), norm = f32(b, {8}, std::vector<float>(8, 1.0f));
  EXPECT_THROW(b.add_rms_norm_fp8(x, residual, norm, 1e-6f, tensor{}, {narrow, scales}), std::invalid_argument);
  auto two_scales = f32(b, {2}, {0.5f, 0.5f});
  device_buffer wide = b.alloc(dtype::f8_e4m3, {2, 8});
  EXPECT_THROW(b.add_rms_norm_fp8(x, residual, norm, 1e-6f, two_scales, {wide, scales}), std::invalid_argument);  // [2]
}


// FP8 KV cache: nH 2, nKV 1, D 4, blocks of 2 tokens. Position 0's rotary table is cos 1, sin 0, so the
// rotation leaves q and k as they are and the cache must hold exactly round(k / k_scale), round(v / v_scale).
TEST(cpu_ops, rope_write_kv_stores_k_and_v_over_their_scales_in_fp8_rounded_as_cuda) {
  for (const dtype kv : {dtype::f8_e4m3, dtype::f8_e5m2}) {
    cpu_ops b;
    attention_shape s{2, 1, 4, 2, 0.5f, 0.5f, 2.0f};
    const std::vector<float> row = {1, 2, 3, 4, 5, 6, 7, 8,          // q: two heads
                                    0.3f, -1.1f, 300.0f, 1e-9f,      // k (300 / 0.5 saturates in e4m3)
                                    0.7f, -2.5f, 1000.0f, -0.0f};    // v
    auto qkv = f32(b, {1, 16}, row);
    auto pos = i32(b, {0});
    auto cos_sin = f32(b, {1, 4}, {1, 1, 0, 0});
    device_buffer slot = b.alloc(dtype::i64, {1});
    const int64_t slot3 = 3;  // block 1, offset 1
    b.upload_raw(slot, &slot3);
    device_buffer k = b.alloc(kv, {2, 2, 1, 4}), v = b.alloc(kv, {2, 2, 1, 4});
    b.rope_write_kv(qkv, pos, cos_sin, slot, k, v, s);
    const auto encode = kv == dtype::f8_e4m3 ? f32_to_f8_e4m3 : f32_to_f8_e5m2;
    std::vector<std::uint8_t> want_k(16, 0), want_v(16, 0);
    for (int c = 0; c < 4; ++c) {
      want_k[12 + c] = encode(row[8 + c] / 0.5f);
      want_v[12 + c] = encode(row[12 + c] / 2.0f);
    }
    const auto* got_k = k.get().as<std::uint8_t>();
    const auto* got_v = v.get().as<std::uint8_t>();
    EXPECT_EQ(std::vector<std::uint8_t>(got_k, got_k + 16), want_k) << name(kv);
    EXPECT_EQ(std::vector<std::uint8_t>(got_v, got_v + 16), want_v) << name(kv);
    if (kv == dtype::f8_e4m3) {
      EXPECT_EQ(got_k[14], 0x7E);  // 600 saturates to 448
      EXPECT_EQ(got_k[12], 0x32);  // 0.6 rounds to 0.625 = 1.25 * 2^-1
    }
  }
}

// Attention over an FP8 cache is attention over the f32 cache of its dequantized values (code * scale),
// bit for bit: a decode token and a 2-token prefill chunk over a context spanning two blocks.
TEST(cpu_ops, paged_attention_over_fp8_reads_each_code_times_its_scale) {
  for (const dtype kv : {dtype::f8_e4m3, dtype::f8_e5m2}) {
    cpu_ops b;
    const attention_shape s{2, 1, 4, 2, 0.5f, 0.25f, 3.0f};
    std::vector<std::uint8_t> k_codes(16), v_codes(16);
    for (int i = 0; i < 16; ++i) {
      k_codes[i] = static_cast<std::uint8_t>((37 * i + 11) % 0x7B);          // finite in both formats
      v_codes[i] = static_cast<std::uint8_t>(((53 * i + 5) % 0x7B) | (i % 3 ? 0 : 0x80));
    }
    device_buffer k8 = b.alloc(kv, {2, 2, 1, 4}), v8 = b.alloc(kv, {2, 2, 1, 4});
    b.upload_raw(k8, k_codes.data());
    b.upload_raw(v8, v_codes.data());
    const auto decode = kv == dtype::f8_e4m3 ? f8_e4m3_to_f32 : f8_e5m2_to_f32;
    std::vector<float> k_values(16), v_values(16);
    for (int i = 0; i < 16; ++i) {
      k_values[i] = decode(k_codes[i]) * 0.25f;
      v_values[i] = decode(v_codes[i]) * 3.0f;
    }
    auto k32 = f32(b, {2, 2, 1, 4}, k_values), v32 = f32(b, {2, 2, 1, 4}, v_values);
    std::vector<float> q(3 * 16);
    for (size_t i = 0; i < q.size(); ++i) q[i] = 0.1f * static_cast<float>(static_cast<int>(i % 7) - 3);
    auto qkv = f32(b, {3, 16}, q);
    // Sequence 0 decodes its 4th token (blocks 1, 0); sequence 1 prefills tokens 3..4 of 4 (blocks 0, 1).
    auto starts = i32(b, {0, 1, 3}), lens = i32(b, {4, 4}), tables = i32(b, {1, 0, 0, 1});
    attention_metadata meta{starts, lens, tensor(tables.get().data, dtype::i32, {2, 2}), 2, 2, 4, 0};
    auto out8 = f32(b, {3, 8}, std::vector<float>(24, -1)), out32 = f32(b, {3, 8}, std::vector<float>(24, -2));
    b.paged_attention(qkv, k8, v8, meta, s, out8);
    b.paged_attention(qkv, k32, v32, meta, s, out32);
    EXPECT_EQ(read(b, out8), read(b, out32)) << name(kv);
  }
}

// The many-token range a backend may launch its prefill work over: the hull of the sequences with two query tokens or
// more, whatever lies around and between them; empty when every sequence decodes.
TEST(cpu_ops, multi_token_range_spans_the_sequences_of_many_query_tokens) {
  auto range = [](std::vector<int32_t> lens) {
    std::vector<int32_t> starts{0};
    for (int32_t l : lens) starts.push_back(starts.back() + l);
    attention_metadata m;
    set_multi_token_range(m, starts);
    return std::pair{m.multi_begin, m.multi_end};
  };
  EXPECT_EQ(range({1, 1, 512, 1, 30, 1}), std::pair(2, 5));
  EXPECT_EQ(range({512}), std::pair(0, 1));
  EXPECT_EQ(range({1, 1, 1}), std::pair(0, 0));
  EXPECT_EQ(range({}), std::pair(0, 0));
  EXPECT_EQ(range({2, 1}), std::pair(0, 1));
  EXPECT_EQ(range({1, 0, 1, 2}), std::pair(3, 4));  // a sequence of no new token is not many
  attention_metadata unset;
  EXPECT_EQ(unset.multi_begin, 0);
  EXPECT_GE(unset.multi_end, 65535);  // the whole batch of any step
}
