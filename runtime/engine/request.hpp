#pragma once
// A request as the scheduler sees it: its tokens, how far its KV is computed, and where it is in its
// life (waiting → running ⇄ preempted → finished).

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/request_id.hpp"
#include "runtime/engine/sampling_params.hpp"

namespace troupe {

enum class request_status : uint8_t {
  waiting,
  running,
  preempted,  // its blocks were taken back; it waits to be recomputed from the start
  finished_stopped,
  finished_length,
  finished_aborted,
  finished_error,
};

inline bool is_finished(request_status s) { return s >= request_status::finished_stopped; }

struct request {
  request_id id = 0;
  std::vector<int32_t> tokens;  // prompt, then outputs
  int32_t num_prompt_tokens = 0;
  sampling_params params;
  uint64_t seed = 0;            // the effective sampling seed
  int64_t priority = 0;         // lower runs first (vLLM's convention); vLLM bounds it to int64
  uint64_t arrival = 0;         // order of arrival, for FCFS and ties
  std::string cache_salt;

  request_status status = request_status::waiting;
  int32_t num_computed_tokens = 0;  // tokens whose KV is written (or scheduled to be, this step)
  int32_t num_cached_tokens = -1;   // prefix-cache hit at its first scheduling; -1 before
  int32_t num_preemptions = 0;
  bool on_shard = false;            // the shards hold its state (block table, history)

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
};

} // namespace troupe
