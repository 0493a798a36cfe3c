#include "runtime/model/fp8_formats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "runtime/error.hpp"
#include "runtime/model/dtype.hpp"
#include "runtime/model/parallel_rows.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/weight_slice_reader.hpp"

namespace troupe {
namespace {

std::string shape_text(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

float max_abs(std::span<const float> v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::abs(x));
  return m;
}

float dynamic_scale_of(float amax) { return std::max(amax / fp8_e4m3_max, fp8_min_scale); }

// Checks and reads one tensor of an FP8 layer, naming it in every message.
struct fp8_reader {
  const std::string& module;
  const quantization_config& q;
  const std::string& where;
  std::string layer;  // "an FP8 linear layer of 64 inputs and 96 outputs"

  std::string file_of(const tensor_info& t) const { return t.file ? t.file->string() : where; }
  [[noreturn]] void fail(const tensor_info& t, const std::string& what) const {
    throw checkpoint_error(file_of(t) + ": tensor '" + t.name + "' " + what);
  }
  std::string stored_as() const {
    return layer + " is stored as weight (F8_E4M3) and weight_scale" + (q.fp8_static_input ? " and input_scale" : "") +
           " (quantization_config says " + std::string(name(q.method)) +
           (q.fp8_static_input ? ", static activations)" : ")");
  }
  const tensor_info& require(const tensor_info* t, const char* suffix) const {
    if (!t) throw checkpoint_error(where + ": tensor '" + module + suffix + "' is missing; " + stored_as());
    return *t;
  }
  // Every value of a scale tensor as f32.
  std::vector<float> scale_values(const tensor_info& t) const {
    if (t.type != dtype::f32 && t.type != dtype::bf16 && t.type != dtype::f16)
      fail(t, "has dtype " + std::string(name(t.type)) + ", but FP8 scales are F32, BF16 or F16");
    std::vector<float> v(static_cast<size_t>(t.num_elements()));
    checkpoint::to_f32(t, v);
    return v;
  }
};

bool one_value(const tensor_info& t) { return t.shape.empty() || t.shape == std::vector<int64_t>{1}; }

} // namespace

int& fp8_w16_rows() {
  static int rows = [] {
    const char* v = std::getenv("TROUPE_FP8_W16_ROWS");
    return v && *v ? std::atoi(v) : 0;
  }();
  return rows;
}

int64_t& int4_fp8_rows() {
  static int64_t rows = [] {
    const char* v = std::getenv("TROUPE_INT4_FP8_ROWS");
    return v && *v ? std::max<int64_t>(0, std::atoll(v)) : int64_t{0};
  }();
  return rows;
}

bool int4_fp8_step(int64_t rows) { return int4_fp8_rows() > 0 && rows >= int4_fp8_rows(); }

float fp8_dynamic_scale(std::span<const float> row) { return dynamic_scale_of(max_abs(row)); }

void fp8_quantize_row(std::span<const float> row, float scale, std::span<uint8_t> codes) {
  for (size_t i = 0; i < row.size(); ++i) codes[i] = f32_to_f8_e4m3(row[i] / scale);
}

fp8_weight quantize_fp8(std::span<const float> w, int64_t out_features, int64_t in_features, bool per_channel) {
  if (static_cast<int64_t>(w.size()) != out_features * in_features)
    throw std::invalid_argument("quantize_fp8: the weight has " + std::to_string(w.size()) + " values, not out × in");
  fp8_weight r;
  r.out_features = out_features;
  r.in_features = in_features;
  r.codes.resize(w.size());
  r.scales.assign(static_cast<size_t>(out_features), per_channel ? 0.0f : fp8_dynamic_scale(w));
  parallel_rows(out_features, rows_per_million(in_features), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const auto row = w.subspan(static_cast<size_t>(o * in_features), static_cast<size_t>(in_features));
      float& scale = r.scales[static_cast<size_t>(o)];
      if (per_channel) scale = fp8_dynamic_scale(row);
      fp8_quantize_row(row, scale, std::span(r.codes).subspan(static_cast<size_t>(o * in_features), row.size()));
    }
  });
  return r;
}

void dequantize(const fp8_weight& w, std::vector<float>& out) {
  out.resize(w.codes.size());
  parallel_rows(w.out_features, rows_per_million(w.in_features), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t i = 0; i < w.in_features; ++i) {
        const size_t at = static_cast<size_t>(o * w.in_features + i);
        out[at] = f8_e4m3_to_f32(w.codes[at]) * w.scales[static_cast<size_t>(o)];
      }
  });
}

packed_fp8 pack_fp8(const fp8_weight& w, const quantization_config& q) {
  packed_fp8 p;
  p.weight_shape = {w.out_features, w.in_features};
  p.weight = w.codes;
  if (q.fp8_channel_scales) {
    p.scale_shape = {w.out_features, 1};  // llm-compressor's channel strategy
    p.scale = w.scales;
  } else {
    if (std::adjacent_find(w.scales.begin(), w.scales.end(), std::not_equal_to<>()) != w.scales.end())
      throw std::invalid_argument("pack_fp8: a per-tensor FP8 weight needs one scale for every row");
    // AutoFP8 writes a 0-d weight_scale; llm-compressor's tensor strategy a [1].
    p.scale_shape = q.method == quant_method::fp8 ? std::vector<int64_t>{} : std::vector<int64_t>{1};
    p.scale = {w.scales.empty() ? 1.0f : w.scales[0]};
  }
  if (q.fp8_static_input) {
    if (!(w.input_scale > 0)) throw std::invalid_argument("pack_fp8: static activations need an input scale");
    p.input_scale_shape = p.scale_shape.empty() ? std::vector<int64_t>{} : std::vector<int64_t>{1};
    p.input_scale = {w.input_scale};
  }
  return p;
}

std::vector<tensor_to_write> packed_tensors(const std::string& module, const packed_fp8& p) {
  const auto bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
  std::vector<tensor_to_write> t = {{module + ".weight", dtype::f8_e4m3, p.weight_shape, bytes(p.weight)},
                                    {module + ".weight_scale", dtype::f32, p.scale_shape, bytes(p.scale)}};
  if (!p.input_scale.empty()) t.push_back({module + ".input_scale", dtype::f32, p.input_scale_shape, bytes(p.input_scale)});
  return t;
}

fp8_weight read_fp8_linear(const std::string& module, const fp8_linear& t, const quantization_config& q,
                           const weight_slice& slice, const std::string& where) {
  const int64_t out = slice.shape.at(0), in = slice.shape.at(1);
  const fp8_reader r{module, q, where,
                     "an FP8 linear layer of " + std::to_string(in) + " inputs and " + std::to_string(out) + " outputs"};
  const tensor_info& weight = r.require(t.weight, ".weight");
  if (weight.type != dtype::f8_e4m3)
    r.fail(weight, "has dtype " + std::string(name(weight.type)) + ", but quantization_config says " +
                       std::string(name(q.method)) + ": its linear weights are F8_E4M3");
  if (weight.shape != slice.shape)
    r.fail(weight, "has shape " + shape_text(weight.shape) + ", but " + r.layer + " needs " + shape_text(slice.shape) +
                       " ([out, in]); the checkpoint does not match config.json");

  const tensor_info& scale = r.require(t.weight_scale, ".weight_scale");
  const bool per_tensor = one_value(scale);
  const bool per_channel = scale.shape == std::vector<int64_t>{out} || scale.shape == std::vector<int64_t>{out, 1};
  const std::string tensor_shapes = "one per tensor ([] or [1])", channel_shapes =
      "one per output channel ([" + std::to_string(out) + "] or [" + std::to_string(out) + ", 1])";
  if (q.method == quant_method::compressed_tensors && q.fp8_channel_scales && !per_channel)
    r.fail(scale, "has shape " + shape_text(scale.shape) + ", but quantization_config's weights strategy \"channel\" needs " +
                      channel_shapes);
  if (q.method == quant_method::compressed_tensors && !q.fp8_channel_scales && !one_value(scale))
    r.fail(scale, "has shape " + shape_text(scale.shape) + ", but quantization_config's weights strategy \"tensor\" needs " +
                      tensor_shapes);
  if (!per_tensor && !per_channel)
    r.fail(scale, "has shape " + shape_text(scale.shape) + ", but the weight scales of " + r.layer + " are " +
                      tensor_shapes + " or " + channel_shapes);
  const std::vector<float> scales = r.scale_values(scale);
  for (size_t i = 0; i < scales.size(); ++i)
    if (!std::isfinite(scales[i]) || scales[i] < 0)
      r.fail(scale, "holds " + std::to_string(scales[i]) + (scales.size() > 1 ? " at " + std::to_string(i) : "") +
                        "; a weight scale must be finite and not negative");

  fp8_weight w;
  w.out_features = slice.local_shape.at(0);
  w.in_features = slice.local_shape.at(1);
  std::vector<std::byte> codes;
  read_slice_bytes(weight, slice, codes);
  w.codes.resize(codes.size());
  if (!codes.empty()) std::memcpy(w.codes.data(), codes.data(), codes.size());
  w.scales.resize(static_cast<size_t>(w.out_features));
  const int64_t first_row = slice.dim == 0 ? slice.begin : 0;
  for (int64_t o = 0; o < w.out_features; ++o)
    w.scales[static_cast<size_t>(o)] = scales.size() == 1 ? scales[0] : scales[static_cast<size_t>(first_row + o)];

  if (q.fp8_static_input) {
    const tensor_info& input = r.require(t.input_scale, ".input_scale");
    if (!one_value(input))
      r.fail(input, "has shape " + shape_text(input.shape) + ", but a static activation scale is one per tensor ([] or [1])");
    w.input_scale = r.scale_values(input)[0];
    if (!std::isfinite(w.input_scale) || !(w.input_scale > 0))
      r.fail(input, "holds " + std::to_string(w.input_scale) + "; an activation scale must be positive and finite");
  } else if (t.input_scale) {
    r.fail(*t.input_scale, "is a static activation scale, but quantization_config says the activations are dynamic");
  }
  return w;
}

fp8_weight slice_fp8(const fp8_weight& whole, const weight_slice& slice) {
  const int64_t b = slice.begin, n = slice.length;
  const int64_t size = slice.dim == 0 ? whole.out_features : slice.dim == 1 ? whole.in_features : -1;
  if (size < 0 || b < 0 || n < 0 || b + n > size || slice.local_shape.size() != 2 ||
      slice.local_shape[static_cast<size_t>(slice.dim)] != n)
    throw std::invalid_argument("slice_fp8: the slice of '" + slice.name + "' (dim " + std::to_string(slice.dim) + ", [" +
                                std::to_string(b) + ", " + std::to_string(b + n) + ")) is not a cut of its [" +
                                std::to_string(whole.out_features) + ", " + std::to_string(whole.in_features) + "] weight");
  fp8_weight s;
  s.out_features = slice.dim == 0 ? n : whole.out_features;
  s.in_features = slice.dim == 1 ? n : whole.in_features;
  s.input_scale = whole.input_scale;
  const int64_t o0 = slice.dim == 0 ? b : 0, i0 = slice.dim == 1 ? b : 0;
  s.codes.resize(static_cast<size_t>(s.out_features * s.in_features));
  for (int64_t o = 0; o < s.out_features; ++o) {
    const auto row = whole.codes.begin() + (o0 + o) * whole.in_features + i0;
    std::copy(row, row + s.in_features, s.codes.begin() + o * s.in_features);
    s.scales.push_back(whole.scales[static_cast<size_t>(o0 + o)]);
  }
  return s;
}

} // namespace troupe
