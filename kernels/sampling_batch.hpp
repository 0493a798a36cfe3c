#pragma once
// One step's sampling inputs as a backend reads them: one record per logits row, three flat lists
// (min_tokens masks, logit_bias entries, penalty counts) that each row indexes by [begin, end), and the
// allowed-token bitmasks of constrained rows (structured outputs), which a row indexes by bitmask_row.
// sampling_inputs (kernels/sampling_inputs.hpp) builds them on the host from sample_requests; the
// backend's `sample` op (kernels/ops.hpp) applies them as sample_cpu does (kernels/cpu/sampler.hpp).
//
// NOTE: records are plain structs with 4-byte fields (and two 8-byte ones at the front), so the packed
// block is the same bytes on the host and on the device.

#include <cstdint>

#include "kernels/tensor.hpp"

namespace troupe {

struct sampling_row {
  uint64_t seed = 0;          // effective seed of the request
  uint64_t draw_index = 0;    // output tokens so far: the uniform this draw takes (sampler.hpp)
  float temperature = 1.0f;   // max(temperature, 0.01); greedy rows ignore it
  float top_p = 1.0f;         // 1: off
  float min_p = 0.0f;         // 0: off
  int32_t top_k = 0;          // 0: off (also when the request's top_k is -1 or >= vocab)
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int32_t greedy = 0;         // 1: argmax after min_tokens, logit_bias and penalties
  int32_t mask_begin = 0, mask_end = 0;        // in sampling_batch::masks
  int32_t bias_begin = 0, bias_end = 0;        // in sampling_batch::biases
  int32_t penalty_begin = 0, penalty_end = 0;  // in sampling_batch::penalties
  int32_t bitmask_row = -1;   // row of sampling_batch::bitmasks with the tokens allowed; -1: all allowed
  int32_t unused = 0;         // keeps the record a multiple of 8 bytes
};
static_assert(sizeof(sampling_row) == 80 && sizeof(sampling_row) % 8 == 0);

struct logit_bias_entry {
  int32_t id = 0;
  float bias = 0.0f;  // already clamped to [-100, 100]
};

// A token the request's prompt or output holds. Only rows with a penalty have entries; ids are unique
// within a row.
struct penalty_entry {
  int32_t id = 0;
  int32_t output_count = 0;  // times in the output (frequency and presence penalties)
  int32_t in_prompt = 0;     // 1: in the prompt (the repetition penalty covers prompt and output)
};

// Views of a packed block; every id is inside [0, vocab).
// NOTE: logit_bias ids are unique within a row (they come from a JSON object), so a backend may apply
// a row's entries in any order.
struct sampling_batch {
  tensor rows;       // [R, 20] i32: one sampling_row per logits row
  tensor masks;      // [M] i32: token ids set to -inf (EOS and stop ids while under min_tokens)
  tensor biases;     // [B, 2] i32: logit_bias_entry
  tensor penalties;  // [P, 3] i32: penalty_entry
  // [K, ceil(V / 32)] i32 (uint32 bits): bit (id % 32) of word (id / 32) set <=> id may be sampled.
  // NOTE: a bitmask always allows at least one id inside [0, V) (sampling_inputs falls back to the end ids).
  tensor bitmasks;
  int64_t num_rows() const { return rows.empty() ? 0 : rows.dim(0); }
};

} // namespace troupe
