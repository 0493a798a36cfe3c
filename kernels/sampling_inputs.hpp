#pragma once
// Builds a step's sampling_batch on the host from its sample_requests and packs it into one block
// (rows | masks | biases | penalties | bitmasks), so a model uploads it in one copy.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu/sampler.hpp"
#include "kernels/sampling_batch.hpp"

namespace troupe {

class sampling_inputs {
public:
  // Rebuilds the lists from one step's requests (one row each, in order). Ids outside [0, vocab) are
  // dropped, as the CPU sampler skips them. Throws std::invalid_argument for a request without params.
  void build(std::span<const sample_request> reqs, int32_t vocab);

  const std::vector<sampling_row>& rows() const { return rows_; }
  const std::vector<int32_t>& masks() const { return masks_; }
  const std::vector<logit_bias_entry>& biases() const { return biases_; }
  const std::vector<penalty_entry>& penalties() const { return penalties_; }
  // [K, bitmask_words(vocab)]: the effective bitmask (effective_bitmask) of each constrained row.
  const std::vector<uint32_t>& bitmasks() const { return bitmasks_; }

  // Bytes of the packed block: each list starts at a multiple of 8 bytes.
  size_t packed_bytes() const;
  // Writes the packed block to dst (packed_bytes() of it).
  void pack(void* dst) const;
  // The lists inside a packed block at `base` (a host or device address).
  sampling_batch view(void* base) const;

private:
  std::vector<sampling_row> rows_;
  std::vector<int32_t> masks_;
  std::vector<logit_bias_entry> biases_;
  std::vector<penalty_entry> penalties_;
  std::vector<uint32_t> bitmasks_;
  int32_t bitmask_words_ = 0;
  std::vector<int32_t> slot_;  // [vocab]: a token's entry in penalties_ while its row is built, else -1
};

} // namespace troupe
