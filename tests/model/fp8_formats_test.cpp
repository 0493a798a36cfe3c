// FP8 weights: vLLM's dynamic quantization row by row, the tensors AutoFP8 / llm-compressor store for a layer, and
// reading them back whole or as a tensor-parallel rank's slice, with one error line per broken tensor
// (runtime/model/fp8_formats.hpp).

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>

#include "runtime/error.hpp"
#include "runtime/model/dtype.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/quantization.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "tests/support/quantized_copy.hpp"

using namespace troupe;
using troupe::testing::fp8_config;

namespace {

// One layer's tensors in a safetensors file held in memory, as a loader finds them.
class layer_file {
public:
  explicit layer_file(std::vector<tensor_to_write> tensors)
      : bytes_(serialize_safetensors(tensors)), file_(safetensors_file::parse(bytes_, "layer.safetensors")) {}
  fp8_linear find(const std::string& module) const {
    return {file_.find(module + ".weight"), file_.find(module + ".weight_scale"), file_.find(module + ".input_scale")};
  }

private:
  std::vector<std::byte> bytes_;
  safetensors_file file_;
};

// The whole [out, in] weight as a slice, or rows / columns [begin, begin + length) of it.
weight_slice slice_of(int64_t out, int64_t in, int dim = 0, int64_t begin = 0, int64_t length = -1) {
  weight_slice s;
  s.name = "m.weight";
  s.shape = {out, in};
  s.dim = dim;
  s.begin = begin;
  s.length = length < 0 ? (dim == 0 ? out : in) : length;
  s.local_shape = s.shape;
  s.local_shape[static_cast<size_t>(dim)] = s.length;
  return s;
}

template <class T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

// The message read_fp8_linear throws for `tensors` (as a layer of `out` x `in` under q), or "" when none.
std::string error_of(const std::vector<tensor_to_write>& tensors, const quantization_config& q, int64_t out, int64_t in) {
  const layer_file file(tensors);
  try {
    read_fp8_linear("m", file.find("m"), q, slice_of(out, in), "dir");
  } catch (const checkpoint_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST(fp8_quantize, a_row_is_divided_by_its_largest_magnitude_over_448_and_rounded_to_nearest_even) {
  // max 3.5: scale 3.5 / 448 = 2^-7; 0.5, -1.75 and 3.5 become 64 (0x68), -224 (0xF6) and 448 (0x7E) exactly;
  // 0.51 / 2^-7 = 65.28 rounds to 64 (e4m3 steps by 8 there), 0.535 → 68.48 to 72 (0x69).
  const std::vector<float> row = {0.5f, -1.75f, 3.5f, 0.51f, 0.535f};
  const float scale = fp8_dynamic_scale(row);
  EXPECT_EQ(scale, 0.0078125f);
  std::vector<uint8_t> codes(row.size());
  fp8_quantize_row(row, scale, codes);
  EXPECT_EQ(codes, (std::vector<uint8_t>{0x68, 0xF6, 0x7E, 0x68, 0x69}));
  // A row of zeros takes the smallest scale and zero codes; over a static scale, values past 448 saturate.
  EXPECT_EQ(fp8_dynamic_scale(std::vector<float>{0.0f, -0.0f}), 1.0f / (448.0f * 512.0f));
  fp8_quantize_row(std::vector<float>{10.0f, -1000.0f, 0.0f, 1.0f, 1.0f}, 1.0f, codes);
  EXPECT_EQ(codes, (std::vector<uint8_t>{0x52, 0xFE, 0x00, 0x38, 0x38}));
}

TEST(fp8_quantize, per_channel_scales_each_row_and_per_tensor_shares_the_largest) {
  const std::vector<float> w = {1.0f, -2.0f, 0.5f, 0.25f};  // [2, 2]
  const fp8_weight channel = quantize_fp8(w, 2, 2, true), tensor = quantize_fp8(w, 2, 2, false);
  EXPECT_EQ(channel.scales, (std::vector<float>{2.0f / 448, 0.5f / 448}));
  EXPECT_EQ(tensor.scales, (std::vector<float>{2.0f / 448, 2.0f / 448}));
  std::vector<float> back;
  dequantize(channel, back);
  EXPECT_EQ(back, w);  // every value is a power of two times its row's largest: exact in e4m3
  dequantize(tensor, back);
  EXPECT_EQ(back, w);
  EXPECT_EQ(channel.codes[3], 0x76);  // 0.25 is half its row's largest: 224
  EXPECT_EQ(tensor.codes[3], 0x66);   // an eighth of the tensor's largest: 56
}

// Every format's tensors, written and read back whole and as each rank's slice of rows or columns, give the
// quantized weight (or its cut) exactly.
TEST(fp8_layers, written_and_read_back_whole_or_sliced_they_are_the_quantized_weight) {
  const int64_t out = 24, in = 32;
  std::vector<float> w(static_cast<size_t>(out * in));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (float& v : w) v = normal(rng);
  for (const quant_method m : {quant_method::fp8, quant_method::compressed_tensors})
    for (const bool channel : {false, true})
      for (const bool static_input : {false, true}) {
        SCOPED_TRACE(std::string(name(m)) + (channel ? " channel" : " tensor") + (static_input ? " static" : " dynamic"));
        const quantization_config q = fp8_config(m, channel, static_input);
        fp8_weight made = quantize_fp8(w, out, in, channel);
        made.input_scale = static_input ? 0.125f : 0.0f;
        const packed_fp8 p = pack_fp8(made, q);
        const std::vector<int64_t> scale_shape = channel ? std::vector<int64_t>{out, 1}
                                                 : m == quant_method::fp8 ? std::vector<int64_t>{} : std::vector<int64_t>{1};
        EXPECT_EQ(p.scale_shape, scale_shape);
        const layer_file file(packed_tensors("m", p));
        const fp8_weight whole = read_fp8_linear("m", file.find("m"), q, slice_of(out, in), "dir");
        EXPECT_EQ(whole.codes, made.codes);
        EXPECT_EQ(whole.scales, made.scales);
        EXPECT_EQ(whole.input_scale, made.input_scale);
        for (const auto& [dim, begin, length] : {std::tuple{0, 8, 8}, std::tuple{1, 16, 16}, std::tuple{1, 0, 8}}) {
          const weight_slice s = slice_of(out, in, dim, begin, length);
          const fp8_weight part = read_fp8_linear("m", file.find("m"), q, s, "dir");
          const fp8_weight cut = slice_fp8(made, s);
          EXPECT_EQ(part.codes, cut.codes);
          EXPECT_EQ(part.scales, cut.scales);
          EXPECT_EQ(part.out_features, s.local_shape[0]);
          EXPECT_EQ(part.in_features, s.local_shape[1]);
        }
      }
  // Per tensor needs one scale for every row.
  EXPECT_THROW(pack_fp8(quantize_fp8(w, out, in, true), fp8_config(quant_method::fp8, false, false)), std::invalid_argument);
}

TEST(fp8_layers, scales_stored_in_bf16_or_as_one_per_channel_of_shape_out_are_read_too) {
  const std::vector<uint8_t> codes = {0x38, 0x40, 0x30, 0x38};  // [2, 2]: 1, 2, 0.5, 1
  const std::vector<uint16_t> bf16_scales = {f32_to_bf16(0.5f), f32_to_bf16(4.0f)};
  const layer_file file({{"m.weight", dtype::f8_e4m3, {2, 2}, bytes_of(codes)},
                         {"m.weight_scale", dtype::bf16, {2}, bytes_of(bf16_scales)}});
  const fp8_weight w = read_fp8_linear("m", file.find("m"), fp8_config(quant_method::fp8, false, false), slice_of(2, 2), "dir");
  std::vector<float> values;
  dequantize(w, values);
  EXPECT_EQ(values, (std::vector<float>{0.5f, 1.0f, 2.0f, 4.0f}));
}

TEST(broken_fp8_layers, each_gives_one_line_naming_the_tensor_and_what_is_wrong) {
  const int64_t out = 4, in = 8;
  const std::vector<uint8_t> codes(static_cast<size_t>(out * in), 0x38);
  const std::vector<float> one = {0.5f}, four = {0.5f, 0.5f, 0.5f, 0.5f}, three = {1, 1, 1}, negative = {-1.0f},
                           zero = {0.0f};
  const std::vector<uint16_t> bf16_codes(static_cast<size_t>(out * in), 0x3F80);
  const auto fp8 = fp8_config(quant_method::fp8, false, false), ct_channel = fp8_config(quant_method::compressed_tensors, true, false),
             ct_tensor = fp8_config(quant_method::compressed_tensors, false, false), fp8_static = fp8_config(quant_method::fp8, false, true);
  const tensor_to_write weight{"m.weight", dtype::f8_e4m3, {out, in}, bytes_of(codes)};
  const tensor_to_write scale{"m.weight_scale", dtype::f32, {}, bytes_of(one)};
  EXPECT_EQ(error_of({weight, scale}, fp8, out, in), "");
  EXPECT_EQ(error_of({weight}, fp8, out, in),
            "dir: tensor 'm.weight_scale' is missing; an FP8 linear layer of 8 inputs and 4 outputs is stored as weight "
            "(F8_E4M3) and weight_scale (quantization_config says fp8)");
  EXPECT_EQ(error_of({weight, scale}, fp8_static, out, in),
            "dir: tensor 'm.input_scale' is missing; an FP8 linear layer of 8 inputs and 4 outputs is stored as weight "
            "(F8_E4M3) and weight_scale and input_scale (quantization_config says fp8, static activations)");
  EXPECT_EQ(error_of({scale}, fp8, out, in),
            "dir: tensor 'm.weight' is missing; an FP8 linear layer of 8 inputs and 4 outputs is stored as weight "
            "(F8_E4M3) and weight_scale (quantization_config says fp8)");
  EXPECT_EQ(error_of({{"m.weight", dtype::f8_e4m3, {in, out}, bytes_of(codes)}, scale}, fp8, out, in),
            "layer.safetensors: tensor 'm.weight' has shape [8, 4], but an FP8 linear layer of 8 inputs and 4 outputs "
            "needs [4, 8] ([out, in]); the checkpoint does not match config.json");
  EXPECT_EQ(error_of({{"m.weight", dtype::bf16, {out, in}, bytes_of(bf16_codes)}, scale}, ct_channel, out, in),
            "layer.safetensors: tensor 'm.weight' has dtype BF16, but quantization_config says compressed-tensors: its "
            "linear weights are F8_E4M3");
  EXPECT_EQ(error_of({weight, {"m.weight_scale", dtype::f32, {3}, bytes_of(three)}}, fp8, out, in),
            "layer.safetensors: tensor 'm.weight_scale' has shape [3], but the weight scales of an FP8 linear layer of 8 "
            "inputs and 4 outputs are one per tensor ([] or [1]) or one per output channel ([4] or [4, 1])");
  EXPECT_EQ(error_of({weight, {"m.weight_scale", dtype::f32, {1}, bytes_of(one)}}, ct_channel, out, in),
            "layer.safetensors: tensor 'm.weight_scale' has shape [1], but quantization_config's weights strategy "
            "\"channel\" needs one per output channel ([4] or [4, 1])");
  EXPECT_EQ(error_of({weight, {"m.weight_scale", dtype::f32, {out, 1}, bytes_of(four)}}, ct_tensor, out, in),
            "layer.safetensors: tensor 'm.weight_scale' has shape [4, 1], but quantization_config's weights strategy "
            "\"tensor\" needs one per tensor ([] or [1])");
  EXPECT_EQ(error_of({weight, {"m.weight_scale", dtype::f32, {}, bytes_of(negative)}}, fp8, out, in),
            "layer.safetensors: tensor 'm.weight_scale' holds -1.000000; a weight scale must be finite and not negative");
  EXPECT_EQ(error_of({weight, {"m.weight_scale", dtype::i32, {}, bytes_of(std::vector<int32_t>{1})}}, fp8, out, in),
            "layer.safetensors: tensor 'm.weight_scale' has dtype I32, but FP8 scales are F32, BF16 or F16");
  EXPECT_EQ(error_of({weight, {"m.weight_scale", dtype::f32, {out}, bytes_of(std::vector<float>{1, 1, NAN, 1})}}, fp8, out, in),
            "layer.safetensors: tensor 'm.weight_scale' holds nan at 2; a weight scale must be finite and not negative");
  EXPECT_EQ(error_of({weight, scale, {"m.input_scale", dtype::f32, {}, bytes_of(zero)}}, fp8_static, out, in),
            "layer.safetensors: tensor 'm.input_scale' holds 0.000000; an activation scale must be positive and finite");
  EXPECT_EQ(error_of({weight, scale, {"m.input_scale", dtype::f32, {2}, bytes_of(std::vector<float>{1, 1})}}, fp8_static, out, in),
            "layer.safetensors: tensor 'm.input_scale' has shape [2], but a static activation scale is one per tensor "
            "([] or [1])");
  EXPECT_EQ(error_of({weight, scale, {"m.input_scale", dtype::f32, {}, bytes_of(one)}}, fp8, out, in),
            "layer.safetensors: tensor 'm.input_scale' is a static activation scale, but quantization_config says the "
            "activations are dynamic");
}
