#pragma once
// The tensors a Hugging Face checkpoint of a supported architecture holds, by name and shape.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model/model_config.hpp"

namespace troupe {

struct weight_spec {
  std::string name;            // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // as stored: linear weights are [out_features, in_features]
  enum class init { matrix, norm, bias } kind = init::matrix;
};

// Every tensor the config needs, in checkpoint order (embeddings, layers, final norm, lm_head).
std::vector<weight_spec> hf_weight_specs(const model_config& config);

// Fills `out` with reproducible random values for a tensor: matrices ~ U(-a, a) with std 0.02,
// norms 1 ± 0.1, biases ± 0.02. The same (seed, name) always gives the same values.
void random_weight_values(const weight_spec& spec, uint64_t seed, std::vector<float>& out);

// The values random_weight_values gives at flat indices [begin, begin + count) of the tensor, into out[0,
// count): a tensor-parallel rank makes its slice of a dummy tensor without making the rest.
void random_weight_range(const weight_spec& spec, uint64_t seed, int64_t begin, int64_t count, float* out);

// The same from the tensor's first state (random_weight_state): what a backend's fill_random op computes, so
// its CPU twin and its CUDA kernel need only the state and the kind. Value i of the tensor comes from
// splitmix64's output after i + 1 steps from `state` (kernels/cuda/fill_random.cu computes it the same way).
uint64_t random_weight_state(const std::string& name, uint64_t seed);
void random_weight_run(uint64_t state, weight_spec::init kind, int64_t begin, int64_t count, float* out);

} // namespace troupe
