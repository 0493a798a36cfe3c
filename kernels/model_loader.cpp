#include "kernels/model_loader.hpp"

#include "runtime/safetensors.hpp"

namespace troupe {

weight_source checkpoint_weight_source(const checkpoint& ckpt) {
  return [&ckpt](const weight_spec& spec, std::vector<float>& values) {
    const tensor_info& t = ckpt.require(spec.name, spec.shape);
    values.resize(static_cast<size_t>(t.num_elements()));
    checkpoint::to_f32(t, values);
  };
}

weight_source dummy_weight_source(uint64_t seed) {
  return [seed](const weight_spec& spec, std::vector<float>& values) { random_weight_values(spec, seed, values); };
}

} // namespace troupe
