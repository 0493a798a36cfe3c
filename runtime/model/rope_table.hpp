#pragma once
// Rotary embedding tables, computed the way transformers computes them (float32 inverse
// frequencies, float32 position × frequency products) so logits agree to rounding.

#include <cstdint>
#include <vector>

#include "runtime/model/model_config.hpp"

namespace troupe {

// The inverse frequencies [head_dim / 2] after the config's rope scaling.
std::vector<float> rope_inverse_frequencies(const model_config& config);

// [max_positions, head_dim]: for each position, head_dim/2 cosines then head_dim/2 sines.
std::vector<float> rope_cos_sin_table(const model_config& config, int64_t max_positions);

} // namespace troupe
