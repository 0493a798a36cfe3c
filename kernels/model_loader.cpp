#include "kernels/model_loader.hpp"

#include <set>

#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/weight_slice_reader.hpp"

namespace troupe {
namespace {

// Throws checkpoint_error when the checkpoint holds a tensor the config does not use.
void refuse_unused_tensors(const checkpoint& ckpt, const model_config& config) {
  std::set<std::string> expected;
  for (const weight_spec& spec : hf_weight_specs(config)) expected.insert(spec.name);
  for (const std::string& name : ckpt.names()) {
    if (expected.count(name)) continue;
    // Tied checkpoints sometimes keep a copy of the head; old ones stored rotary tables.
    if ((name == "lm_head.weight" && config.tie_word_embeddings) || name.ends_with("rotary_emb.inv_freq")) continue;
    const tensor_info* t = ckpt.find(name);
    throw checkpoint_error((t && t->file ? t->file->string() : std::string("checkpoint")) + ": tensor '" + name +
                           "' is not used by a " + config.architecture_name +
                           " with this config.json; the config and the weights disagree");
  }
}

} // namespace

weight_source checkpoint_weight_source(const checkpoint& ckpt, const model_config& config) {
  refuse_unused_tensors(ckpt, config);
  return [&ckpt](const weight_spec& spec, std::vector<float>& values) {
    const tensor_info& t = ckpt.require(spec.name, spec.shape);
    values.resize(static_cast<size_t>(t.num_elements()));
    checkpoint::to_f32(t, values);
  };
}

weight_source sharded_weight_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan) {
  refuse_unused_tensors(ckpt, config);
  return [&ckpt, &plan](const weight_spec& spec, std::vector<float>& values) {
    read_slice_f32(ckpt, plan.slice(spec.name), values);
  };
}

weight_source dummy_weight_source(uint64_t seed) {
  return [seed](const weight_spec& spec, std::vector<float>& values) { random_weight_values(spec, seed, values); };
}

weight_source sharded_dummy_weight_source(uint64_t seed, const sharding_plan& plan) {
  return [seed, &plan](const weight_spec& spec, std::vector<float>& values) {
    random_slice_f32(plan.slice(spec.name), spec.kind, seed, values);
  };
}

} // namespace troupe
