// CPU twins of the attention ops: rotary embedding with the paged KV write, and paged attention.

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"

namespace troupe {
namespace {

bool is_fp8(dtype t) { return t == dtype::f8_e4m3 || t == dtype::f8_e5m2; }

// Writes kv_width values into the cache row at `slot`: copied for an f32 cache, x / scale rounded as the GPU
// rounds for an FP8 one.
void write_cache_row(const tensor& cache, int64_t slot, int64_t kv_width, const float* x, float scale) {
  if (!is_fp8(cache.type)) {
    std::copy(x, x + kv_width, cache.as<float>() + slot * kv_width);
    return;
  }
  std::uint8_t* out = cache.as<std::uint8_t>() + slot * kv_width;
  const auto encode = cache.type == dtype::f8_e4m3 ? f32_to_f8_e4m3 : f32_to_f8_e5m2;
  for (int64_t i = 0; i < kv_width; ++i) out[i] = encode(x[i] / scale);
}

// One head's d cached values at `slot` as f32: in place for an f32 cache, else dequantized (code * scale)
// into `buffer`.
const float* read_cache_head(const tensor& cache, int64_t offset, int64_t d, float scale, std::vector<float>& buffer) {
  if (!is_fp8(cache.type)) return cache.as<float>() + offset;
  const std::uint8_t* codes = cache.as<std::uint8_t>() + offset;
  const auto decode = cache.type == dtype::f8_e4m3 ? f8_e4m3_to_f32 : f8_e5m2_to_f32;
  buffer.resize(static_cast<size_t>(d));
  for (int64_t c = 0; c < d; ++c) buffer[static_cast<size_t>(c)] = decode(codes[c]) * scale;
  return buffer.data();
}

} // namespace

void cpu_ops::rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin,
                            const tensor& slot_mapping, const tensor& k_cache, const tensor& v_cache,
                            const attention_shape& s) {
  const int64_t num_tokens = qkv.dim(0), row = qkv.dim(1), d = s.head_dim, half = d / 2;
  const int64_t kv_width = int64_t(s.num_kv_heads) * d;
  const int64_t max_pos = cos_sin.dim(0);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const int32_t pos = positions.as<int32_t>()[t];
    if (pos < 0 || pos >= max_pos) throw std::out_of_range("rope: position " + std::to_string(pos) + " beyond the rotary table");
    const float* cos = cos_sin.as<float>() + pos * d;
    const float* sin = cos + half;
    float* r = qkv.as<float>() + t * row;
    // q heads, then k heads, are contiguous: rotate each head's two halves.
    for (int64_t h = 0; h < s.num_heads + s.num_kv_heads; ++h) {
      float* x = r + h * d;
      for (int64_t i = 0; i < half; ++i) {
        const float a = x[i], b = x[i + half];
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
      }
    }
    const int64_t slot = slot_mapping.as<int64_t>()[t];
    if (slot < 0) continue;
    const float* k = r + int64_t(s.num_heads) * d;
    write_cache_row(k_cache, slot, kv_width, k, s.k_scale);
    write_cache_row(v_cache, slot, kv_width, k + kv_width, s.v_scale);
  }
}

void cpu_ops::paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                              const attention_metadata& meta, const attention_shape& s, const tensor& out) {
  const int64_t d = s.head_dim, row = qkv.dim(1), kv_width = int64_t(s.num_kv_heads) * d;
  const int64_t group = s.num_heads / s.num_kv_heads;
  const int64_t max_blocks = meta.block_tables.dim(1);
  const int32_t* starts = meta.query_start.as<int32_t>();
  std::vector<float> scores, dequantized;
  for (int32_t seq = 0; seq < meta.num_seqs; ++seq) {
    const int64_t q_begin = starts[seq], q_len = starts[seq + 1] - starts[seq];
    const int64_t seq_len = meta.seq_lens.as<int32_t>()[seq];
    const int32_t* table = meta.block_tables.as<int32_t>() + seq * max_blocks;
    for (int64_t i = 0; i < q_len; ++i) {
      const int64_t pos = seq_len - q_len + i;
      const int64_t first = meta.sliding_window > 0 ? std::max<int64_t>(0, pos - meta.sliding_window + 1) : 0;
      const int64_t t = q_begin + i;
      scores.resize(pos + 1);
      for (int64_t h = 0; h < s.num_heads; ++h) {
        const float* q = qkv.as<float>() + t * row + h * d;
        const int64_t kv_head = h / group;
        float max_score = -INFINITY;
        for (int64_t p = first; p <= pos; ++p) {
          const int64_t slot = int64_t(table[p / s.block_size]) * s.block_size + p % s.block_size;
          const float* k = read_cache_head(k_cache, slot * kv_width + kv_head * d, d, s.k_scale, dequantized);
          float dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
          scores[p] = dot * s.scale;
          max_score = std::max(max_score, scores[p]);
        }
        float denom = 0;
        for (int64_t p = first; p <= pos; ++p) denom += scores[p] = std::exp(scores[p] - max_score);
        float* o = out.as<float>() + t * int64_t(s.num_heads) * d + h * d;
        std::fill(o, o + d, 0.0f);
        for (int64_t p = first; p <= pos; ++p) {
          const int64_t slot = int64_t(table[p / s.block_size]) * s.block_size + p % s.block_size;
          const float* v = read_cache_head(v_cache, slot * kv_width + kv_head * d, d, s.v_scale, dequantized);
          const float w = scores[p] / denom;
          for (int64_t c = 0; c < d; ++c) o[c] += w * v[c];
        }
      }
    }
  }
}

} // namespace troupe
