#pragma once
// Steps built by hand for the whole-model checks against transformers (tests/reference_model_test.cpp on
// the CPU, tools/gpu_check_models.cpp on the GPU) and for split models (tests/support/split_model.hpp), so
// that all run the same sequences through the same block layout.

#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "kernels/model.hpp"
#include "runtime/engine/step_input.hpp"

namespace troupe::testing {

// ‖a − b‖ / ‖b‖, in double: how the whole-model checks compare logits.
inline double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

// The model limits both checks use: contexts of up to reference_max_len tokens in blocks of
// reference_block_size.
constexpr int32_t reference_block_size = 16;
constexpr int64_t reference_max_len = 256;

// Model limits that hold make_step's layout for up to max_num_seqs sequences of reference_max_len tokens.
inline model_limits reference_limits(int64_t max_num_seqs = 8) {
  model_limits limits;
  limits.max_num_tokens = reference_max_len * 4;
  limits.max_num_seqs = max_num_seqs;
  limits.max_model_len = reference_max_len;
  limits.block_size = reference_block_size;
  limits.num_blocks = max_num_seqs * reference_max_len / reference_block_size;
  return limits;
}

// Sequences of the step, each given as (tokens to compute now, tokens already in the cache); the step's
// sequence s is sequence first_seq + s, which owns the blocks [(first_seq + s) * blocks_per_seq, +blocks_per_seq),
// in reverse order so that block tables are really used. (first_seq lets a step prefill some of the
// sequences a later step decodes.)
inline step_input make_step(const std::vector<std::pair<std::vector<int32_t>, int32_t>>& seqs, size_t first_seq = 0) {
  const int32_t block_size = reference_block_size;
  const int32_t blocks_per_seq = reference_max_len / block_size;
  step_input in;
  in.max_blocks_per_seq = blocks_per_seq;
  in.query_start.push_back(0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& [tokens, cached] = seqs[s];
    std::vector<int32_t> table(blocks_per_seq);
    for (int32_t b = 0; b < blocks_per_seq; ++b)
      table[b] = static_cast<int32_t>((first_seq + s + 1) * blocks_per_seq - 1 - b);
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t pos = cached + static_cast<int32_t>(i);
      in.token_ids.push_back(tokens[i]);
      in.positions.push_back(pos);
      in.slot_mapping.push_back(int64_t(table[pos / block_size]) * block_size + pos % block_size);
    }
    in.query_start.push_back(static_cast<int32_t>(in.token_ids.size()));
    in.seq_lens.push_back(cached + static_cast<int32_t>(tokens.size()));
    in.block_tables.insert(in.block_tables.end(), table.begin(), table.end());
    in.logits_indices.push_back(static_cast<int32_t>(in.token_ids.size()) - 1);
  }
  return in;
}

} // namespace troupe::testing
