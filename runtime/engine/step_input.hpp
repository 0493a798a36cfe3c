#pragma once
// One engine step as the model consumes it, described on the host: flat token rows, their
// positions and KV slots, and each sequence's extent and block table. The model uploads it.

#include <cstdint>
#include <vector>

namespace troupe {

struct step_input {
  std::vector<int32_t> token_ids;       // [T]
  std::vector<int32_t> positions;       // [T]
  std::vector<int64_t> slot_mapping;    // [T]  block * block_size + offset
  std::vector<int32_t> query_start;     // [S + 1]
  std::vector<int32_t> seq_lens;        // [S]
  std::vector<int32_t> block_tables;    // [S, max_blocks_per_seq], padded with 0
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> logits_indices;  // rows of T whose next-token logits are wanted

  void clear() {
    token_ids.clear();
    positions.clear();
    slot_mapping.clear();
    query_start.clear();
    seq_lens.clear();
    block_tables.clear();
    max_blocks_per_seq = 0;
    logits_indices.clear();
  }
};

} // namespace troupe
