#pragma once
// What the scheduler hands the shards each engine step, and what comes back. Plain data: it crosses
// actor boundaries as is, and the network as msgpack.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine/request_id.hpp"
#include "runtime/engine/sampling_params.hpp"

namespace troupe {

// One sequence's share of a step.
struct scheduled_seq {
  request_id id = 0;
  // NOTE: when `is_new`, the shard drops whatever it held for `id` (a first step, or a resume after
  // preemption) and takes `block_ids` as the whole block table and `all_token_ids` as the history;
  // otherwise `block_ids` are appended to the table it holds.
  bool is_new = false;
  int32_t start_position = 0;          // tokens of this sequence already in the KV cache
  std::vector<int32_t> token_ids;      // the tokens computed this step, at start_position onwards
  std::vector<int32_t> block_ids;      // new blocks (or the whole table when is_new)
  bool sample = false;                 // the step reaches the sequence's end: sample its next token
  // Only when is_new: what sampling needs.
  std::vector<int32_t> all_token_ids;  // prompt and outputs so far
  int32_t num_prompt_tokens = 0;
  sampling_params params;
  uint64_t seed = 0;
  bool operator==(const scheduled_seq&) const = default;
};

struct step_plan {
  uint64_t step = 0;
  std::vector<scheduled_seq> seqs;
  std::vector<request_id> released;  // finished or preempted: the shards forget them before running this plan
  bool operator==(const step_plan&) const = default;
  int32_t num_tokens() const {
    int32_t n = 0;
    for (const auto& s : seqs) n += static_cast<int32_t>(s.token_ids.size());
    return n;
  }
  // A decode step: one token for each sequence, no prompt chunk (a one-token prompt counts as one).
  bool is_decode() const {
    return !seqs.empty() && std::all_of(seqs.begin(), seqs.end(), [](const scheduled_seq& s) { return s.token_ids.size() == 1; });
  }
};

// A sampled token's log-probability and the top alternatives (most likely first), when asked for.
struct sampled_logprobs {
  float logprob = 0;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
};

// The sampled token of each sequence that sampled, in the plan's order of those sequences.
struct step_result {
  uint64_t step = 0;
  std::vector<request_id> ids;
  std::vector<int32_t> tokens;
  // Parallel to tokens when any sequence asked for logprobs (others get an empty entry); else empty.
  std::vector<std::optional<sampled_logprobs>> logprobs;
  std::string error;  // non-empty when the step failed; the scheduler fails the step's requests
  int64_t execute_ns = 0;  // time the shard spent on the step (input preparation, forward, sampling)
  int64_t collective_ns = 0;  // of which in tensor-parallel collectives (shard 0; 0 on one shard)
  // Structured outputs: time computing the step's bitmasks (beside the forward pass, on another thread),
  // and of it the time sampling waited for them after the forward pass.
  int64_t mask_ns = 0;
  int64_t mask_wait_ns = 0;
};

} // namespace troupe
