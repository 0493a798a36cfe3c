#pragma once
// How one model is split over N tensor-parallel ranks (Megatron-style, as vLLM does it): for one rank,
// which part of every checkpoint tensor it reads, the counts of its local shapes, and where the forward
// needs a collective. Pure arithmetic over model_config; a loader and a shard consume it later.
//
// The split, per decoder layer:
//   q/k/v (and their biases), gate/up   by output features (dim 0 of the [out, in] weight)
//   o_proj, down_proj                   by input features (dim 1), followed by an all-reduce; their bias
//                                       (o_proj's, Llama with attention_bias) is whole on every rank and
//                                       added by rank 0 alone, before the all-reduce (vLLM's RowParallelLinear)
//   norms                               whole on every rank
// KV heads are split when N <= num_kv_heads, else replicated: N / num_kv_heads ranks share one KV head, and
// rank r holds KV head r / (N / num_kv_heads) (vLLM's QKVParallelLinear).
// Embedding and LM head are split by vocabulary rows. The vocabulary is padded as vLLM's
// VocabParallelEmbedding pads it: up to a multiple of 64; where N does not divide that (vLLM refuses), further
// up to a multiple of lcm(64, N), so any N accepted for the heads also works for the vocabulary. Padding rows
// are no checkpoint's rows: a rank reads `length` rows and zero-fills the rest of its local rows.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/model/model_config.hpp"

namespace troupe {

// The part of one checkpoint tensor a rank reads: rows or columns [begin, begin + length) of dimension `dim`.
// A whole tensor is dim 0 with begin 0 and the full length.
struct weight_slice {
  std::string name;                  // checkpoint name, as hf_weight_specs gives it
  std::vector<int64_t> shape;        // the checkpoint tensor's full shape
  int dim = 0;                       // the dimension the slice cuts
  int64_t begin = 0;                 // first index of `dim` read
  int64_t length = 0;                // indices of `dim` read from the checkpoint
  std::vector<int64_t> local_shape;  // what the rank allocates; exceeds `length` on `dim` only by vocab padding
  bool split = false;                // false: every rank holds the same values (norms, replicated KV, row biases)
  bool add_on_rank_0_only = false;   // a row-parallel layer's bias: added once before the all-reduce
};

// A collective the forward runs right after a module's output (module name without ".weight").
struct collective_point {
  enum class kind { all_reduce, all_gather };
  std::string after;  // e.g. "model.layers.0.self_attn.o_proj", "lm_head"
  kind op = kind::all_reduce;
};

struct sharding_plan {
  int64_t tp_size = 1;
  int64_t rank = 0;

  int64_t num_local_heads = 0;       // q heads [rank * num_local_heads, +num_local_heads)
  int64_t num_local_kv_heads = 0;    // 1 when replicated
  int64_t first_kv_head = 0;         // the rank's first KV head in the checkpoint
  int64_t num_kv_head_replicas = 1;  // ranks holding the same KV head (1 when split)
  int64_t local_intermediate = 0;    // gate/up rows, down_proj columns
  int64_t padded_vocab_size = 0;     // the vocabulary padded as described above
  int64_t vocab_begin = 0;           // the rank's padded vocabulary rows [vocab_begin, vocab_end)
  int64_t vocab_end = 0;
  int64_t local_kv_size = 0;         // KV cache width per token per layer: num_local_kv_heads * head_dim

  std::vector<weight_slice> slices;          // one per hf_weight_specs entry, in the same order
  std::vector<collective_point> collectives;  // in forward order; empty when tp_size is 1

  // The plan of `rank` in [0, tp_size). Throws user_error when the model's shape cannot be split
  // tp_size ways, naming the dimension and the sizes that would work.
  static sharding_plan make(const model_config& config, int64_t tp_size, int64_t rank);

  // The slice of a checkpoint tensor; throws std::out_of_range for a name the model does not have.
  const weight_slice& slice(std::string_view name) const;
  // Whether the forward all-reduces right after `module` (e.g. "model.layers.3.mlp.down_proj").
  bool all_reduce_after(std::string_view module) const;
};

// The config of one rank's part of the model: its query and KV heads, its intermediate columns and its
// padded vocabulary rows (vocab_size = vocab_end - vocab_begin); every other field as in `config`. A model
// built with it holds exactly the rank's slices.
model_config local_config(const model_config& config, const sharding_plan& plan);

// The tensor-parallel sizes in [1, num_heads] that split this model; what an error suggests. With
// config.quantization (awq, gptq), also each 4-bit linear layer as vLLM requires: a row-parallel layer's inputs
// per rank in whole groups, a column-parallel layer's outputs per rank in whole words of 8.
std::vector<int64_t> valid_tensor_parallel_sizes(const model_config& config);

} // namespace troupe
