// 4-bit weights: RTN, packing as AutoAWQ / AutoGPTQ lay tensors out, and the CPU dequantization of packed
// layers (runtime/model/int4_formats.hpp).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "runtime/error.hpp"
#include "runtime/model/dtype.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/model/quantization.hpp"
#include "runtime/model/safetensors.hpp"

using namespace troupe;

namespace {

quantization_config config_of(quant_method m, int64_t group, bool symmetric, bool v2 = false) {
  quantization_config q;
  q.method = m;
  q.group_size = group;
  q.symmetric = symmetric;
  q.gptq_v2 = v2;
  return q;
}

std::vector<float> random_weight(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = d(rng);
  return w;
}

// One layer's tensors in a safetensors file held in memory, as a loader finds them.
class layer_file {
public:
  explicit layer_file(std::vector<tensor_to_write> tensors)
      : bytes_(serialize_safetensors(tensors)), file_(safetensors_file::parse(bytes_, "layer.safetensors")) {}
  packed_linear find(const std::string& module) const {
    return {file_.find(module + ".qweight"), file_.find(module + ".qzeros"), file_.find(module + ".scales"),
            file_.find(module + ".g_idx")};
  }

private:
  std::vector<std::byte> bytes_;
  safetensors_file file_;
};

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

// The message dequantize_linear throws for `tensors` (as a layer of `out` x `in` under q), or "" when none.
std::string error_of(const std::vector<tensor_to_write>& tensors, const quantization_config& q, int64_t out, int64_t in) {
  const layer_file file(tensors);
  std::vector<float> values;
  try {
    dequantize_linear("m", file.find("m"), q, out, in, "ckpt", values);
  } catch (const checkpoint_error& e) {
    return e.what();
  }
  return "";
}

struct round_trip_case {
  quant_method method;
  int64_t group;
  bool symmetric;
  bool v2;
};

std::string describe(const round_trip_case& c) {
  return std::string(name(c.method)) + "_g" + std::to_string(c.group) + (c.symmetric ? "_sym" : "_asym") +
         (c.v2 ? "_v2" : "");
}
void PrintTo(const round_trip_case& c, std::ostream* os) { *os << describe(c); }
std::string case_name(const ::testing::TestParamInfo<round_trip_case>& info) { return describe(info.param); }

class packed_round_trip : public ::testing::TestWithParam<round_trip_case> {};

} // namespace

TEST(rtn_quantize, asymmetric_codes_span_each_groups_range_with_a_zero_point) {
  // One group of 4: min −0.3, max 0.45 → scale 0.05 (in fp16), zero round(0.3 / 0.05) = 6.
  const std::vector<float> w = {-0.3f, 0.0f, 0.1f, 0.45f};
  const int4_weight q = rtn_quantize(w, 1, 4, 4, false);
  EXPECT_EQ(q.scales[0], f16_to_f32(f32_to_f16(0.05f)));
  EXPECT_EQ(q.zeros[0], 6);
  EXPECT_EQ(q.q, (std::vector<uint8_t>{0, 6, 8, 15}));
}

TEST(rtn_quantize, symmetric_codes_center_on_8_as_vllms_rtn) {
  // max|x| 0.75 → scale 0.1; 0.75 / 0.1 = 7.5 rounds to 8 (ties to even) and clamps to 15.
  const std::vector<float> w = {-0.75f, -0.1f, 0.0f, 0.75f};
  const int4_weight q = rtn_quantize(w, 1, 4, 4, true);
  EXPECT_EQ(q.scales[0], f16_to_f32(f32_to_f16(0.1f)));
  EXPECT_EQ(q.zeros[0], 8);
  EXPECT_EQ(q.q, (std::vector<uint8_t>{0, 7, 8, 15}));
}

// Every code is nearbyint(x / scale) + zero clamped to [0, 15] (ties to even, as torch.round), with the scales and zeros
// it returned: over random groups and the edges — halves exactly (ties), constant groups (the smallest scale, quotients
// past 2^22), huge and tiny values, one sign only — in both forms.
TEST(rtn_quantize, every_code_is_the_nearest_even_quotient_clamped) {
  const int64_t group = 16;
  std::vector<float> w = random_weight(64 * group, 11);
  const std::vector<std::vector<float>> edges = {
      {-7.5f, -6.5f, -5.5f, -0.5f, 0.5f, 1.5f, 2.5f, 7.5f},     // ties, on a scale of 1 (max − min 15)
      {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f},          // constant: the range's floor, a tiny scale
      {1e30f, -1e30f, 3e29f, 0.0f, 1.0f, -1.0f, 2e-30f, 5.0f},   // huge and small together
      {100.0f, 100.0f, 100.0f, 100.0f, 100.0f, 100.0f, 100.0f, 100.0f},
      {-3e-8f, -1e-8f, 0.0f, 2e-8f, 1e-45f, -1e-45f, 4e-8f, 6e-8f},
      {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f}};
  for (const auto& e : edges) {
    w.insert(w.end(), e.begin(), e.end());
    w.insert(w.end(), e.rbegin(), e.rend());  // a group of 16: the edge and its mirror
  }
  const int64_t out = static_cast<int64_t>(w.size()) / group;
  for (const bool symmetric : {false, true}) {
    SCOPED_TRACE(symmetric ? "symmetric" : "asymmetric");
    const int4_weight q = rtn_quantize(w, out, group, group, symmetric);
    for (size_t i = 0; i < w.size(); ++i) {
      const size_t g = i / static_cast<size_t>(group);
      const float expected = std::clamp(std::nearbyint(w[i] / q.scales[g]) + static_cast<float>(q.zeros[g]), 0.0f, 15.0f);
      ASSERT_EQ(q.q[i], static_cast<uint8_t>(expected)) << "weight " << i << " = " << w[i] << ", scale " << q.scales[g]
                                                        << ", zero " << int{q.zeros[g]};
    }
  }
}

TEST(rtn_quantize, a_minimum_zero_keeps_gptq_v1_zero_points_storable) {
  const std::vector<float> w = {0.0f, 0.2f, 0.4f, 0.6f};  // all ≥ 0: zero 0, unless held at 1
  EXPECT_EQ(rtn_quantize(w, 1, 4, 4, false).zeros[0], 0);
  EXPECT_EQ(rtn_quantize(w, 1, 4, 4, false, 1).zeros[0], 1);
  EXPECT_THROW(pack_int4(rtn_quantize(std::vector<float>(64, 0.5f), 8, 8, 8, false), config_of(quant_method::gptq, 8, false)),
               user_error);
}

TEST_P(packed_round_trip, packed_read_and_dequantized_equals_the_rtn_values_exactly) {
  const auto c = GetParam();
  const int64_t out = 24, in = 256;
  const quantization_config q = config_of(c.method, c.group, c.symmetric, c.v2);
  const int min_zero = c.method == quant_method::gptq && !c.v2 ? 1 : 0;
  const int4_weight w = rtn_quantize(random_weight(out * in, 7), out, in, c.group, c.symmetric, min_zero);
  std::vector<float> expected;
  dequantize(w, expected);

  const packed_int4 p = pack_int4(w, q);
  const layer_file file(packed_tensors("model.layers.0.mlp.up_proj", p));
  std::vector<float> values;
  dequantize_linear("model.layers.0.mlp.up_proj", file.find("model.layers.0.mlp.up_proj"), q, out, in, "ckpt", values);
  EXPECT_EQ(values, expected);
}

// Large enough (4 million values) that unpacking splits the outputs over threads (runtime/model/parallel_rows.hpp),
// in runs of 64 outputs with a partial last run (4,104 = 64 · 64 + 8).
TEST(packed_round_trip_split, a_layer_unpacked_on_every_core_equals_its_rtn_values_exactly) {
  const int64_t out = 4104, in = 1024;
  const std::vector<float> values = random_weight(out * in, 11);
  for (const quantization_config& q : {config_of(quant_method::awq, 128, false), config_of(quant_method::gptq, 128, false, true)}) {
    const int4_weight w = rtn_quantize(values, out, in, 128, false);
    std::vector<float> expected, read;
    dequantize(w, expected);
    const layer_file file(packed_tensors("m", pack_int4(w, q)));
    dequantize_linear("m", file.find("m"), q, out, in, "ckpt", read);
    EXPECT_EQ(read, expected) << name(q.method);
  }
}

INSTANTIATE_TEST_SUITE_P(
    formats, packed_round_trip,
    ::testing::Values(round_trip_case{quant_method::awq, 32, false, false}, round_trip_case{quant_method::awq, 64, false, false},
                      round_trip_case{quant_method::awq, 128, false, false}, round_trip_case{quant_method::awq, 128, true, false},
                      round_trip_case{quant_method::gptq, 32, true, false}, round_trip_case{quant_method::gptq, 64, true, false},
                      round_trip_case{quant_method::gptq, 128, true, false}, round_trip_case{quant_method::gptq, 32, false, false},
                      round_trip_case{quant_method::gptq, 128, false, false}, round_trip_case{quant_method::gptq, 64, false, true}),
    case_name);

TEST(awq_layout, nibble_k_of_a_word_holds_output_column_awq_order_k) {
  // One input, 8 outputs, codes 0..7 in column order: AutoAWQ packs column order_map[k] = 0 2 4 6 1 3 5 7 at
  // bit 4k, so the word's nibbles from the bottom read 0 2 4 6 1 3 5 7.
  int4_weight w;
  w.out_features = 8;
  w.in_features = 1;
  w.group_size = 1;
  w.q = {0, 1, 2, 3, 4, 5, 6, 7};
  w.zeros.assign(8, 0);
  w.scales.assign(8, 1.0f);
  const packed_int4 p = pack_int4(w, config_of(quant_method::awq, -1, false));
  EXPECT_EQ(p.qweight_shape, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(static_cast<uint32_t>(p.qweight[0]), 0x75316420u);
}

TEST(awq_layout, a_hand_packed_word_dequantizes_in_awq_reverse_order) {
  // qweight word 0x76543210 holds k in nibble k; output column j reads nibble AWQ_REVERSE_ORDER[j] =
  // 0 4 1 5 2 6 3 7. qzeros 0x11111111 puts zero 1 in every column; scales 0.5.
  const std::vector<int32_t> qweight = {0x76543210}, qzeros = {0x11111111};
  const std::vector<uint16_t> scales(8, f32_to_f16(0.5f));
  const layer_file file({{"m.qweight", dtype::i32, {1, 1}, bytes_of(qweight)},
                         {"m.qzeros", dtype::i32, {1, 1}, bytes_of(qzeros)},
                         {"m.scales", dtype::f16, {1, 8}, bytes_of(scales)}});
  std::vector<float> w;
  dequantize_linear("m", file.find("m"), config_of(quant_method::awq, -1, false), 8, 1, "ckpt", w);
  // [8 outputs, 1 input]: (nibble − 1) · 0.5
  EXPECT_EQ(w, (std::vector<float>{-0.5f, 1.5f, 0.0f, 2.0f, 0.5f, 2.5f, 1.0f, 3.0f}));
}

TEST(gptq_layout, inputs_pack_down_a_column_and_v1_zeros_are_stored_minus_one) {
  // 8 inputs, 8 outputs, one group. qweight [1, 8]: every column's word 0x76543210 gives input i code i.
  // qzeros [1, 1] 0x76543210: output o stores o, so its zero is o + 1 (v1) or o (v2). Scales 1.
  const std::vector<int32_t> qweight(8, 0x76543210), qzeros = {0x76543210}, g_idx(8, 0);
  const std::vector<uint16_t> scales(8, f32_to_f16(1.0f));
  const layer_file file({{"m.qweight", dtype::i32, {1, 8}, bytes_of(qweight)},
                         {"m.qzeros", dtype::i32, {1, 1}, bytes_of(qzeros)},
                         {"m.scales", dtype::f16, {1, 8}, bytes_of(scales)},
                         {"m.g_idx", dtype::i32, {8}, bytes_of(g_idx)}});
  std::vector<float> v1, v2;
  dequantize_linear("m", file.find("m"), config_of(quant_method::gptq, -1, false), 8, 8, "ckpt", v1);
  dequantize_linear("m", file.find("m"), config_of(quant_method::gptq, -1, false, true), 8, 8, "ckpt", v2);
  for (int o = 0; o < 8; ++o)
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(v1[static_cast<size_t>(o * 8 + i)], float(i - o - 1)) << "output " << o << ", input " << i;
      EXPECT_EQ(v2[static_cast<size_t>(o * 8 + i)], float(i - o)) << "output " << o << ", input " << i;
    }
}

TEST(gptq_layout, the_packer_writes_autogptqs_words_and_g_idx) {
  int4_weight w;
  w.out_features = 8;
  w.in_features = 16;
  w.group_size = 8;
  for (int o = 0; o < 8; ++o)
    for (int i = 0; i < 16; ++i) w.q.push_back(static_cast<uint8_t>(i % 8));
  for (int o = 0; o < 8; ++o) w.zeros.insert(w.zeros.end(), {static_cast<uint8_t>(o + 1), 8});
  w.scales.assign(16, 1.0f);
  const packed_int4 p = pack_int4(w, config_of(quant_method::gptq, 8, false));
  EXPECT_EQ(p.qweight_shape, (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(static_cast<uint32_t>(p.qweight[0]), 0x76543210u);
  EXPECT_EQ(p.qzeros_shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(static_cast<uint32_t>(p.qzeros[0]), 0x76543210u);  // zeros 1..8 stored minus one
  EXPECT_EQ(static_cast<uint32_t>(p.qzeros[1]), 0x77777777u);  // 8 − 1: what symmetric AutoGPTQ files hold
  EXPECT_EQ(p.g_idx, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST(broken_packed_layers, each_gives_one_line_naming_the_tensor_and_what_is_wrong) {
  const quantization_config awq = config_of(quant_method::awq, 32, false);
  const quantization_config gptq = config_of(quant_method::gptq, 32, true);
  const int64_t out = 16, in = 64;
  const int4_weight wa = rtn_quantize(random_weight(out * in, 1), out, in, 32, false);
  const packed_int4 a = pack_int4(wa, awq);
  const packed_int4 g = pack_int4(rtn_quantize(random_weight(out * in, 2), out, in, 32, true), gptq);
  auto tensors = [](const packed_int4& p) { return packed_tensors("m", p); };
  auto without = [&](const packed_int4& p, const std::string& name) {
    auto t = tensors(p);
    std::erase_if(t, [&](const tensor_to_write& x) { return x.name == name; });
    return t;
  };
  EXPECT_EQ(error_of(tensors(a), awq, out, in), "");
  EXPECT_EQ(error_of(tensors(g), gptq, out, in), "");

  EXPECT_EQ(error_of(without(a, "m.scales"), awq, out, in),
            "ckpt: tensor 'm.scales' is missing; an AWQ linear layer of 64 inputs and 16 outputs is stored as qweight, "
            "qzeros and scales (quantization_config says awq)");
  EXPECT_EQ(error_of(tensors(a), awq, 24, in),
            "layer.safetensors: tensor 'm.qweight' has shape [64, 2], but an AWQ linear layer of 64 inputs and 24 "
            "outputs needs [64, 3] ([in, out / 8]); the checkpoint does not match config.json");
  EXPECT_EQ(error_of(tensors(g), config_of(quant_method::gptq, 128, true), out, in),
            "layer.safetensors: tensor 'm.qweight' cannot be read: quantization_config's group_size 128 does not "
            "divide the layer's 64 inputs");
  EXPECT_EQ(error_of(tensors(a), config_of(quant_method::awq, 64, false), out, in),
            "layer.safetensors: tensor 'm.qzeros' has shape [2, 2], but an AWQ linear layer of 64 inputs and 16 "
            "outputs needs [1, 2] ([in / group_size, out / 8]); the checkpoint does not match config.json");

  auto broken_g_idx = tensors(g);
  std::vector<int32_t> g_idx = g.g_idx;
  g_idx[40] = 0;
  broken_g_idx.back().bytes = bytes_of(g_idx);
  EXPECT_EQ(error_of(broken_g_idx, gptq, out, in),
            "layer.safetensors: tensor 'm.g_idx' has g_idx[40] = 0, not 40 / 32 = 1: act-order (desc_act) "
            "checkpoints are not supported");

  // Read as symmetric (zero_point false), the first zero other than 8, by group then output, is named.
  int64_t bad = 0;
  while (wa.zeros[static_cast<size_t>((bad % out) * 2 + bad / out)] == 8) ++bad;
  EXPECT_EQ(error_of(tensors(a), config_of(quant_method::awq, 32, true), out, in),
            "layer.safetensors: tensor 'm.qzeros' holds zero point " +
                std::to_string(wa.zeros[static_cast<size_t>((bad % out) * 2 + bad / out)]) + " for group " +
                std::to_string(bad / out) + ", output " + std::to_string(bad % out) +
                ", but quantization_config says the code is symmetric (zero_point false), whose zero points are all 8");

  auto as_f32 = tensors(a);
  std::vector<float> f32_words(a.qweight.size());
  as_f32[0] = {"m.qweight", dtype::f32, a.qweight_shape, bytes_of(f32_words)};
  EXPECT_EQ(error_of(as_f32, awq, out, in),
            "layer.safetensors: tensor 'm.qweight' has dtype F32, but packed 4-bit values are I32");
  EXPECT_EQ(error_of(tensors(g), gptq, 12, in),
            "layer.safetensors: tensor 'm.qweight' cannot be read: a GPTQ linear layer of 64 inputs and 12 outputs "
            "cannot be packed 8 values to a word (both sizes must be multiples of 8)");
}
