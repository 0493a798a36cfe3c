#include "kernels/model.hpp"

#include <cmath>
#include <cstring>

#include "runtime/error.hpp"
#include "runtime/rope_table.hpp"

namespace troupe {
namespace {

device_buffer upload_new(ops& backend, dtype type, std::initializer_list<int64_t> shape, const std::vector<float>& values) {
  device_buffer b = backend.alloc(type, shape);
  backend.upload(b, values);
  return b;
}

} // namespace

model_weights load_model_weights(const model_config& c, ops& backend, dtype type, const weight_source& source) {
  const std::vector<weight_spec> specs = hf_weight_specs(c);
  auto find = [&](const std::string& name) -> const weight_spec& {
    for (const auto& s : specs)
      if (s.name == name) return s;
    throw std::logic_error("no weight spec for " + name);
  };
  std::vector<float> values, stacked;
  auto load = [&](const std::string& name) -> std::vector<float>& {
    source(find(name), values);
    return values;
  };
  // Loads several tensors with equal column counts and stacks their rows into one.
  auto stack = [&](std::initializer_list<std::string> names) -> std::vector<float>& {
    stacked.clear();
    for (const auto& n : names) {
      load(n);
      stacked.insert(stacked.end(), values.begin(), values.end());
    }
    return stacked;
  };

  const int64_t h = c.hidden_size, qkv_rows = c.q_size() + 2 * c.kv_size();
  model_weights w;
  w.embed = upload_new(backend, type, {c.vocab_size, h}, load("model.embed_tokens.weight"));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layer_weights lw;
    lw.input_norm = upload_new(backend, type, {h}, load(p + "input_layernorm.weight"));
    lw.qkv = upload_new(backend, type, {qkv_rows, h},
                        stack({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"}));
    if (c.qkv_bias)
      lw.qkv_bias = upload_new(backend, type, {qkv_rows},
                               stack({p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"}));
    lw.o_proj = upload_new(backend, type, {h, c.q_size()}, load(p + "self_attn.o_proj.weight"));
    if (c.o_bias) lw.o_bias = upload_new(backend, type, {h}, load(p + "self_attn.o_proj.bias"));
    lw.post_norm = upload_new(backend, type, {h}, load(p + "post_attention_layernorm.weight"));
    lw.gate_up = upload_new(backend, type, {2 * c.intermediate_size, h},
                            stack({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}));
    lw.down = upload_new(backend, type, {h, c.intermediate_size}, load(p + "mlp.down_proj.weight"));
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = upload_new(backend, type, {h}, load("model.norm.weight"));
  if (!c.tie_word_embeddings) w.lm_head = upload_new(backend, type, {c.vocab_size, h}, load("lm_head.weight"));
  return w;
}

model::model(model_config config, ops& backend, model_weights weights, dtype act, model_limits limits)
    : config_(std::move(config)), ops_(backend), weights_(std::move(weights)), limits_(limits) {
  const model_config& c = config_;
  if (limits_.block_size <= 0) throw user_error("--block-size must be positive");
  if (limits_.num_blocks <= 0) throw user_error("the KV cache has no blocks; give it more memory");
  shape_.num_heads = static_cast<int32_t>(c.num_heads);
  shape_.num_kv_heads = static_cast<int32_t>(c.num_kv_heads);
  shape_.head_dim = static_cast<int32_t>(c.head_dim);
  shape_.block_size = limits_.block_size;
  shape_.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  for (int64_t l = 0; l < c.num_layers; ++l) {
    k_cache_.push_back(ops_.alloc(act, {limits_.num_blocks, limits_.block_size, c.num_kv_heads, c.head_dim}));
    v_cache_.push_back(ops_.alloc(act, {limits_.num_blocks, limits_.block_size, c.num_kv_heads, c.head_dim}));
  }
  cos_sin_ = ops_.alloc(dtype::f32, {limits_.max_model_len, c.head_dim});
  ops_.upload(cos_sin_, rope_cos_sin_table(c, limits_.max_model_len));

  const int64_t t = limits_.max_num_tokens, s = limits_.max_num_seqs;
  const int64_t max_blocks = (limits_.max_model_len + limits_.block_size - 1) / limits_.block_size;
  ids_ = ops_.alloc(dtype::i32, {t});
  positions_ = ops_.alloc(dtype::i32, {t});
  slots_ = ops_.alloc(dtype::i64, {t});
  query_start_ = ops_.alloc(dtype::i32, {s + 1});
  seq_lens_ = ops_.alloc(dtype::i32, {s});
  block_tables_ = ops_.alloc(dtype::i32, {s * max_blocks});
  logits_indices_ = ops_.alloc(dtype::i32, {t});
  hidden_ = ops_.alloc(act, {t, c.hidden_size});
  residual_ = ops_.alloc(act, {t, c.hidden_size});
  qkv_ = ops_.alloc(act, {t, c.q_size() + 2 * c.kv_size()});
  attn_ = ops_.alloc(act, {t, c.q_size()});
  mlp_ = ops_.alloc(act, {t, 2 * c.intermediate_size});
  act_ = ops_.alloc(act, {t, c.intermediate_size});
  selected_ = ops_.alloc(act, {t, c.hidden_size});
  logits_ = ops_.alloc(dtype::f32, {t, c.vocab_size});
  tokens_ = ops_.alloc(dtype::i32, {t});
}

int64_t model::workspace_bytes(const model_config& c, const model_limits& limits, dtype act) {
  const int64_t t = limits.max_num_tokens, s = limits.max_num_seqs, a = static_cast<int64_t>(size_in_bytes(act));
  const int64_t max_blocks = (limits.max_model_len + limits.block_size - 1) / limits.block_size;
  const int64_t inputs = t * (4 + 4 + 8 + 4 + 4) + (2 * s + 1 + s * max_blocks) * 4;
  const int64_t activations =
      t * a * (3 * c.hidden_size + c.q_size() + 2 * c.kv_size() + c.q_size() + 3 * c.intermediate_size);
  return limits.max_model_len * c.head_dim * 4 + inputs + activations + t * c.vocab_size * 4;
}

tensor model::compute_logits(const step_input& in) {
  const model_config& c = config_;
  const int64_t num_tokens = static_cast<int64_t>(in.token_ids.size());
  const int64_t num_seqs = static_cast<int64_t>(in.seq_lens.size());
  const int64_t num_logits = static_cast<int64_t>(in.logits_indices.size());
  if (num_tokens == 0 || num_tokens > limits_.max_num_tokens || num_seqs > limits_.max_num_seqs ||
      in.positions.size() != in.token_ids.size() || in.slot_mapping.size() != in.token_ids.size() ||
      in.query_start.size() != in.seq_lens.size() + 1 ||
      in.block_tables.size() != static_cast<size_t>(num_seqs * in.max_blocks_per_seq))
    throw std::invalid_argument("model::forward: malformed step input");

  // Upload the step description into the first rows of the preallocated inputs.
  const tensor ids = ids_.get().rows(0, num_tokens);
  const tensor positions = positions_.get().rows(0, num_tokens);
  const tensor slots = slots_.get().rows(0, num_tokens);
  ops_.upload_raw(ids, in.token_ids.data());
  ops_.upload_raw(positions, in.positions.data());
  ops_.upload_raw(slots, in.slot_mapping.data());
  attention_metadata meta;
  meta.num_seqs = static_cast<int32_t>(num_seqs);
  meta.query_start = query_start_.get().rows(0, num_seqs + 1);
  meta.seq_lens = seq_lens_.get().rows(0, num_seqs);
  meta.block_tables = tensor(block_tables_.get().data, dtype::i32, {num_seqs, in.max_blocks_per_seq});
  meta.sliding_window = c.sliding_window ? static_cast<int32_t>(*c.sliding_window) : 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    meta.max_query_len = std::max(meta.max_query_len, in.query_start[s + 1] - in.query_start[s]);
    meta.max_seq_len = std::max(meta.max_seq_len, in.seq_lens[s]);
  }
  ops_.upload_raw(meta.query_start, in.query_start.data());
  ops_.upload_raw(meta.seq_lens, in.seq_lens.data());
  ops_.upload_raw(meta.block_tables, in.block_tables.data());

  const tensor hidden = hidden_.get().rows(0, num_tokens);
  const tensor residual = residual_.get().rows(0, num_tokens);
  const tensor qkv = qkv_.get().rows(0, num_tokens);
  const tensor attn = attn_.get().rows(0, num_tokens);
  const tensor mlp = mlp_.get().rows(0, num_tokens);
  const tensor act = act_.get().rows(0, num_tokens);
  const float eps = static_cast<float>(c.rms_norm_eps);

  // residual holds the running sum of the stream; hidden holds the normed input to each block.
  ops_.embedding(ids, weights_.embed, residual);
  ops_.rms_norm(residual, weights_.layers[0].input_norm, eps, hidden);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const layer_weights& w = weights_.layers[l];
    ops_.linear(hidden, w.qkv, w.qkv_bias, qkv);
    ops_.rope_write_kv(qkv, positions, cos_sin_, slots, k_cache_[l], v_cache_[l], shape_);
    ops_.paged_attention(qkv, k_cache_[l], v_cache_[l], meta, shape_, attn);
    ops_.linear(attn, w.o_proj, w.o_bias, hidden);
    ops_.add_rms_norm(hidden, residual, w.post_norm, eps);
    ops_.linear(hidden, w.gate_up, tensor{}, mlp);
    ops_.silu_and_mul(mlp, act);
    ops_.linear(act, w.down, tensor{}, hidden);
    const tensor& next_norm = l + 1 < c.num_layers ? weights_.layers[l + 1].input_norm.get() : weights_.final_norm.get();
    ops_.add_rms_norm(hidden, residual, next_norm, eps);
  }

  // Only the rows that sample go through the LM head.
  const tensor indices = logits_indices_.get().rows(0, num_logits);
  ops_.upload_raw(indices, in.logits_indices.data());
  const tensor selected = selected_.get().rows(0, num_logits);
  ops_.gather_rows(hidden, indices, selected);
  const tensor out = logits_.get().rows(0, num_logits);
  ops_.linear(selected, weights_.lm_head_or_embed(), tensor{}, out);
  return out;
}

void model::forward(const step_input& in, std::vector<float>& logits) {
  const tensor out = compute_logits(in);
  logits.resize(static_cast<size_t>(out.numel()));
  ops_.download(logits, out);
}

void model::forward_greedy(const step_input& in, std::vector<int32_t>& tokens) {
  const tensor out = compute_logits(in);
  const tensor ids = tokens_.get().rows(0, out.dim(0));
  ops_.argmax(out, ids);
  tokens.resize(static_cast<size_t>(out.dim(0)));
  ops_.download_raw(tokens.data(), ids);
}

} // namespace troupe
