#pragma once
// Where model weights come from: a Hugging Face checkpoint folder, or random values at the
// config's shapes (`--load-format dummy`).

#include <cstdint>

#include "kernels/model.hpp"

namespace troupe {

class checkpoint;

// Reads each tensor from the checkpoint, checking its name and shape against the config. Throws
// checkpoint_error first if the checkpoint holds a tensor the config does not use (a sign that the config
// and the weights disagree, such as a bias the config does not declare).
weight_source checkpoint_weight_source(const checkpoint& ckpt, const model_config& config);

// Reproducible random weights (see random_weight_values).
weight_source dummy_weight_source(uint64_t seed);

} // namespace troupe
