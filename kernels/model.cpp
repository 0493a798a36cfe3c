#include "kernels/model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/error.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/model/memory_plan.hpp"
#include "runtime/model/parallel_rows.hpp"
#include "runtime/model/rope_table.hpp"

namespace troupe {
namespace {

device_buffer upload_new(ops& backend, dtype type, std::initializer_list<int64_t> shape, const std::vector<float>& values) {
  device_buffer b = backend.alloc(type, shape);
  backend.upload(b, values);
  return b;
}

// Room for every row's record and about a kilobyte of list entries per row (a few hundred penalized
// tokens); steps that need more grow the block.
size_t sampling_workspace_bytes(int64_t max_num_seqs) {
  return static_cast<size_t>(max_num_seqs) * (sizeof(sampling_row) + 1024);
}

} // namespace

model_weights load_model_weights(const model_config& c, ops& backend, dtype type, const weight_source& source,
                                 const int4_source& int4, const fp8_source& fp8, const weight_fill& fill) {
  const std::vector<weight_spec> specs = hf_weight_specs(c);
  auto find = [&](const std::string& name) -> const weight_spec& {
    for (const auto& s : specs)
      if (s.name == name) return s;
    throw std::logic_error("no weight spec for " + name);
  };
  std::vector<float> values;
  // One tensor of `shape`, or several with equal column counts stacked by rows into one (q/k/v, gate/up):
  // each part made in place by `fill`, or read from `source` and uploaded into its rows.
  auto make = [&](std::initializer_list<int64_t> shape, std::initializer_list<std::string> names) {
    device_buffer b = backend.alloc(type, shape);
    int64_t row = 0;
    for (const auto& n : names) {
      const weight_spec& spec = find(n);
      const tensor part = b.get().rows(row, spec.shape[0]);
      row += spec.shape[0];
      if (fill && fill(spec, backend, part)) continue;
      source(spec, values);
      backend.upload(part, values);
    }
    if (row != b.get().dim(0)) throw std::logic_error("load_model_weights: " + *names.begin() + "'s parts do not fill it");
    return b;
  };
  // The 4-bit form of several weights with equal inputs and group, rows stacked, repacked into the device
  // layout and uploaded; empty when `int4` keeps none of them packed.
  auto packed = [&](std::initializer_list<std::string> names) {
    int4_layer layer;
    if (!int4) return layer;
    std::vector<int4_weight> parts;
    for (const auto& n : names) {
      int4_weight w;
      if (!int4(find(n), w)) return layer;
      if (!parts.empty() && (w.in_features != parts[0].in_features || w.group_size != parts[0].group_size))
        throw std::invalid_argument("load_model_weights: " + n + " cannot be fused with the weights before it");
      parts.push_back(std::move(w));
    }
    const int64_t k = parts[0].in_features, g = parts[0].group_size;
    if (k % 8 != 0 || g % 8 != 0) throw user_error("4-bit weights need inputs and groups in multiples of 8; " + *names.begin() + " has " + std::to_string(k) + " and " + std::to_string(g));
    int64_t n = 0;
    for (const auto& p : parts) n += p.out_features;
    std::vector<int32_t> words(static_cast<size_t>(n * k / 8));
    std::vector<float> scales, zeros;
    int shift[8];  // weight 8j + i's bits in word j, in the backend's nibble order
    for (int i = 0; i < 8; ++i) shift[i] = 4 * backend.int4_nibble(i);
    // With the words, each output channel's scale in the FP8 form (int4_device_weight::fp8_scale): fp8_dynamic_scale
    // of the row dequantized as the device dequantizes it, its scales rounded to `type` as uploaded (the zero points
    // are whole).
    std::vector<float> fp8_scales(static_cast<size_t>(n));
    int64_t row = 0;
    for (const auto& p : parts) {
      parallel_rows(p.out_features, rows_per_million(k), [&](int64_t begin, int64_t end) {
        std::vector<float> dense(static_cast<size_t>(k));
        for (int64_t o = begin; o < end; ++o) {
          for (int64_t j = 0; j < k / 8; ++j) {
            uint32_t word = 0;
            for (int64_t i = 0; i < 8; ++i) word |= uint32_t{p.q[static_cast<size_t>(o * k + j * 8 + i)]} << shift[i];
            words[static_cast<size_t>((row + o) * (k / 8) + j)] = static_cast<int32_t>(word);
          }
          for (int64_t gi = 0; gi < k / g; ++gi) {  // a group's scale rounded once, not once a weight
            const size_t at = static_cast<size_t>(o * (k / g) + gi);
            const float s = rounded_to(type, p.scales[at]), z = static_cast<float>(p.zeros[at]);
            for (int64_t c = gi * g; c < (gi + 1) * g; ++c)
              dense[static_cast<size_t>(c)] = (static_cast<float>(p.q[static_cast<size_t>(o * k + c)]) - z) * s;
          }
          fp8_scales[static_cast<size_t>(row + o)] = fp8_dynamic_scale(dense);
        }
      });
      row += p.out_features;
      scales.insert(scales.end(), p.scales.begin(), p.scales.end());
      for (uint8_t z : p.zeros) zeros.push_back(static_cast<float>(z));
    }
    layer.group_size = static_cast<int32_t>(g);
    layer.qweight = backend.alloc(dtype::i32, {n, k / 8});
    backend.upload_raw(layer.qweight, words.data());
    layer.scales = upload_new(backend, type, {n, k / g}, scales);
    layer.zeros = upload_new(backend, type, {n, k / g}, zeros);
    layer.fp8_scale = upload_new(backend, dtype::f32, {n}, fp8_scales);
    return layer;
  };

  // The FP8 form of several weights with equal inputs, rows (and their scales) stacked and uploaded; empty when
  // `fp8` keeps none of them.
  auto in_fp8 = [&](std::initializer_list<std::string> names) {
    fp8_layer layer;
    if (!fp8) return layer;
    std::vector<uint8_t> codes;
    std::vector<float> scales;
    float input_scale = 0;
    int64_t k = -1, n = 0, kept = 0;
    for (const auto& name : names) {
      fp8_weight w;
      if (!fp8(find(name), w)) continue;
      if (k >= 0 && w.in_features != k)
        throw std::invalid_argument("load_model_weights: " + name + " cannot be fused with the weights before it");
      if (kept > 0 && (w.input_scale > 0) != (input_scale > 0))
        throw user_error(name + " has " + (w.input_scale > 0 ? "a static" : "no static") +
                         " activation scale, unlike the weights it is fused with");
      k = w.in_features;
      n += w.out_features;
      ++kept;
      codes.insert(codes.end(), w.codes.begin(), w.codes.end());
      scales.insert(scales.end(), w.scales.begin(), w.scales.end());
      input_scale = std::max(input_scale, w.input_scale);
    }
    if (kept == 0) return layer;
    if (kept != static_cast<int64_t>(names.size()))
      throw user_error("some but not all of " + std::string(*names.begin()) +
                       " and the weights fused with it are quantized to FP8; all shards of a fused layer (q/k/v, "
                       "gate/up) need the same precision");
    layer.weight = backend.alloc(dtype::f8_e4m3, {n, k});
    backend.upload_raw(layer.weight, codes.data());
    layer.scale = backend.alloc(dtype::f32, {n});
    backend.upload_raw(layer.scale, scales.data());
    if (input_scale > 0) {
      layer.input_scale = backend.alloc(dtype::f32, {1});
      backend.upload_raw(layer.input_scale, &input_scale);
    }
    return layer;
  };

  const int64_t h = c.hidden_size, qkv_rows = c.q_size() + 2 * c.kv_size();
  model_weights w;
  w.embed = make({c.vocab_size, h}, {"model.embed_tokens.weight"});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layer_weights lw;
    lw.input_norm = make({h}, {p + "input_layernorm.weight"});
    lw.qkv4 = packed({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"});
    lw.qkv8 = in_fp8({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"});
    if (lw.qkv4.empty() && lw.qkv8.empty())
      lw.qkv = make({qkv_rows, h}, {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"});
    if (c.qkv_bias)
      lw.qkv_bias = make({qkv_rows}, {p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"});
    if (c.qk_norm) {
      lw.q_norm = make({c.head_dim}, {p + "self_attn.q_norm.weight"});
      lw.k_norm = make({c.head_dim}, {p + "self_attn.k_norm.weight"});
    }
    lw.o_proj4 = packed({p + "self_attn.o_proj.weight"});
    lw.o_proj8 = in_fp8({p + "self_attn.o_proj.weight"});
    if (lw.o_proj4.empty() && lw.o_proj8.empty()) lw.o_proj = make({h, c.q_size()}, {p + "self_attn.o_proj.weight"});
    if (c.o_bias) lw.o_bias = make({h}, {p + "self_attn.o_proj.bias"});
    lw.post_norm = make({h}, {p + "post_attention_layernorm.weight"});
    lw.gate_up4 = packed({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
    lw.gate_up8 = in_fp8({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
    if (lw.gate_up4.empty() && lw.gate_up8.empty())
      lw.gate_up = make({2 * c.intermediate_size, h}, {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
    lw.down4 = packed({p + "mlp.down_proj.weight"});
    lw.down8 = in_fp8({p + "mlp.down_proj.weight"});
    if (lw.down4.empty() && lw.down8.empty()) lw.down = make({h, c.intermediate_size}, {p + "mlp.down_proj.weight"});
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = make({h}, {"model.norm.weight"});
  if (!c.tie_word_embeddings) w.lm_head = make({c.vocab_size, h}, {"lm_head.weight"});
  return w;
}

model::model(model_config config, ops& backend, model_weights weights, dtype act, model_limits limits,
             shard_context shard)
    : config_(std::move(config)), ops_(backend), shard_(shard), weights_(std::move(weights)), limits_(limits),
      act_type_(act), kv_type_(limits.kv_cache_type.value_or(act)) {
  const model_config& c = config_;
  vocab_ = shard_.comm ? shard_.vocab_size : c.vocab_size;
  if (shard_.comm && (vocab_ <= 0 || shard_.vocab_begin < 0 || vocab_ > c.vocab_size * shard_.comm->size()))
    throw std::invalid_argument("model: a shard of " + std::to_string(c.vocab_size) + " vocabulary rows in " +
                                std::to_string(shard_.comm->size()) + " cannot cover " + std::to_string(vocab_));
  // A row-parallel layer's bias is added once, before the all-reduce: by rank 0.
  if (shard_.comm && shard_.comm->rank() != 0)
    for (layer_weights& l : weights_.layers) l.o_bias = device_buffer{};
  if (limits_.block_size <= 0) throw user_error("--block-size must be positive");
  if (limits_.num_blocks <= 0) throw user_error("the KV cache has no blocks; give it more memory");
  shape_.num_heads = static_cast<int32_t>(c.num_heads);
  shape_.num_kv_heads = static_cast<int32_t>(c.num_kv_heads);
  shape_.head_dim = static_cast<int32_t>(c.head_dim);
  shape_.block_size = limits_.block_size;
  shape_.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (kv_type_ != act_type_ && kv_type_ != dtype::f8_e4m3 && kv_type_ != dtype::f8_e5m2)
    throw user_error("the KV cache is kept in the activation dtype or in FP8 (f8_e4m3, f8_e5m2), not " +
                     std::string(name(kv_type_)));
  k_scales_ = limits_.k_scales.empty() ? std::vector<float>(static_cast<size_t>(c.num_layers), 1.0f) : limits_.k_scales;
  v_scales_ = limits_.v_scales.empty() ? std::vector<float>(static_cast<size_t>(c.num_layers), 1.0f) : limits_.v_scales;
  if (std::ssize(k_scales_) != c.num_layers || std::ssize(v_scales_) != c.num_layers)
    throw std::invalid_argument("model: KV cache scales for " + std::to_string(k_scales_.size()) + " and " +
                                std::to_string(v_scales_.size()) + " layers, not " + std::to_string(c.num_layers));

  allocate_kv_cache(limits_.num_blocks);
  for (int64_t b = 1; b <= std::min({limits_.max_num_seqs, limits_.max_num_tokens, int64_t{512}});
       b = b < 8 ? 2 * b : b < 256 ? b + 8 : b + 16)
    graph_sizes_.push_back(b);
  cos_sin_ = ops_.alloc(dtype::f32, {limits_.max_model_len, c.head_dim});
  ops_.upload(cos_sin_, rope_cos_sin_table(c, limits_.max_model_len));

  const int64_t t = limits_.max_num_tokens, s = limits_.max_num_seqs;
  const int64_t max_blocks = (limits_.max_model_len + limits_.block_size - 1) / limits_.block_size;
  // [slots i64 [t] | ids [t] | positions [t] | logits_indices [t] | query_start [s + 1] | seq_lens [s] |
  //  block_tables [s, max_blocks]] in 4-byte words; slots first keeps them 8-byte aligned.
  max_blocks_ = max_blocks;
  const int64_t words = 2 * t + 3 * t + (s + 1) + s + s * max_blocks;
  inputs_ = ops_.alloc(dtype::i32, {words});
  host_inputs_ = ops_.alloc_host(static_cast<size_t>(words) * 4);
  std::byte* base = static_cast<std::byte*>(inputs_.get().data);
  int64_t at = 0;  // words
  auto region = [&](dtype type, int64_t n) {
    tensor r(base + at * 4, type, {n});
    at += n * static_cast<int64_t>(size_in_bytes(type)) / 4;
    return r;
  };
  slots_ = region(dtype::i64, t);
  ids_ = region(dtype::i32, t);
  positions_ = region(dtype::i32, t);
  logits_indices_ = region(dtype::i32, t);
  query_start_ = region(dtype::i32, s + 1);
  seq_lens_ = region(dtype::i32, s);
  block_tables_ = region(dtype::i32, s * max_blocks);
  hidden_ = ops_.alloc(act, {t, c.hidden_size});
  residual_ = ops_.alloc(act, {t, c.hidden_size});
  qkv_ = ops_.alloc(act, {t, c.q_size() + 2 * c.kv_size()});
  attn_ = ops_.alloc(act, {t, c.q_size()});
  mlp_ = ops_.alloc(act, {t, 2 * c.intermediate_size});
  act_ = ops_.alloc(act, {t, c.intermediate_size});
  // Only sampled rows (one per sequence) reach the LM head.
  const int64_t rows = std::min(t, s);
  selected_ = ops_.alloc(act, {rows, c.hidden_size});
  logits_ = ops_.alloc(dtype::f32, {rows, vocab_});
  if (shard_.comm) {
    local_logits_ = ops_.alloc(dtype::f32, {rows, c.vocab_size});
    gathered_logits_ = ops_.alloc(dtype::f32, {rows, c.vocab_size * shard_.comm->size()});
  }
  tokens_ = ops_.alloc(dtype::i32, {rows});
  // Steps of at least fp8_fused_rows_ rows have the norm or activation kernel before an FP8 layer quantize its input,
  // into these (bitwise what linear_fp8 would make; the GPU check compares them). By default the prompt steps only:
  // more rows than a decode step of the default --max-num-seqs (at most 1,024), where a kernel less a layer pays. H100,
  // W1 in FP8 + FP8 KV, 2026-12-07 (twenty-fifth session): fusing in steps of two rows or more made the prompt steps
  // 186.5-188.1 ms against 189.1-190.7 and left the 256-row decode steps as they were (8.26-8.30 ms), where the
  // 1024-thread quantizer alone brings them to 8.02-8.09; one request lost with it (3.769 against 3.607 ms a step:
  // its kernels make a row in one block). TROUPE_FP8_FUSED=N fuses in steps of N rows or more (1: every step), 0 never.
  const bool any_fp8 = std::any_of(weights_.layers.begin(), weights_.layers.end(), [](const layer_weights& w) {
    return !w.qkv8.empty() || !w.gate_up8.empty() || !w.down8.empty();
  });
  if (const char* fused = std::getenv("TROUPE_FP8_FUSED"); fused && *fused) {
    const long n = std::strtol(fused, nullptr, 10);
    fp8_fused_rows_ = n > 0 ? n : 0;
  }
  // TROUPE_FP8_ATTN_TRIGGER=1: an FP8 o_proj counts as waiting on attention (attention_shape::next_waits) as a 4-bit one
  // does, so that in decode steps of few sequences its quantizer and GEMV launch while attention runs and the GEMV
  // streams its weights meanwhile. Written in the twenty-fifth session with no device time left: off until timed (the
  // 4-bit o_proj measured 3.020-3.047 against 3.061-3.063 ms a step with it, one rtn request, H100).
  if (const char* v = std::getenv("TROUPE_FP8_ATTN_TRIGGER"); v && *v) fp8_attention_trigger_ = *v != '0';
  if (any_fp8 && fp8_fused_rows_ > 0 && fp8_fused_rows_ <= t) {
    fp8_codes_ = ops_.alloc(dtype::f8_e4m3, {t, std::max(c.hidden_size, c.intermediate_size)});
    fp8_scales_ = ops_.alloc(dtype::f32, {t});
  }
  sampling_bytes_ = sampling_workspace_bytes(s);
  sampling_ = ops_.alloc(dtype::i32, {static_cast<int64_t>(sampling_bytes_ / 4)});
  host_sampling_ = ops_.alloc_host(sampling_bytes_);
}

model::~model() {
  for (auto& [size, graph] : decode_graphs_) {
    try {
      ops_.release_graph(graph);
    } catch (const std::exception&) {  // a device already failed: nothing more to free on it
    }
  }
}

void model::allocate_kv_cache(int64_t num_blocks) {
  if (num_blocks <= 0) throw user_error("the KV cache has no blocks; give it more memory");
  for (auto& [size, graph] : decode_graphs_) ops_.release_graph(graph);
  decode_graphs_.clear();
  const model_config& c = config_;
  k_cache_.clear();  // the old cache goes before the new one comes
  v_cache_.clear();
  // A cache larger than the device (a wrong --num-gpu-blocks-override or --kv-cache-memory, or memory another
  // process took since the plan) is the user's to change: one error with the figures, nothing half-allocated.
  const int64_t block_bytes = kv_block_bytes();
  auto too_large = [&] {
    k_cache_.clear();
    v_cache_.clear();
    const std::string size = num_blocks > INT64_MAX / block_bytes ? "more bytes than a 64-bit count holds"
                                                                   : gib(num_blocks * block_bytes);
    return user_error("a KV cache of " + std::to_string(num_blocks) + " blocks of " + std::to_string(limits_.block_size) +
                      " tokens (" + size + ") does not fit in the " + ops_.name() + " backend's memory: lower "
                      "--num-gpu-blocks-override, or --kv-cache-memory on the CPU, --gpu-memory-utilization on a GPU");
  };
  if (num_blocks > INT64_MAX / block_bytes) throw too_large();
  try {
    for (int64_t l = 0; l < c.num_layers; ++l) {
      k_cache_.push_back(ops_.alloc(kv_type_, {num_blocks, limits_.block_size, c.num_kv_heads, c.head_dim}));
      v_cache_.push_back(ops_.alloc(kv_type_, {num_blocks, limits_.block_size, c.num_kv_heads, c.head_dim}));
    }
  } catch (const std::bad_alloc&) {
    throw too_large();
  }
  limits_.num_blocks = num_blocks;
}

int64_t model::kv_block_bytes() const {
  return troupe::kv_block_bytes(config_.num_layers, limits_.block_size, config_.num_kv_heads, config_.head_dim,
                                static_cast<int64_t>(size_in_bytes(kv_type_)));
}

int64_t model::graph_size_for(const step_input& in) const {
  static const bool eager_env = [] {  // TROUPE_ENFORCE_EAGER=1: --enforce-eager for programs without the flag
    const char* v = std::getenv("TROUPE_ENFORCE_EAGER");
    return v && *v && *v != '0';
  }();
  const size_t n = in.seq_lens.size();
  if (limits_.enforce_eager || eager_env || !ops_.graphs_available() || (shard_.comm && !shard_.comm->capturable()) ||
      n == 0 || in.token_ids.size() != n ||
      in.logits_indices.size() != n)
    return 0;  // no graphs, or not a decode step where every sequence samples (one token each)
  const auto it = std::lower_bound(graph_sizes_.begin(), graph_sizes_.end(), static_cast<int64_t>(n));
  return it == graph_sizes_.end() ? 0 : *it;
}

attention_metadata model::stage_inputs(const step_input& in, int64_t padded) {
  const model_config& c = config_;
  const int64_t num_tokens = static_cast<int64_t>(in.token_ids.size());
  const int64_t num_seqs = static_cast<int64_t>(in.seq_lens.size());
  const int64_t num_logits = static_cast<int64_t>(in.logits_indices.size());
  if (num_tokens == 0 || num_tokens > limits_.max_num_tokens || num_seqs > limits_.max_num_seqs ||
      num_logits > num_tokens || num_logits > num_seqs || in.positions.size() != in.token_ids.size() ||
      in.slot_mapping.size() != in.token_ids.size() || in.query_start.size() != in.seq_lens.size() + 1 ||
      in.max_blocks_per_seq > max_blocks_ ||
      in.block_tables.size() != static_cast<size_t>(num_seqs * in.max_blocks_per_seq))
    throw std::invalid_argument("model::forward: malformed step input");
  if (padded > 0 && (padded > limits_.max_num_seqs || padded > limits_.max_num_tokens || num_tokens != num_seqs))
    throw std::invalid_argument("model::forward: only a decode step pads, to at most max_num_seqs");

  attention_metadata meta;
  meta.num_seqs = static_cast<int32_t>(num_seqs);
  meta.query_start = query_start_.rows(0, num_seqs + 1);
  meta.seq_lens = seq_lens_.rows(0, num_seqs);
  meta.block_tables = tensor(block_tables_.data, dtype::i32, {num_seqs, max_blocks_});
  meta.sliding_window = c.sliding_window ? static_cast<int32_t>(*c.sliding_window) : 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    meta.max_query_len = std::max(meta.max_query_len, in.query_start[s + 1] - in.query_start[s]);
    meta.max_seq_len = std::max(meta.max_seq_len, in.seq_lens[s]);
  }
  set_multi_token_range(meta, in.query_start);
  ops_.begin_step(meta.max_query_len == 1 ? "decode, " + std::to_string(num_seqs) + " seqs" : "prefill or mixed");

  // Pack into the host twin of inputs_ at the same offsets, then one copy up to the last table row.
  std::byte* host = static_cast<std::byte*>(host_inputs_.get());
  const std::byte* dev = static_cast<const std::byte*>(inputs_.get().data);
  auto put = [&](const tensor& region, const void* src, size_t bytes) {
    if (bytes) std::memcpy(host + (static_cast<const std::byte*>(region.data) - dev), src, bytes);
  };
  put(slots_, in.slot_mapping.data(), in.slot_mapping.size() * 8);
  put(ids_, in.token_ids.data(), in.token_ids.size() * 4);
  put(positions_, in.positions.data(), in.positions.size() * 4);
  put(logits_indices_, in.logits_indices.data(), in.logits_indices.size() * 4);
  put(query_start_, in.query_start.data(), in.query_start.size() * 4);
  put(seq_lens_, in.seq_lens.data(), in.seq_lens.size() * 4);
  int32_t* table = reinterpret_cast<int32_t*>(host + (static_cast<const std::byte*>(block_tables_.data) - dev));
  const int64_t width = in.max_blocks_per_seq;
  for (int64_t s = 0; s < num_seqs; ++s) {
    std::copy_n(in.block_tables.begin() + s * width, width, table + s * max_blocks_);
    std::fill(table + s * max_blocks_ + width, table + (s + 1) * max_blocks_, 0);
  }
  // Padding rows for a graph of `padded` sequences: token 0 at position 0 of a one-token context in
  // block 0, written nowhere (slot -1); each samples its own row.
  const int64_t rows = std::max(padded, num_seqs);
  if (rows > num_seqs) {
    auto at = [&](const tensor& region) { return host + (static_cast<const std::byte*>(region.data) - dev); };
    int64_t* slots = reinterpret_cast<int64_t*>(at(slots_));
    int32_t *ids = reinterpret_cast<int32_t*>(at(ids_)), *positions = reinterpret_cast<int32_t*>(at(positions_));
    int32_t *logit_rows = reinterpret_cast<int32_t*>(at(logits_indices_)), *starts = reinterpret_cast<int32_t*>(at(query_start_));
    int32_t* lens = reinterpret_cast<int32_t*>(at(seq_lens_));
    for (int64_t s = num_seqs; s < rows; ++s) {
      slots[s] = -1;
      ids[s] = 0;
      positions[s] = 0;
      logit_rows[s] = static_cast<int32_t>(s);
      starts[s + 1] = static_cast<int32_t>(s + 1);
      lens[s] = 1;
      std::fill(table + s * max_blocks_, table + (s + 1) * max_blocks_, 0);
    }
    meta.num_seqs = static_cast<int32_t>(rows);
    meta.query_start = query_start_.rows(0, rows + 1);
    meta.seq_lens = seq_lens_.rows(0, rows);
    meta.block_tables = tensor(block_tables_.data, dtype::i32, {rows, max_blocks_});
  }
  const int64_t used_words =
      (static_cast<const std::byte*>(block_tables_.data) - dev) / 4 + rows * max_blocks_;
  ops_.upload_raw(tensor(inputs_.get().data, dtype::i32, {used_words}), host);
  return meta;
}

tensor model::compute_logits(int64_t num_tokens, int64_t num_logits, const attention_metadata& meta) {
  const model_config& c = config_;
  const tensor ids = ids_.rows(0, num_tokens);
  const tensor positions = positions_.rows(0, num_tokens);
  const tensor slots = slots_.rows(0, num_tokens);
  const tensor hidden = hidden_.get().rows(0, num_tokens);
  const tensor residual = residual_.get().rows(0, num_tokens);
  const tensor qkv = qkv_.get().rows(0, num_tokens);
  const tensor attn = attn_.get().rows(0, num_tokens);
  const tensor mlp = mlp_.get().rows(0, num_tokens);
  const tensor act = act_.get().rows(0, num_tokens);
  const float eps = static_cast<float>(c.rms_norm_eps);

  // residual holds the running sum of the stream; hidden holds the normed input to each block.
  if (shard_.comm) {
    ops_.embedding_shard(ids, weights_.embed, shard_.vocab_begin, residual);
    all_reduce(residual);  // each token's row comes from the one rank that holds it
  } else {
    ops_.embedding(ids, weights_.embed, residual);
  }
  ops_.rms_norm(residual, weights_.layers[0].input_norm, eps, hidden);
  // An FP8 layer's input comes quantized by the kernel before it where that kernel is a norm or silu_and_mul
  // (quantized_before); the first layer's q/k/v and every o_proj quantize their own.
  bool qkv_quantized = false;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const layer_weights& w = weights_.layers[l];
    if (qkv_quantized) ops_.linear_fp8_quantized(fp8_input(num_tokens, c.hidden_size), w.qkv8.view(), w.qkv_bias, qkv);
    else linear(hidden, w.qkv, w.qkv4, w.qkv8, w.qkv_bias, qkv);
    attention_shape shape = shape_;
    shape.k_scale = k_scales_[static_cast<size_t>(l)];
    shape.v_scale = v_scales_[static_cast<size_t>(l)];
    shape.next_waits = !w.o_proj4.empty() || (!w.o_proj8.empty() && fp8_attention_trigger_);
    if (c.qk_norm) ops_.qk_norm(qkv, w.q_norm, w.k_norm, shape, eps);
    ops_.rope_write_kv(qkv, positions, cos_sin_, slots, k_cache_[l], v_cache_[l], shape);
    ops_.paged_attention(qkv, k_cache_[l], v_cache_[l], meta, shape, attn);
    linear(attn, w.o_proj, w.o_proj4, w.o_proj8, w.o_bias, hidden);
    all_reduce(hidden);
    const bool down_quantized = quantized_before(w.down4, w.down8, num_tokens);
    // act made with gate/up's product (4-bit decode steps on CUDA: ops::linear_int4_silu; FP8 one-row steps with
    // fp8_settings().silu, the default: ops::linear_fp8_silu)
    bool activated = false;
    if (quantized_before(w.gate_up4, w.gate_up8, num_tokens)) {
      const fp8_activations in = fp8_input(num_tokens, c.hidden_size);
      ops_.add_rms_norm_fp8(hidden, residual, w.post_norm, eps, w.gate_up8.input_scale, in);
      ops_.linear_fp8_quantized(in, w.gate_up8.view(), tensor{}, mlp);
    } else {
      ops_.add_rms_norm(hidden, residual, w.post_norm, eps);
      if (!down_quantized && !w.gate_up4.empty()) activated = ops_.linear_int4_silu(hidden, w.gate_up4.view(), tensor{}, act);
      else if (!down_quantized && !w.gate_up8.empty()) activated = ops_.linear_fp8_silu(hidden, w.gate_up8.view(), tensor{}, act);
      if (!activated) linear(hidden, w.gate_up, w.gate_up4, w.gate_up8, tensor{}, mlp);
    }
    if (down_quantized) {
      const fp8_activations in = fp8_input(num_tokens, act.dim(1));
      ops_.silu_and_mul_fp8(mlp, w.down8.input_scale, in);
      ops_.linear_fp8_quantized(in, w.down8.view(), tensor{}, hidden);
    } else {
      if (!activated) ops_.silu_and_mul(mlp, act);
      linear(act, w.down, w.down4, w.down8, tensor{}, hidden);
    }
    all_reduce(hidden);
    const bool last = l + 1 == c.num_layers;
    const tensor& next_norm = last ? weights_.final_norm.get() : weights_.layers[l + 1].input_norm.get();
    qkv_quantized = !last && quantized_before(weights_.layers[l + 1].qkv4, weights_.layers[l + 1].qkv8, num_tokens);
    if (qkv_quantized)
      ops_.add_rms_norm_fp8(hidden, residual, next_norm, eps, weights_.layers[l + 1].qkv8.input_scale,
                            fp8_input(num_tokens, c.hidden_size));
    else
      ops_.add_rms_norm(hidden, residual, next_norm, eps);
  }

  // Only the rows that sample go through the LM head; a step that samples nothing (a prefill chunk
  // that does not reach its prompt's end) has no logits and launches nothing more.
  const tensor out = logits_.get().rows(0, num_logits);
  if (num_logits == 0) return out;
  const tensor indices = logits_indices_.rows(0, num_logits);
  const tensor selected = selected_.get().rows(0, num_logits);
  ops_.gather_rows(hidden, indices, selected);
  if (!shard_.comm) {
    ops_.linear(selected, weights_.lm_head_or_embed(), tensor{}, out);
    return out;
  }
  // Each rank's vocabulary rows give its columns of the logits; every rank gathers all of them (in rank
  // order, so padded vocabulary rows come last) and cuts off the padding.
  const tensor local = local_logits_.get().rows(0, num_logits);
  const tensor gathered = gathered_logits_.get().rows(0, num_logits);
  ops_.linear(selected, weights_.lm_head_or_embed(), tensor{}, local);
  shard_.comm->all_gather_last_dim(local, gathered);
  ops_.copy_columns(gathered, out);
  return out;
}

fp8_activations model::fp8_input(int64_t num_tokens, int64_t width) const {
  return {tensor(fp8_codes_.get().data, dtype::f8_e4m3, {num_tokens, width}),
          tensor(fp8_scales_.get().data, dtype::f32, {num_tokens})};
}

void model::dry_step(const std::vector<std::pair<int32_t, int32_t>>& seqs) {
  step_input in;
  in.query_start.push_back(0);
  for (const auto& [len, q] : seqs) {  // q new tokens at the end of a context of len
    const int32_t width = (len + limits_.block_size - 1) / limits_.block_size;
    for (int32_t i = len - q; i < len; ++i) {
      in.token_ids.push_back(0);
      in.positions.push_back(i);
      in.slot_mapping.push_back(-1);
    }
    in.query_start.push_back(static_cast<int32_t>(in.token_ids.size()));
    in.seq_lens.push_back(len);
    in.max_blocks_per_seq = std::max(in.max_blocks_per_seq, width);
    in.logits_indices.push_back(static_cast<int32_t>(in.token_ids.size()) - 1);
  }
  in.block_tables.assign(in.seq_lens.size() * static_cast<size_t>(in.max_blocks_per_seq), 0);
  std::vector<int32_t> tokens;
  forward_greedy(in, tokens);
}

// `n` prompt tokens as whole prompts of at most the context length (and at most max_num_seqs of them).
static std::vector<std::pair<int32_t, int32_t>> prefill_of(int64_t n, const model_limits& limits) {
  const int64_t max_len = std::min<int64_t>(limits.max_model_len, limits.max_num_tokens);
  std::vector<std::pair<int32_t, int32_t>> seqs;
  for (int64_t left = n; left > 0 && static_cast<int64_t>(seqs.size()) < limits.max_num_seqs; left -= max_len) {
    const auto len = static_cast<int32_t>(std::min(left, max_len));
    seqs.emplace_back(len, len);
  }
  return seqs;
}

void model::profile_run() {
  dry_step(prefill_of(limits_.max_num_tokens, limits_));
  ops_.synchronize();
}

void model::warm_up() {
  for (int64_t n = std::min<int64_t>(32, limits_.max_num_tokens);; n = std::min(2 * n, limits_.max_num_tokens)) {
    dry_step(prefill_of(n, limits_));
    if (n >= limits_.max_num_tokens) break;
  }
  // Decode steps of each power-of-two batch size, eagerly, so their GEMM plans (the LM head's too) are
  // chosen and timed outside graph capture; the graphs themselves record on first use.
  const bool eager = limits_.enforce_eager;
  limits_.enforce_eager = true;
  for (int64_t b = 1;; b = std::min<int64_t>(2 * b, limits_.max_num_seqs)) {
    dry_step(std::vector<std::pair<int32_t, int32_t>>(static_cast<size_t>(std::min<int64_t>(b, limits_.max_num_tokens)), {1, 1}));
    if (b >= limits_.max_num_seqs || b >= limits_.max_num_tokens) break;
  }
  limits_.enforce_eager = eager;
  // Then the decode graphs, one per capture size, so no step of a request records one.
  for (const int64_t b : graph_sizes_) dry_step(std::vector<std::pair<int32_t, int32_t>>(static_cast<size_t>(b), {1, 1}));
}

void model::forward(const step_input& in, std::vector<float>& logits) {
  // Decode steps replay their graph here too, so a step computes the same logits whichever way it samples.
  const int64_t graph = graph_size_for(in);
  const attention_metadata meta = stage_inputs(in, graph);
  const tensor out = logits_of_step(in, meta, graph);
  logits.resize(static_cast<size_t>(out.numel()));
  if (logits.empty())
    ops_.synchronize();  // nothing to read back; the step is done (and its staged inputs free) on return
  else
    ops_.download(logits, out);
  ops_.end_step();
}

tensor model::logits_of_step(const step_input& in, const attention_metadata& meta, int64_t graph_size) {
  const int64_t num_tokens = static_cast<int64_t>(in.token_ids.size());
  const int64_t num_logits = static_cast<int64_t>(in.logits_indices.size());
  // A decode step replays the graph recorded for its padded batch size: one launch instead of ~300, and
  // no per-op host work. Everything it reads sits at fixed addresses; the graph is recorded with the
  // longest context as max_seq_len, so attention splits the context the same way for any step
  // (kernels/cuda/paged_attention.cu). Sampling (argmax or sample) runs after it, on the real rows.
  if (graph_size > 0) {
    auto it = decode_graphs_.find(graph_size);
    if (it == decode_graphs_.end()) {
      attention_metadata rec = meta;
      rec.max_seq_len = static_cast<int32_t>(limits_.max_model_len);
      if (ops_.begin_capture()) {
        try {
          compute_logits(graph_size, graph_size, rec);
        } catch (...) {
          try {
            ops_.end_capture();
          } catch (...) {
          }
          throw;
        }
        it = decode_graphs_.emplace(graph_size, ops_.end_capture()).first;
      }
    }
    if (it != decode_graphs_.end()) {
      ops_.replay(it->second);
      return logits_.get().rows(0, num_logits);
    }
    // No graphs on this backend: the padded step runs eagerly.
    return compute_logits(graph_size, graph_size, meta).rows(0, num_logits);
  }
  return compute_logits(num_tokens, num_logits, meta);
}

void model::forward_greedy(const step_input& in, std::vector<int32_t>& tokens) {
  const int64_t graph = graph_size_for(in);
  const attention_metadata meta = stage_inputs(in, graph);
  const int64_t num_logits = static_cast<int64_t>(in.logits_indices.size());
  const tensor logits = logits_of_step(in, meta, graph);
  tokens.resize(static_cast<size_t>(num_logits));
  if (num_logits == 0) {
    ops_.synchronize();
  } else {
    const tensor ids = tokens_.get().rows(0, num_logits);
    ops_.argmax(logits, ids);
    ops_.download_raw(tokens.data(), ids);
  }
  ops_.end_step();
}

sampling_batch model::stage_sampling(const sampling_inputs& sampling) {
  const size_t bytes = sampling.packed_bytes();
  if (bytes > sampling_bytes_) {
    // The last step's copy from host_sampling_ finished with its token download, so both may go now.
    sampling_bytes_ = std::max(bytes, 2 * sampling_bytes_);
    sampling_ = ops_.alloc(dtype::i32, {static_cast<int64_t>(sampling_bytes_ / 4)});
    host_sampling_ = ops_.alloc_host(sampling_bytes_);
  }
  sampling.pack(host_sampling_.get());
  ops_.upload_raw(tensor(sampling_.get().data, dtype::i32, {static_cast<int64_t>(bytes / 4)}), host_sampling_.get());
  return sampling.view(sampling_.get().data);
}

void model::forward_sample(const step_input& in, const sampling_inputs& sampling, std::vector<int32_t>& tokens,
                           const std::function<void()>& before_sampling) {
  const int64_t num_logits = static_cast<int64_t>(in.logits_indices.size());
  const int64_t graph = graph_size_for(in);
  const attention_metadata meta = stage_inputs(in, graph);
  const tensor logits = logits_of_step(in, meta, graph);
  if (before_sampling) before_sampling();
  if (static_cast<int64_t>(sampling.rows().size()) != num_logits)
    throw std::invalid_argument("model::forward_sample: " + std::to_string(sampling.rows().size()) +
                                " sampling rows for " + std::to_string(num_logits) + " sampled tokens");
  tokens.resize(static_cast<size_t>(num_logits));
  if (num_logits == 0) {
    ops_.synchronize();
  } else {
    const sampling_batch batch = stage_sampling(sampling);
    const tensor ids = tokens_.get().rows(0, num_logits);
    ops_.sample(logits, batch, ids);
    ops_.download_raw(tokens.data(), ids);
  }
  ops_.end_step();
}

} // namespace troupe
