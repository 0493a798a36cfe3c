#include "runtime/model/weight_names.hpp"

#include "runtime/model/parallel_rows.hpp"

#include <cmath>

namespace troupe {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

} // namespace

std::vector<weight_spec> hf_weight_specs(const model_config& c) {
  using k = weight_spec::init;
  std::vector<weight_spec> specs;
  const int64_t h = c.hidden_size;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, k::matrix});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", {h}, k::norm});
    specs.push_back({p + "self_attn.q_proj.weight", {c.q_size(), h}, k::matrix});
    specs.push_back({p + "self_attn.k_proj.weight", {c.kv_size(), h}, k::matrix});
    specs.push_back({p + "self_attn.v_proj.weight", {c.kv_size(), h}, k::matrix});
    if (c.qkv_bias) {
      specs.push_back({p + "self_attn.q_proj.bias", {c.q_size()}, k::bias});
      specs.push_back({p + "self_attn.k_proj.bias", {c.kv_size()}, k::bias});
      specs.push_back({p + "self_attn.v_proj.bias", {c.kv_size()}, k::bias});
    }
    specs.push_back({p + "self_attn.o_proj.weight", {h, c.q_size()}, k::matrix});
    if (c.o_bias) specs.push_back({p + "self_attn.o_proj.bias", {h}, k::bias});
    if (c.qk_norm) {  // Qwen3Attention's modules after o_proj
      specs.push_back({p + "self_attn.q_norm.weight", {c.head_dim}, k::norm});
      specs.push_back({p + "self_attn.k_norm.weight", {c.head_dim}, k::norm});
    }
    specs.push_back({p + "post_attention_layernorm.weight", {h}, k::norm});
    specs.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, h}, k::matrix});
    specs.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, h}, k::matrix});
    specs.push_back({p + "mlp.down_proj.weight", {h, c.intermediate_size}, k::matrix});
  }
  specs.push_back({"model.norm.weight", {h}, k::norm});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, h}, k::matrix});
  return specs;
}

uint64_t random_weight_state(const std::string& name, uint64_t seed) { return seed ^ hash_name(name); }

namespace {

void random_run_serial(uint64_t state, weight_spec::init kind, int64_t begin, int64_t count, float* out) {
  // splitmix64 steps its state by a constant, so the value at index i comes from the state after i + 1 steps.
  state += static_cast<uint64_t>(begin) * 0x9e3779b97f4a7c15ULL;
  const float std_dev = 0.02f;
  const float a = std_dev * std::sqrt(3.0f);
  for (int64_t i = 0; i < count; ++i) {
    const float u = static_cast<float>(splitmix64(state) >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    switch (kind) {
      case weight_spec::init::matrix: out[i] = (2 * u - 1) * a; break;
      case weight_spec::init::norm: out[i] = 1.0f + (2 * u - 1) * 0.1f; break;
      case weight_spec::init::bias: out[i] = (2 * u - 1) * std_dev; break;
    }
  }
}

} // namespace

void random_weight_run(uint64_t state, weight_spec::init kind, int64_t begin, int64_t count, float* out) {
  // Value i depends on i alone, so ranges of the run are made apart, on every core.
  parallel_rows(count, rows_per_million(1), [&](int64_t b, int64_t e) { random_run_serial(state, kind, begin + b, e - b, out + b); });
}

void random_weight_range(const weight_spec& spec, uint64_t seed, int64_t begin, int64_t count, float* out) {
  random_weight_run(random_weight_state(spec.name, seed), spec.kind, begin, count, out);
}

void random_weight_values(const weight_spec& spec, uint64_t seed, std::vector<float>& out) {
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  out.resize(static_cast<size_t>(n));
  random_weight_range(spec, seed, 0, n, out.data());
}

} // namespace troupe
