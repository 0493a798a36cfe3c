#include "runtime/model/sharding_plan.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "runtime/error.hpp"
#include "runtime/model/weight_names.hpp"

namespace troupe {
namespace {

constexpr int64_t vocab_padding = 64;  // vLLM's DEFAULT_VOCAB_PADDING_SIZE

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Empty when `n` splits every 4-bit linear layer of the config as vLLM's awq.py and gptq.py create_weights
// require; else the reason, naming the layer: a row-parallel layer (o_proj, down_proj) needs each rank's inputs
// in whole groups (input_size_per_partition % group_size, unless the layer has one group), a column-parallel one
// (q/k/v, gate/up) each rank's outputs in whole packed words (output_size_per_partition % pack_factor, 8 at 4
// bits). rtn packs nothing and rounds each rank's rows from the covering groups, so any split works.
std::string why_not_quantized(const model_config& c, const quantization_config& q, int64_t n) {
  // FP8 scales are per output channel or per tensor: any split keeps whole rows and their scales.
  if (q.method == quant_method::rtn || q.fp8() || n == 1) return {};
  const std::string tp = "--tensor-parallel-size " + std::to_string(n);
  const std::string method(name(q.method));
  const int64_t kv_rows = (n <= c.num_kv_heads ? c.num_kv_heads / n : 1) * c.head_dim;
  for (const weight_spec& spec : hf_weight_specs(c)) {
    if (!q.quantizes(spec.name)) continue;
    const std::string_view w = spec.name;
    const std::string layer = spec.name.substr(0, spec.name.size() - 7);  // without ".weight"
    const int64_t out = spec.shape[0], in = spec.shape[1];
    if (ends_with(w, "o_proj.weight") || ends_with(w, "down_proj.weight")) {
      const int64_t group = q.group_for(in);
      if (group != in && (in / n) % group != 0)
        return tp + " gives each rank " + std::to_string(in / n) + " of the " + std::to_string(in) + " inputs of " +
               layer + ", not a whole number of its " + method + " groups of " + std::to_string(group);
      if (q.method == quant_method::gptq && (in / n) % 8 != 0)  // qweight [in / 8, out]: 8 inputs a word
        return tp + " gives each rank " + std::to_string(in / n) + " of the " + std::to_string(in) + " inputs of " +
               layer + ", not a whole number of the 8 inputs one gptq word packs";
      continue;
    }
    const int64_t rows = ends_with(w, "k_proj.weight") || ends_with(w, "v_proj.weight") ? kv_rows : out / n;
    if (rows % 8 != 0)
      return tp + " gives each rank " + std::to_string(rows) + " of the " + std::to_string(out) + " outputs of " +
             layer + ", not a whole number of the 8 outputs one " + method + " word packs";
  }
  return {};
}

// Empty when `n` splits the config; else the reason, naming the dimension.
std::string why_not(const model_config& c, int64_t n) {
  const std::string tp = "--tensor-parallel-size " + std::to_string(n);
  if (c.num_heads % n != 0)
    return tp + " does not divide the " + std::to_string(c.num_heads) + " attention heads of this model";
  if (n <= c.num_kv_heads ? c.num_kv_heads % n != 0 : n % c.num_kv_heads != 0)
    return tp + " neither divides nor is a multiple of the " + std::to_string(c.num_kv_heads) +
           " key-value heads of this model";
  if (c.intermediate_size % n != 0)
    return tp + " does not divide the intermediate size " + std::to_string(c.intermediate_size) +
           " of this model";
  if (c.quantization) return why_not_quantized(c, *c.quantization, n);
  return {};
}

std::string or_list(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += i + 1 == v.size() ? " or " : ", ";
    s += std::to_string(v[i]);
  }
  return s;
}

} // namespace

std::vector<int64_t> valid_tensor_parallel_sizes(const model_config& config) {
  std::vector<int64_t> sizes;
  for (int64_t n = 1; n <= config.num_heads; ++n)
    if (why_not(config, n).empty()) sizes.push_back(n);
  return sizes;
}

sharding_plan sharding_plan::make(const model_config& c, int64_t tp_size, int64_t rank) {
  if (tp_size < 1) throw user_error("--tensor-parallel-size must be at least 1, not " + std::to_string(tp_size));
  if (rank < 0 || rank >= tp_size)
    throw user_error("tensor-parallel rank " + std::to_string(rank) + " is outside [0, " +
                     std::to_string(tp_size) + ")");
  if (const std::string reason = why_not(c, tp_size); !reason.empty())
    throw user_error(reason + "; " + or_list(valid_tensor_parallel_sizes(c)) + " would");

  sharding_plan p;
  p.tp_size = tp_size;
  p.rank = rank;
  p.num_local_heads = c.num_heads / tp_size;
  if (tp_size <= c.num_kv_heads) {
    p.num_local_kv_heads = c.num_kv_heads / tp_size;
    p.first_kv_head = rank * p.num_local_kv_heads;
  } else {
    p.num_local_kv_heads = 1;
    p.num_kv_head_replicas = tp_size / c.num_kv_heads;
    p.first_kv_head = rank / p.num_kv_head_replicas;
  }
  p.local_intermediate = c.intermediate_size / tp_size;
  p.padded_vocab_size = round_up(c.vocab_size, vocab_padding);
  if (p.padded_vocab_size % tp_size != 0)
    p.padded_vocab_size = round_up(c.vocab_size, std::lcm(vocab_padding, tp_size));
  const int64_t local_vocab = p.padded_vocab_size / tp_size;
  p.vocab_begin = rank * local_vocab;
  p.vocab_end = p.vocab_begin + local_vocab;
  p.local_kv_size = p.num_local_kv_heads * c.head_dim;

  const int64_t q_begin = rank * p.num_local_heads * c.head_dim;
  const int64_t q_length = p.num_local_heads * c.head_dim;
  const int64_t kv_begin = p.first_kv_head * c.head_dim;
  const bool kv_split = tp_size > 1 && p.num_kv_head_replicas == 1;
  const int64_t vocab_read_begin = std::min(p.vocab_begin, c.vocab_size);
  const int64_t vocab_read_length = std::min(p.vocab_end, c.vocab_size) - vocab_read_begin;

  for (const weight_spec& spec : hf_weight_specs(c)) {
    weight_slice s{spec.name, spec.shape, 0, 0, spec.shape[0], spec.shape, false, false};
    const auto cut = [&](int dim, int64_t begin, int64_t length, bool split) {
      s.dim = dim;
      s.begin = begin;
      s.length = length;
      s.local_shape[static_cast<size_t>(dim)] = length;
      s.split = split && tp_size > 1;
    };
    const std::string_view n = spec.name;
    if (n == "model.embed_tokens.weight" || n == "lm_head.weight") {
      cut(0, vocab_read_begin, vocab_read_length, true);
      s.local_shape[0] = local_vocab;
    } else if (ends_with(n, "q_proj.weight") || ends_with(n, "q_proj.bias")) {
      cut(0, q_begin, q_length, true);
    } else if (ends_with(n, "k_proj.weight") || ends_with(n, "k_proj.bias") || ends_with(n, "v_proj.weight") ||
               ends_with(n, "v_proj.bias")) {
      cut(0, kv_begin, p.local_kv_size, kv_split);
    } else if (ends_with(n, "gate_proj.weight") || ends_with(n, "up_proj.weight")) {
      cut(0, rank * p.local_intermediate, p.local_intermediate, true);
    } else if (ends_with(n, "o_proj.weight")) {
      cut(1, q_begin, q_length, true);
    } else if (ends_with(n, "down_proj.weight")) {
      cut(1, rank * p.local_intermediate, p.local_intermediate, true);
    } else if (ends_with(n, "o_proj.bias")) {
      s.add_on_rank_0_only = tp_size > 1;
    }
    p.slices.push_back(std::move(s));
  }

  if (tp_size > 1) {
    using k = collective_point::kind;
    // The embedding rows outside a rank's vocabulary range give zeros; the all-reduce sums the one real row.
    p.collectives.push_back({"model.embed_tokens", k::all_reduce});
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string prefix = "model.layers." + std::to_string(l) + ".";
      p.collectives.push_back({prefix + "self_attn.o_proj", k::all_reduce});
      p.collectives.push_back({prefix + "mlp.down_proj", k::all_reduce});
    }
    // Each rank computes the logits of its vocabulary rows (with tied embeddings, of its embedding rows);
    // where they are joined is the forward's choice.
    p.collectives.push_back({"lm_head", k::all_gather});
  }
  return p;
}

model_config local_config(const model_config& config, const sharding_plan& plan) {
  model_config local = config;
  local.num_heads = plan.num_local_heads;
  local.num_kv_heads = plan.num_local_kv_heads;
  local.intermediate_size = plan.local_intermediate;
  local.vocab_size = plan.vocab_end - plan.vocab_begin;
  return local;
}

const weight_slice& sharding_plan::slice(std::string_view name) const {
  for (const weight_slice& s : slices)
    if (s.name == name) return s;
  throw std::out_of_range("no tensor named " + std::string(name) + " in this model");
}

bool sharding_plan::all_reduce_after(std::string_view module) const {
  for (const collective_point& c : collectives)
    if (c.after == module && c.op == collective_point::kind::all_reduce) return true;
  return false;
}

} // namespace troupe
