#include "kernels/cpu/cpu_ops.hpp"

#include "kernels/cpu/sampler.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/weight_names.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

void require_f32(const tensor& t, const char* op) {
  if (t.type != dtype::f32) throw std::invalid_argument(std::string("cpu ") + op + ": expects f32 tensors");
}

} // namespace

device_buffer cpu_ops::alloc(dtype type, std::initializer_list<int64_t> shape) {
  tensor t(nullptr, type, shape);
  const size_t bytes = std::max<size_t>(t.num_bytes(), 1);
  t.data = std::calloc(bytes, 1);
  if (!t.data) throw std::bad_alloc();
  return device_buffer(t, [](void* p) { std::free(p); });
}

void cpu_ops::upload(const tensor& dst, std::span<const float> src) {
  if (static_cast<int64_t>(src.size()) != dst.numel()) throw std::invalid_argument("cpu upload: size mismatch");
  switch (dst.type) {
    case dtype::f32: std::memcpy(dst.data, src.data(), src.size_bytes()); break;
    case dtype::i32:
      for (size_t i = 0; i < src.size(); ++i) dst.as<int32_t>()[i] = static_cast<int32_t>(src[i]);
      break;
    default: throw std::invalid_argument("cpu upload: the CPU backend keeps floats in f32");
  }
}

void cpu_ops::upload_raw(const tensor& dst, const void* src) { std::memcpy(dst.data, src, dst.num_bytes()); }

void cpu_ops::download(std::span<float> dst, const tensor& src) {
  require_f32(src, "download");
  if (static_cast<int64_t>(dst.size()) != src.numel()) throw std::invalid_argument("cpu download: size mismatch");
  std::memcpy(dst.data(), src.data, dst.size_bytes());
}

void cpu_ops::download_raw(void* dst, const tensor& src) { std::memcpy(dst, src.data, src.num_bytes()); }

void cpu_ops::embedding(const tensor& ids, const tensor& table, const tensor& out) {
  require_f32(table, "embedding");
  const int64_t num_tokens = ids.dim(0), hidden = table.dim(1), vocab = table.dim(0);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t id = ids.as<int32_t>()[t];
    if (id < 0 || id >= vocab) throw std::out_of_range("embedding: token id " + std::to_string(id) + " outside the vocabulary");
    std::memcpy(out.as<float>() + t * hidden, table.as<float>() + id * hidden, hidden * sizeof(float));
  }
}

void cpu_ops::embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out) {
  require_f32(table, "embedding_shard");
  const int64_t num_tokens = ids.dim(0), hidden = table.dim(1), rows = table.dim(0);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int64_t row = int64_t{ids.as<int32_t>()[t]} - first_id;
    float* o = out.as<float>() + t * hidden;
    if (row < 0 || row >= rows) std::fill(o, o + hidden, 0.0f);
    else std::memcpy(o, table.as<float>() + row * hidden, hidden * sizeof(float));
  }
}

void cpu_ops::rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out) {
  require_f32(x, "rms_norm");
  const int64_t rows = x.dim(0), hidden = x.dim(1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.as<float>() + r * hidden;
    float* o = out.as<float>() + r * hidden;
    double sum_sq = 0;
    for (int64_t i = 0; i < hidden; ++i) sum_sq += double(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum_sq / hidden) + eps);
    for (int64_t i = 0; i < hidden; ++i) o[i] = weight.as<float>()[i] * (xr[i] * inv);
  }
}

void cpu_ops::add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps) {
  const int64_t n = x.numel();
  float* xs = x.as<float>();
  float* res = residual.as<float>();
  for (int64_t i = 0; i < n; ++i) res[i] += xs[i];
  rms_norm(residual, weight, eps, x);
}

namespace {

// x's rows (f32) quantized as linear_fp8 quantizes its input: each row's scale (input_scale's value when not empty, else
// fp8_dynamic_scale) into out.scales and its codes into out.codes.
void quantize_rows_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out, const char* op) {
  const int64_t rows = x.dim(0), k = x.row_elems();
  if (x.type != dtype::f32 || out.codes.type != dtype::f8_e4m3 || out.codes.dim(0) != rows ||
      out.codes.row_elems() != k || out.scales.type != dtype::f32 || out.scales.numel() != rows ||
      (!input_scale.empty() && (input_scale.type != dtype::f32 || input_scale.numel() != 1)))
    throw std::invalid_argument(std::string(op) + ": x " + x.shape_string() + ", codes " + out.codes.shape_string() + " " +
                                std::string(troupe::name(out.codes.type)) + ", scales " + out.scales.shape_string() +
                                " disagree");
  const float* xs = x.as<float>();
  float* scales = out.scales.as<float>();
  auto* codes = out.codes.as<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const std::span<const float> row(xs + r * k, static_cast<size_t>(k));
    const float s = input_scale.empty() ? fp8_dynamic_scale(row) : *input_scale.as<float>();
    scales[r] = s;
    fp8_quantize_row(row, s, std::span<uint8_t>(codes + r * k, static_cast<size_t>(k)));
  }
}

} // namespace

void cpu_ops::add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                               const tensor& input_scale, const fp8_activations& out) {
  add_rms_norm(x, residual, weight, eps);
  quantize_rows_fp8(x, input_scale, out, "add_rms_norm_fp8");
}

void cpu_ops::qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
                      float eps) {
  require_f32(qkv, "qk_norm");
  const int64_t tokens = qkv.dim(0), width = qkv.dim(1), d = shape.head_dim;
  const int64_t heads = int64_t{shape.num_heads} + shape.num_kv_heads;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      // q heads then k heads, side by side at the start of the row.
      float* x = qkv.as<float>() + t * width + h * d;
      const float* w = (h < shape.num_heads ? q_weight : k_weight).as<float>();
      double sum_sq = 0;
      for (int64_t i = 0; i < d; ++i) sum_sq += double(x[i]) * x[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(sum_sq / d) + eps);
      for (int64_t i = 0; i < d; ++i) x[i] = w[i] * (x[i] * inv);
    }
}

void cpu_ops::linear(const tensor& x, const tensor& weight, const tensor& bias, const tensor& out, bool accumulate) {
  require_f32(x, "linear");
  require_f32(weight, "linear");
  const int64_t rows = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (weight.dim(1) != k) throw std::invalid_argument("linear: x " + x.shape_string() + " and weight " + weight.shape_string());
  const float* xs = x.as<float>();
  const float* ws = weight.as<float>();
  const float* b = bias.empty() ? nullptr : bias.as<float>();
  float* o = out.as<float>();
  // Threads pay off only on large products; small ones (decode of a small model) run serially.
#pragma omp parallel for schedule(static) if (rows * n * k > (int64_t{1} << 22))
  for (int64_t j = 0; j < n; ++j) {
    const float* wr = ws + j * k;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = xs + r * k;
      // Eight partial sums let the compiler vectorise without reassociating one long chain.
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= k; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += xr[i + l] * wr[i + l];
      float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; i < k; ++i) sum += xr[i] * wr[i];
      if (b) sum += b[j];
      float& dst = o[r * n + j];
      dst = accumulate ? dst + sum : sum;
    }
  }
}

void cpu_ops::linear_int4(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) {
  require_f32(x, "linear_int4");
  require_f32(w.scales, "linear_int4");
  require_f32(w.zeros, "linear_int4");
  const int64_t k = x.dim(1), n = w.qweight.dim(0), g = w.group_size;
  if (w.qweight.type != dtype::i32 || g <= 0 || g % 8 != 0 || k % g != 0 || w.qweight.row_elems() != k / 8 ||
      w.scales.dim(0) != n || w.scales.row_elems() != k / g || w.zeros.dim(0) != n || w.zeros.row_elems() != k / g)
    throw std::invalid_argument("linear_int4: x " + x.shape_string() + ", qweight " + w.qweight.shape_string() +
                                ", scales " + w.scales.shape_string() + ", zeros " + w.zeros.shape_string() +
                                " and group " + std::to_string(g) + " disagree");
  // The reference: the weight dequantized to f32, then the f32 linear, so its bits are those of `linear`
  // on the dequantized matrix (what the loader's f32 path computes).
  std::vector<float> dense(static_cast<size_t>(n * k));
  const auto* q = w.qweight.as<int32_t>();
  const float* scales = w.scales.as<float>();
  const float* zeros = w.zeros.as<float>();
  int shift[8];  // weight 8j + i's bits in word j (int4_nibble: i here, unless a test says otherwise)
  for (int i = 0; i < 8; ++i) shift[i] = 4 * int4_nibble(i);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const auto word = static_cast<uint32_t>(q[r * (k / 8) + c / 8]);
      const float v = static_cast<float>((word >> shift[c % 8]) & 15u);
      const int64_t at = r * (k / g) + c / g;
      dense[static_cast<size_t>(r * k + c)] = (v - zeros[at]) * scales[at];
    }
  if (int4_fp8_step(x.dim(0))) {
    // The FP8 form (int4_fp8_rows): the dequantized weight requantized per output channel, then W8A8 FP8.
    const fp8_weight f = quantize_fp8(dense, n, k, true);
    const fp8_device_weight form{tensor(const_cast<uint8_t*>(f.codes.data()), dtype::f8_e4m3, {n, k}),
                                 tensor(const_cast<float*>(f.scales.data()), dtype::f32, {n}), tensor{}};
    linear_fp8(x, form, bias, out);
    return;
  }
  linear(x, tensor(dense.data(), dtype::f32, {n, k}), bias, out, false);
}

namespace {

// Every e4m3 code's value in f32, exactly.
const std::array<float, 256>& fp8_e4m3_values() {
  static const std::array<float, 256> values = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = f8_e4m3_to_f32(static_cast<uint8_t>(c));
    return t;
  }();
  return values;
}

// out = (x · decoded weight codesᵀ) · (x_scales[row] (1 when null) · w.scale[feature]) + bias, in f32: `linear` over the
// decoded codes, then the scales and the bias, as the GPU's epilogues apply them.  x [rows, K] f32, out [rows, N] f32
void linear_by_fp8_codes(cpu_ops& ops, const tensor& x, const float* x_scales, const fp8_device_weight& w,
                         const tensor& bias, const tensor& out) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.weight.dim(0);
  std::vector<float> wq(static_cast<size_t>(n * k));
  const auto* wc = w.weight.as<uint8_t>();
  for (size_t i = 0; i < wq.size(); ++i) wq[i] = fp8_e4m3_values()[wc[i]];
  ops.linear(x, tensor(wq.data(), dtype::f32, {n, k}), tensor{}, out, false);
  const float* sw = w.scale.as<float>();
  const float* b = bias.empty() ? nullptr : bias.as<float>();
  float* o = out.as<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float& v = o[r * n + j];
      v = v * (x_scales ? x_scales[r] * sw[j] : sw[j]);
      if (b) v += b[j];
    }
}

} // namespace

void cpu_ops::linear_fp8(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) {
  require_f32(x, "linear_fp8");
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.weight.dim(0);
  if (w.weight.type != dtype::f8_e4m3 || w.weight.rank != 2 || w.weight.dim(1) != k || w.scale.numel() != n ||
      (!w.input_scale.empty() && (w.input_scale.type != dtype::f32 || w.input_scale.numel() != 1)) ||
      out.dim(0) != rows || out.row_elems() != n || (!bias.empty() && bias.numel() != n))
    throw std::invalid_argument("linear_fp8: x " + x.shape_string() + ", weight " + w.weight.shape_string() + " " +
                                std::string(troupe::name(w.weight.type)) + ", scale " + w.scale.shape_string() + ", output " +
                                out.shape_string() + " disagree");
  if (rows <= fp8_w16_rows()) {
    // W8A16: x itself, not its codes (f32 sums; the GPU's differ by their order), as fp8_w16_gemv_kernel.
    require_f32(w.scale, "linear_fp8");
    require_f32(out, "linear_fp8");
    linear_by_fp8_codes(*this, x, nullptr, w, bias, out);
    return;
  }
  std::vector<uint8_t> codes(static_cast<size_t>(rows * k));
  std::vector<float> scales(static_cast<size_t>(rows));
  const fp8_activations xq{tensor(codes.data(), dtype::f8_e4m3, {rows, k}), tensor(scales.data(), dtype::f32, {rows})};
  quantize_rows_fp8(x, w.input_scale, xq, "linear_fp8");
  linear_fp8_quantized(xq, w, bias, out);
}

void cpu_ops::linear_fp8_quantized(const fp8_activations& x, const fp8_device_weight& w, const tensor& bias,
                                   const tensor& out) {
  require_f32(w.scale, "linear_fp8");
  require_f32(out, "linear_fp8");
  const int64_t rows = x.codes.dim(0), k = x.codes.row_elems(), n = w.weight.dim(0);
  if (x.codes.type != dtype::f8_e4m3 || x.scales.type != dtype::f32 || x.scales.numel() != rows ||
      w.weight.type != dtype::f8_e4m3 || w.weight.rank != 2 || w.weight.dim(1) != k || w.scale.numel() != n ||
      out.dim(0) != rows || out.row_elems() != n || (!bias.empty() && bias.numel() != n))
    throw std::invalid_argument("linear_fp8_quantized: codes " + x.codes.shape_string() + " " +
                                std::string(troupe::name(x.codes.type)) + ", scales " + x.scales.shape_string() +
                                ", weight " + w.weight.shape_string() + ", output " + out.shape_string() + " disagree");
  // x's codes as f32, exactly (each product of two e4m3 values is exact in f32, so the sums are `linear`'s).
  std::vector<float> xq(static_cast<size_t>(rows * k));
  const auto* xc = x.codes.as<uint8_t>();
  for (size_t i = 0; i < xq.size(); ++i) xq[i] = fp8_e4m3_values()[xc[i]];
  linear_by_fp8_codes(*this, tensor(xq.data(), dtype::f32, {rows, k}), x.scales.as<float>(), w, bias, out);
}

void cpu_ops::silu_and_mul(const tensor& x, const tensor& out) {
  const int64_t rows = x.dim(0), inter = out.dim(1);
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = x.as<float>() + r * 2 * inter;
    const float* up = gate + inter;
    float* o = out.as<float>() + r * inter;
    for (int64_t i = 0; i < inter; ++i) o[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
}

void cpu_ops::silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out) {
  require_f32(x, "silu_and_mul_fp8");
  const int64_t rows = x.dim(0), inter = x.dim(1) / 2;
  if (x.dim(1) != 2 * inter || out.codes.dim(0) != rows || out.codes.row_elems() != inter)
    throw std::invalid_argument("silu_and_mul_fp8: x " + x.shape_string() + " and codes " + out.codes.shape_string() +
                                " disagree");
  std::vector<float> act(static_cast<size_t>(rows * inter));
  const tensor a(act.data(), dtype::f32, {rows, inter});
  silu_and_mul(x, a);
  quantize_rows_fp8(a, input_scale, out, "silu_and_mul_fp8");
}

void cpu_ops::fill_random(const random_slice& s, const tensor& out) {
  if (out.type != dtype::f32) throw std::invalid_argument("cpu fill_random: the CPU backend keeps floats in f32");
  const auto kind = static_cast<weight_spec::init>(s.kind);
  const int64_t rows = out.dim(0), cols = out.row_elems();
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out.as<float>() + r * cols;
    if (s.dim == 0 && r >= s.length) std::fill(o, o + cols, 0.0f);
    else random_weight_run(s.state, kind, s.dim == 0 ? (s.begin + r) * s.full_cols : r * s.full_cols + s.begin, cols, o);
  }
}

void cpu_ops::gather_rows(const tensor& x, const tensor& indices, const tensor& out) {
  const int64_t width = x.row_elems();
  const size_t row_bytes = width * size_in_bytes(x.type);
  for (int64_t i = 0; i < indices.dim(0); ++i) {
    const int32_t src = indices.as<int32_t>()[i];
    std::memcpy(static_cast<std::byte*>(out.data) + i * row_bytes, static_cast<std::byte*>(x.data) + src * row_bytes,
                row_bytes);
  }
}

void cpu_ops::copy_columns(const tensor& x, const tensor& out) {
  const size_t elem = size_in_bytes(x.type);
  const int64_t rows = x.dim(0), from = x.row_elems(), to = out.row_elems();
  if (out.type != x.type || out.dim(0) != rows || to > from)
    throw std::invalid_argument("copy_columns: " + x.shape_string() + " cannot be cut to " + out.shape_string());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<std::byte*>(out.data) + r * to * elem, static_cast<const std::byte*>(x.data) + r * from * elem,
                to * elem);
}

void cpu_ops::argmax(const tensor& logits, const tensor& out) {
  require_f32(logits, "argmax");
  const int64_t rows = logits.dim(0), vocab = logits.row_elems();
  for (int64_t r = 0; r < rows; ++r)
    out.as<int32_t>()[r] = argmax_lowest_id(std::span<const float>(logits.as<float>() + r * vocab, size_t(vocab)));
}

void cpu_ops::sample(const tensor& logits, const sampling_batch& batch, const tensor& out) {
  require_f32(logits, "sample");
  const int64_t num_rows = batch.num_rows(), vocab = logits.row_elems();
  if (logits.dim(0) != num_rows || out.type != dtype::i32 || out.numel() < num_rows || vocab > INT32_MAX)
    throw std::invalid_argument("cpu sample: logits " + logits.shape_string() + ", " + std::to_string(num_rows) +
                                " sampling rows, out " + out.shape_string());
  const auto* rows = batch.rows.as<const sampling_row>();
  const auto* masks = batch.masks.as<const int32_t>();
  const auto* biases = batch.biases.as<const logit_bias_entry>();
  const auto* penalties = batch.penalties.as<const penalty_entry>();

  // The requests the batch was built from, as far as the sampler reads them: masked ids become stop
  // ids of a request that never reaches min_tokens, and penalty counts become prompt and output ids.
  std::vector<sampling_params> params(static_cast<size_t>(num_rows));
  std::vector<std::vector<int32_t>> prompt(params.size()), output(params.size());
  std::vector<sample_request> reqs(params.size());
  for (size_t r = 0; r < params.size(); ++r) {
    const sampling_row& row = rows[r];
    sampling_params& p = params[r];
    p.temperature = row.greedy ? 0.0f : row.temperature;
    p.top_p = row.top_p;
    p.top_k = row.top_k;
    p.min_p = row.min_p;
    p.repetition_penalty = row.repetition_penalty;
    p.frequency_penalty = row.frequency_penalty;
    p.presence_penalty = row.presence_penalty;
    if (row.mask_end > row.mask_begin) {
      p.min_tokens = INT32_MAX;
      p.stop_token_ids.assign(masks + row.mask_begin, masks + row.mask_end);
    }
    for (int32_t i = row.bias_begin; i < row.bias_end; ++i) p.logit_bias.emplace_back(biases[i].id, biases[i].bias);
    for (int32_t i = row.penalty_begin; i < row.penalty_end; ++i) {
      output[r].insert(output[r].end(), static_cast<size_t>(std::max(0, penalties[i].output_count)), penalties[i].id);
      if (penalties[i].in_prompt) prompt[r].push_back(penalties[i].id);
    }
    reqs[r] = sample_request{&p, prompt[r], output[r], row.seed, {}, {}};
    // The batch's bitmask already holds the end-id fallback (sampling_inputs), so no end ids are needed.
    if (row.bitmask_row >= 0) {
      const int64_t words = batch.bitmasks.row_elems();
      reqs[r].allowed_tokens = std::span<const uint32_t>(batch.bitmasks.as<const uint32_t>() + row.bitmask_row * words,
                                                         static_cast<size_t>(words));
    }
  }
  const std::span<float> values(logits.as<float>(), static_cast<size_t>(num_rows * vocab));
  apply_processors_cpu(values, static_cast<int32_t>(vocab), reqs);
  // draw_cpu would take the index from output_ids.size(); the rebuilt output holds only penalized ids.
  for (size_t r = 0; r < params.size(); ++r) {
    const auto row = values.subspan(r * static_cast<size_t>(vocab), static_cast<size_t>(vocab));
    out.as<int32_t>()[r] = rows[r].greedy ? argmax_lowest_id(row)
                                          : inverse_cdf_draw(row, sampling_uniform(rows[r].seed, rows[r].draw_index));
  }
}

} // namespace troupe
