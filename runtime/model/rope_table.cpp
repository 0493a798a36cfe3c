#include "runtime/model/rope_table.hpp"

#include <cmath>
#include <numbers>

namespace troupe {

std::vector<float> rope_inverse_frequencies(const model_config& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> inv(half);
  const float base = static_cast<float>(c.rope.theta);
  for (int64_t i = 0; i < half; ++i)
    inv[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(c.head_dim));

  const rope_config& r = c.rope;
  if (r.type == rope_config::kind::linear) {
    for (float& f : inv) f /= static_cast<float>(r.factor);
  } else if (r.type == rope_config::kind::llama3) {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    const float factor = static_cast<float>(r.factor);
    const float old_len = static_cast<float>(r.original_max_position_embeddings);
    const float low = static_cast<float>(r.low_freq_factor), high = static_cast<float>(r.high_freq_factor);
    const float low_freq_wavelen = old_len / low;
    const float high_freq_wavelen = old_len / high;
    for (float& f : inv) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      float scaled = wavelen > low_freq_wavelen ? f / factor : f;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      if (medium) {
        const float smooth = (old_len / wavelen - low) / (high - low);
        scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

std::vector<float> rope_cos_sin_table(const model_config& c, int64_t max_positions) {
  const std::vector<float> inv = rope_inverse_frequencies(c);
  const int64_t d = c.head_dim, half = d / 2;
  std::vector<float> table(static_cast<size_t>(max_positions * d));
  for (int64_t p = 0; p < max_positions; ++p) {
    float* row = table.data() + p * d;
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv[i];  // float32 product, as transformers does
      row[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      row[half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
  return table;
}

} // namespace troupe
