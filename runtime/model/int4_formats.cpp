#include "runtime/model/int4_formats.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "runtime/error.hpp"
#include "runtime/model/dtype.hpp"
#include "runtime/model/parallel_rows.hpp"
#include "runtime/model/sharding_plan.hpp"

namespace troupe {
namespace {

// AutoAWQ's interleaving: nibble k (bits 4k..4k+3) of a packed word holds output column 8·word + awq_order[k]
// (awq/modules/linear/gemm.py, WQLinear_GEMM.from_linear: order_map; awq/utils/packing_utils.py: AWQ_ORDER).
constexpr int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
// Its inverse: output column 8·word + j sits in nibble awq_reverse_order[j] (packing_utils.py: AWQ_REVERSE_ORDER).
constexpr int awq_reverse_order[8] = {0, 4, 1, 5, 2, 6, 3, 7};

float round_to_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

uint32_t nibble(uint32_t word, int k) { return (word >> (4 * k)) & 0xFu; }

std::string shape_text(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Checks and reads one tensor of a packed layer, naming it in every message.
struct packed_reader {
  const std::string& module;
  const quantization_config& q;
  const std::string& where;
  std::string layer;  // "an AWQ linear layer of 64 inputs and 96 outputs"

  std::string file_of(const tensor_info& t) const { return t.file ? t.file->string() : where; }

  [[noreturn]] void fail(const tensor_info& t, const std::string& what) const {
    throw checkpoint_error(file_of(t) + ": tensor '" + t.name + "' " + what);
  }

  const tensor_info& require(const tensor_info* t, const char* suffix, std::vector<int64_t> shape,
                             const char* layout) const {
    if (!t)
      throw checkpoint_error(where + ": tensor '" + module + suffix + "' is missing; " + layer +
                             " is stored as qweight, qzeros and scales (quantization_config says " +
                             std::string(name(q.method)) + ")");
    if (t->shape != shape)
      fail(*t, "has shape " + shape_text(t->shape) + ", but " + layer + " needs " + shape_text(shape) + " (" + layout +
                   "); the checkpoint does not match config.json");
    return *t;
  }

  std::vector<uint32_t> words(const tensor_info& t) const {
    if (t.type != dtype::i32)
      fail(t, "has dtype " + std::string(name(t.type)) + ", but packed 4-bit values are I32");
    std::vector<uint32_t> out(static_cast<size_t>(t.num_elements()));
    if (!out.empty()) std::memcpy(out.data(), t.data, out.size() * 4);
    return out;
  }

  std::vector<float> floats(const tensor_info& t) const {
    if (t.type != dtype::f16 && t.type != dtype::bf16 && t.type != dtype::f32)
      fail(t, "has dtype " + std::string(name(t.type)) + ", but scales are F16, BF16 or F32");
    std::vector<float> out(static_cast<size_t>(t.num_elements()));
    checkpoint::to_f32(t, out);
    return out;
  }
};

// x rounded to the nearest integer, ties to even, as std::nearbyint rounds it (torch.round in vLLM's rtn.py) wherever
// |x| < 2^22; beyond, a value of the same sign still over 2^21 in size, which the codes' clamp to [0, 15] cannot tell
// from nearbyint's (NaN stays NaN). Adding 1.5 · 2^23 puts x in the binade whose spacing is 1, where the addition
// itself rounds. The same result without a libm call a weight, so the loop vectorizes (~5x: rtn_quantize is a large
// part of an rtn load). Needs IEEE arithmetic in the default rounding mode: no -ffast-math (which would fold it to x).
float round_for_code(float x) {
  constexpr float kShift = 0x1.8p23f;
  return (x + kShift) - kShift;
}

} // namespace

int4_weight rtn_quantize(std::span<const float> w, int64_t out_features, int64_t in_features, int64_t group_size,
                         bool symmetric, int min_zero) {
  if (group_size <= 0 || in_features % group_size != 0)
    throw std::invalid_argument("rtn_quantize: group size " + std::to_string(group_size) + " does not divide " +
                                std::to_string(in_features) + " inputs");
  if (static_cast<int64_t>(w.size()) != out_features * in_features)
    throw std::invalid_argument("rtn_quantize: the weight has " + std::to_string(w.size()) + " values, not out × in");
  int4_weight r;
  r.out_features = out_features;
  r.in_features = in_features;
  r.group_size = group_size;
  const int64_t groups = r.num_groups();
  r.q.resize(w.size());
  r.zeros.resize(static_cast<size_t>(out_features * groups));
  r.scales.resize(r.zeros.size());
  const float smallest_f16 = f16_to_f32(0x0001);  // a scale that rounds to 0 in fp16 would divide by zero
  parallel_rows(out_features, rows_per_million(in_features), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t g = 0; g < groups; ++g) {
        const std::span<const float> x = w.subspan(static_cast<size_t>(o * in_features + g * group_size),
                                                   static_cast<size_t>(group_size));
        const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
        float scale;
        int zero;
        if (symmetric) {
          // vLLM's rtn.py, rtn_quantize: scale = 2·max|x| / (2^bits − 1), code = round(x / scale) + 2^(bits−1).
          // AutoGPTQ's auto_gptq/quantization/quantizer.py, Quantizer.find_params with sym agrees (zero =
          // (maxq + 1) / 2, an all-zero group gets [-1, 1]) except for a group with no negative value, where it
          // keeps xmin = 0 and halves the range; we follow vLLM.
          float amax = std::max(std::abs(std::min(*lo, 0.0f)), std::max(*hi, 0.0f));
          if (amax == 0) amax = 1;
          scale = round_to_f16(2 * amax / 15);
          zero = 8;
        } else {
          // awq/quantize/quantizer.py, AwqQuantizer.pseudo_quantize_tensor (zero_point true).
          scale = round_to_f16(std::max(*hi - *lo, 1e-5f) / 15);
          if (scale == 0) scale = smallest_f16;
          zero = std::clamp(static_cast<int>(-std::nearbyint(*lo / scale)), min_zero, 15);
        }
        if (scale == 0) scale = smallest_f16;
        const size_t at = static_cast<size_t>(o * groups + g);
        r.scales[at] = scale;
        r.zeros[at] = static_cast<uint8_t>(zero);
        for (int64_t i = 0; i < group_size; ++i) {
          const float code = round_for_code(x[static_cast<size_t>(i)] / scale) + static_cast<float>(zero);
          r.q[static_cast<size_t>(o * in_features + g * group_size + i)] =
              static_cast<uint8_t>(std::clamp(code, 0.0f, 15.0f));
        }
      }
    }
  });
  return r;
}

void dequantize(const int4_weight& w, std::vector<float>& out) {
  out.resize(w.q.size());
  const int64_t groups = w.num_groups();
  parallel_rows(w.out_features, rows_per_million(w.in_features), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t i = 0; i < w.in_features; ++i) {
        const size_t g = static_cast<size_t>(o * groups + i / w.group_size);
        const size_t at = static_cast<size_t>(o * w.in_features + i);
        out[at] = static_cast<float>(int{w.q[at]} - int{w.zeros[g]}) * w.scales[g];
      }
  });
}

packed_int4 pack_int4(const int4_weight& w, const quantization_config& q) {
  const int64_t out = w.out_features, in = w.in_features, groups = w.num_groups();
  const bool gptq = q.method == quant_method::gptq;
  if (out % 8 != 0 || (gptq && in % 8 != 0))
    throw user_error("a linear layer of " + std::to_string(in) + " inputs and " + std::to_string(out) +
                     " outputs cannot be packed as " + std::string(name(q.method)) + ": " +
                     (gptq ? "both sizes" : "the outputs") + " must be multiples of 8");
  const auto code = [&](int64_t o, int64_t i) { return uint32_t{w.q[static_cast<size_t>(o * in + i)]}; };
  const auto zero = [&](int64_t o, int64_t g) { return uint32_t{w.zeros[static_cast<size_t>(o * groups + g)]}; };
  packed_int4 p;
  p.scales_shape = {groups, out};
  p.scales.resize(static_cast<size_t>(groups * out));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) p.scales[static_cast<size_t>(g * out + o)] = f32_to_f16(w.scales[static_cast<size_t>(o * groups + g)]);
  p.qzeros_shape = {groups, out / 8};
  p.qzeros.assign(static_cast<size_t>(groups * out / 8), 0);
  if (!gptq) {
    // AutoAWQ, awq/modules/linear/gemm.py, WQLinear_GEMM.from_linear: intweight is [in, out]; word `col` of row i
    // ORs in column col·8 + order_map[k] at bit 4k; qzeros packs the [in/group, out] zeros the same way.
    p.qweight_shape = {in, out / 8};
    p.qweight.assign(static_cast<size_t>(in * out / 8), 0);
    for (int64_t i = 0; i < in; ++i)
      for (int64_t col = 0; col < out / 8; ++col) {
        uint32_t word = 0;
        for (int k = 0; k < 8; ++k) word |= code(col * 8 + awq_order[k], i) << (4 * k);
        p.qweight[static_cast<size_t>(i * out / 8 + col)] = static_cast<int32_t>(word);
      }
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t col = 0; col < out / 8; ++col) {
        uint32_t word = 0;
        for (int k = 0; k < 8; ++k) word |= zero(col * 8 + awq_order[k], g) << (4 * k);
        p.qzeros[static_cast<size_t>(g * out / 8 + col)] = static_cast<int32_t>(word);
      }
    return p;
  }
  // AutoGPTQ, auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py, QuantLinear.pack: qweight row r ORs in input
  // row 8r + k at bit 4k (packed along the inputs); `zeros -= 1`, then qzeros column c ORs in output 8c + k at
  // bit 4k (packed along the outputs, plain order); g_idx = i // group_size. GPTQModel's gptq_v2 format keeps
  // the zero itself (vLLM: use_v2_format = checkpoint_format == "gptq_v2").
  const uint32_t offset = q.gptq_v2 ? 0 : 1;
  p.qweight_shape = {in / 8, out};
  p.qweight.assign(static_cast<size_t>(in / 8 * out), 0);
  for (int64_t r = 0; r < in / 8; ++r)
    for (int64_t o = 0; o < out; ++o) {
      uint32_t word = 0;
      for (int k = 0; k < 8; ++k) word |= code(o, r * 8 + k) << (4 * k);
      p.qweight[static_cast<size_t>(r * out + o)] = static_cast<int32_t>(word);
    }
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t col = 0; col < out / 8; ++col) {
      uint32_t word = 0;
      for (int k = 0; k < 8; ++k) {
        const uint32_t z = zero(col * 8 + k, g);
        if (z < offset)
          throw user_error("GPTQ's v1 checkpoint format stores zero − 1 and cannot hold a zero point of 0 (group " +
                           std::to_string(g) + ", output " + std::to_string(col * 8 + k) + "); quantize with min_zero 1");
        word |= (z - offset) << (4 * k);
      }
      p.qzeros[static_cast<size_t>(g * out / 8 + col)] = static_cast<int32_t>(word);
    }
  p.g_idx.resize(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) p.g_idx[static_cast<size_t>(i)] = static_cast<int32_t>(i / w.group_size);
  return p;
}

std::vector<tensor_to_write> packed_tensors(const std::string& module, const packed_int4& p) {
  const auto bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
  std::vector<tensor_to_write> t = {{module + ".qweight", dtype::i32, p.qweight_shape, bytes(p.qweight)},
                                    {module + ".qzeros", dtype::i32, p.qzeros_shape, bytes(p.qzeros)},
                                    {module + ".scales", dtype::f16, p.scales_shape, bytes(p.scales)}};
  if (!p.g_idx.empty())
    t.push_back({module + ".g_idx", dtype::i32, {static_cast<int64_t>(p.g_idx.size())}, bytes(p.g_idx)});
  return t;
}

namespace {

// The whole layer's tensors checked as unpack_linear documents (presence, shapes, dtypes, group, packing,
// g_idx), without reading qweight, qzeros or scales; returns the group size.
int64_t check_packed_layer(const packed_reader& r, const packed_linear& t, int64_t out, int64_t in) {
  const quantization_config& q = r.q;
  const bool gptq = q.method == quant_method::gptq;
  const int64_t group = q.group_for(in);
  if (!t.qweight) r.require(nullptr, ".qweight", {}, "");
  if (group <= 0 || in % group != 0)
    r.fail(*t.qweight, "cannot be read: quantization_config's group_size " + std::to_string(q.group_size) +
                           " does not divide the layer's " + std::to_string(in) + " inputs");
  if (out % 8 != 0 || (gptq && in % 8 != 0))
    r.fail(*t.qweight, "cannot be read: " + r.layer + " cannot be packed 8 values to a word (" +
                           (gptq ? "both sizes" : "the outputs") + " must be multiples of 8)");
  const int64_t groups = in / group;
  const auto i32 = [&](const tensor_info& x) {
    if (x.type != dtype::i32) r.fail(x, "has dtype " + std::string(name(x.type)) + ", but packed 4-bit values are I32");
  };
  i32(gptq ? r.require(t.qweight, ".qweight", {in / 8, out}, "[in / 8, out]")
           : r.require(t.qweight, ".qweight", {in, out / 8}, "[in, out / 8]"));
  i32(r.require(t.qzeros, ".qzeros", {groups, out / 8}, "[in / group_size, out / 8]"));
  const tensor_info& s = r.require(t.scales, ".scales", {groups, out}, "[in / group_size, out]");
  if (s.type != dtype::f16 && s.type != dtype::bf16 && s.type != dtype::f32)
    r.fail(s, "has dtype " + std::string(name(s.type)) + ", but scales are F16, BF16 or F32");
  if (gptq && t.g_idx) {
    const auto g_idx = r.words(r.require(t.g_idx, ".g_idx", {in}, "[in]"));
    for (int64_t i = 0; i < in; ++i)
      if (static_cast<int32_t>(g_idx[static_cast<size_t>(i)]) != i / group)
        r.fail(*t.g_idx, "has g_idx[" + std::to_string(i) + "] = " +
                             std::to_string(static_cast<int32_t>(g_idx[static_cast<size_t>(i)])) + ", not " +
                             std::to_string(i) + " / " + std::to_string(group) + " = " + std::to_string(i / group) +
                             ": act-order (desc_act) checkpoints are not supported");
  }
  return group;
}

// Rows [row, row + rows) × columns [col, col + cols) of the 2-D tensor t, row-major, reading only those bytes.
std::vector<std::byte> block_bytes(const tensor_info& t, int64_t row, int64_t rows, int64_t col, int64_t cols) {
  const size_t elem = size_in_bytes(t.type), width = static_cast<size_t>(t.shape[1]) * elem;
  const size_t piece = static_cast<size_t>(cols) * elem;
  std::vector<std::byte> out(static_cast<size_t>(rows) * piece);
  for (int64_t r = 0; r < rows; ++r)
    if (piece > 0)
      std::memcpy(out.data() + static_cast<size_t>(r) * piece,
                  t.data + static_cast<size_t>(row + r) * width + static_cast<size_t>(col) * elem, piece);
  return out;
}

std::vector<uint32_t> block_words(const tensor_info& t, int64_t row, int64_t rows, int64_t col, int64_t cols) {
  const std::vector<std::byte> b = block_bytes(t, row, rows, col, cols);
  std::vector<uint32_t> out(b.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), b.data(), b.size());
  return out;
}

std::vector<float> block_floats(const tensor_info& t, int64_t row, int64_t rows, int64_t col, int64_t cols) {
  const std::vector<std::byte> b = block_bytes(t, row, rows, col, cols);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  convert_to_f32(t.type, b, out);
  return out;
}

// The int4_weight [out, in] (group `group`) of packed words already cut to it: qweight in the format's layout
// for these sizes, qzeros [in / group, out / 8], scales [in / group, out]. The first output and group are
// `first_output` and `first_group` of the checkpoint's layer (for messages).
int4_weight decode_packed(const packed_reader& r, const packed_linear& t, const std::vector<uint32_t>& qweight,
                          const std::vector<uint32_t>& qzeros, const std::vector<float>& scales, int64_t out,
                          int64_t in, int64_t group, int64_t first_output, int64_t first_group) {
  const quantization_config& q = r.q;
  const bool gptq = q.method == quant_method::gptq;
  const int64_t groups = in / group;
  // The zero point of output o in group g, [groups, out], and the check that a symmetric code's are all 8.
  // AWQ: AutoAWQ's awq/utils/packing_utils.py, unpack_awq + reverse_awq_order (dequantize_gemm). GPTQ: vLLM's
  // gptq_gemm reads nibble o % 8 of qzeros[g][o / 8] and adds 1 unless use_v2_format (AutoGPTQ's torch
  // fallback in qlinear_cuda_old.py, forward: `zeros = zeros + 1`).
  std::vector<int32_t> zeros(static_cast<size_t>(groups * out));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) {
      const uint32_t word = qzeros[static_cast<size_t>(g * out / 8 + o / 8)];
      const int32_t z = gptq ? static_cast<int32_t>(nibble(word, static_cast<int>(o % 8))) + (q.gptq_v2 ? 0 : 1)
                             : static_cast<int32_t>(nibble(word, awq_reverse_order[o % 8]));
      if (q.symmetric && z != 8)
        r.fail(*t.qzeros, "holds zero point " + std::to_string(z) + " for group " + std::to_string(first_group + g) +
                              ", output " + std::to_string(first_output + o) +
                              ", but quantization_config says the code is symmetric (" +
                              (gptq ? "sym true" : "zero_point false") + "), whose zero points are all 8");
      zeros[static_cast<size_t>(g * out + o)] = z;
    }

  int4_weight w;
  w.out_features = out;
  w.in_features = in;
  w.group_size = group;
  w.q.assign(static_cast<size_t>(out * in), 0);
  w.zeros.assign(static_cast<size_t>(out * groups), 0);
  w.scales.assign(static_cast<size_t>(out * groups), 0.0f);
  // Outputs in runs of 64 on every core: each run writes 64 rows of w.q in step, which the cache holds.
  parallel_rows(out, rows_per_million(in), [&](int64_t begin, int64_t end) {
    for (int64_t first = begin; first < end; first += 64)
      for (int64_t i = 0; i < in; ++i)
        for (int64_t o = first; o < std::min(end, first + 64); ++o) {
          // AWQ: qweight[i][o / 8], nibble awq_reverse_order[o % 8] (packing_utils.py, dequantize_gemm).
          // GPTQ: qweight[i / 8][o], nibble i % 8 (qlinear_cuda_old.py, forward: shifts wf = 0, 4, ..., 28).
          const uint32_t code = gptq ? nibble(qweight[static_cast<size_t>((i / 8) * out + o)], static_cast<int>(i % 8))
                                     : nibble(qweight[static_cast<size_t>(i * (out / 8) + o / 8)], awq_reverse_order[o % 8]);
          w.q[static_cast<size_t>(o * in + i)] = static_cast<uint8_t>(code);
        }
  });
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) {
      const size_t gz = static_cast<size_t>(g * out + o), at = static_cast<size_t>(o * groups + g);
      w.zeros[at] = static_cast<uint8_t>(zeros[gz]);  // at most 16 (a GPTQ v1 nibble 15, plus 1)
      w.scales[at] = scales[gz];
    }
  return w;
}

std::string layer_text(bool gptq, int64_t out, int64_t in) {
  return std::string(gptq ? "a GPTQ" : "an AWQ") + " linear layer of " + std::to_string(in) + " inputs and " +
         std::to_string(out) + " outputs";
}

} // namespace

int4_weight unpack_linear(const std::string& module, const packed_linear& t, const quantization_config& q,
                          int64_t out_features, int64_t in_features, const std::string& where) {
  const bool gptq = q.method == quant_method::gptq;
  const int64_t out = out_features, in = in_features;
  const packed_reader r{module, q, where, layer_text(gptq, out, in)};
  const int64_t group = check_packed_layer(r, t, out, in);
  return decode_packed(r, t, r.words(*t.qweight), r.words(*t.qzeros), r.floats(*t.scales), out, in, group, 0, 0);
}

int4_weight unpack_linear_slice(const std::string& module, const packed_linear& t, const quantization_config& q,
                                const weight_slice& slice, const std::string& where) {
  const bool gptq = q.method == quant_method::gptq;
  const int64_t out = slice.shape.at(0), in = slice.shape.at(1);
  const packed_reader r{module, q, where, layer_text(gptq, out, in)};
  const int64_t group = check_packed_layer(r, t, out, in), groups = in / group;
  const int64_t b = slice.begin, n = slice.length;
  const auto refuse = [&](const std::string& why) {
    throw user_error("the tensor-parallel slice of " + module + " (" + r.layer + "), " +
                     (slice.dim == 0 ? "outputs [" : "inputs [") + std::to_string(b) + ", " + std::to_string(b + n) +
                     "), " + why);
  };
  if ((slice.dim != 0 && slice.dim != 1) || b < 0 || n < 0 || b + n > slice.shape[static_cast<size_t>(slice.dim)])
    refuse("is outside the layer");
  if (slice.dim == 0) {
    // vLLM's awq.py / gptq.py create_weights: output_size_per_partition % pack_factor == 0.
    if (b % 8 != 0 || n % 8 != 0) refuse("does not fall on whole words of 8 packed outputs");
    const auto qweight = gptq ? block_words(*t.qweight, 0, in / 8, b, n) : block_words(*t.qweight, 0, in, b / 8, n / 8);
    return decode_packed(r, t, qweight, block_words(*t.qzeros, 0, groups, b / 8, n / 8),
                         block_floats(*t.scales, 0, groups, b, n), n, in, group, b, 0);
  }
  // vLLM's awq.py / gptq.py create_weights: input_size_per_partition % group_size == 0; a layer of one group
  // (group_size -1) keeps its one row of scales and zeros whole on every rank (gptq.py: scale_and_zero_input_dim
  // None). GPTQ packs 8 inputs to a word.
  if (groups > 1 && (b % group != 0 || n % group != 0)) refuse("does not fall on whole groups of " + std::to_string(group));
  if (gptq && (b % 8 != 0 || n % 8 != 0)) refuse("does not fall on whole words of 8 packed inputs");
  const int64_t g0 = groups > 1 ? b / group : 0, ng = groups > 1 ? n / group : 1;
  const auto qweight = gptq ? block_words(*t.qweight, b / 8, n / 8, 0, out) : block_words(*t.qweight, b, n, 0, out / 8);
  return decode_packed(r, t, qweight, block_words(*t.qzeros, g0, ng, 0, out / 8), block_floats(*t.scales, g0, ng, 0, out),
                       out, n, groups > 1 ? group : n, 0, g0);
}

int4_weight slice_int4(const int4_weight& whole, const weight_slice& slice) {
  const int64_t b = slice.begin, n = slice.length, groups = whole.num_groups();
  const int64_t size = slice.dim == 0 ? whole.out_features : slice.dim == 1 ? whole.in_features : -1;
  if (size < 0 || b < 0 || n < 0 || b + n > size || slice.local_shape.size() != 2 ||
      slice.local_shape[static_cast<size_t>(slice.dim)] != n)
    throw std::invalid_argument("slice_int4: the slice of '" + slice.name + "' (dim " + std::to_string(slice.dim) +
                                ", [" + std::to_string(b) + ", " + std::to_string(b + n) +
                                ")) is not a cut of its [" + std::to_string(whole.out_features) + ", " +
                                std::to_string(whole.in_features) + "] weight");
  int4_weight s;
  s.out_features = slice.dim == 0 ? n : whole.out_features;
  s.in_features = slice.dim == 1 ? n : whole.in_features;
  // Each local group must lie inside one of the whole's: the largest that divides both the group and the slice.
  s.group_size = slice.dim == 1 ? std::gcd(whole.group_size, n) : whole.group_size;
  if (slice.dim == 1 && n > 0 && b % s.group_size != 0)
    throw std::invalid_argument("slice_int4: inputs [" + std::to_string(b) + ", " + std::to_string(b + n) + ") of '" +
                                slice.name + "' do not start on a group of " + std::to_string(s.group_size));
  const int64_t o0 = slice.dim == 0 ? b : 0, i0 = slice.dim == 1 ? b : 0, local_groups = s.num_groups();
  s.q.resize(static_cast<size_t>(s.out_features * s.in_features));
  s.zeros.resize(static_cast<size_t>(s.out_features * local_groups));
  s.scales.resize(s.zeros.size());
  for (int64_t o = 0; o < s.out_features; ++o) {
    const auto row = whole.q.begin() + (o0 + o) * whole.in_features + i0;
    std::copy(row, row + s.in_features, s.q.begin() + o * s.in_features);
    for (int64_t g = 0; g < local_groups; ++g) {
      const size_t from = static_cast<size_t>((o0 + o) * groups + (i0 + g * s.group_size) / whole.group_size);
      s.zeros[static_cast<size_t>(o * local_groups + g)] = whole.zeros[from];
      s.scales[static_cast<size_t>(o * local_groups + g)] = whole.scales[from];
    }
  }
  return s;
}

void dequantize_linear(const std::string& module, const packed_linear& t, const quantization_config& q,
                       int64_t out_features, int64_t in_features, const std::string& where, std::vector<float>& values) {
  dequantize(unpack_linear(module, t, q, out_features, in_features, where), values);
}

} // namespace troupe
