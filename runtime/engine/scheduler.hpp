#pragma once
// The scheduling policy, in the manner of vLLM's V1 engine: every step has a token budget
// (--max-num-batched-tokens) and a cap on running sequences (--max-num-seqs). Running sequences are
// served first (a decode token each, or their next prefill chunk), then waiting ones (FCFS, or by
// priority) with whatever budget is left; a prompt longer than the budget is prefilled in chunks beside
// the decodes. When the KV cache runs out of blocks, the newest lowest-priority running sequence is
// preempted: its blocks are freed and it is recomputed from the start later.
//
// Short and long pools (--long-request-threshold): a request whose max_tokens exceeds the threshold is
// "long". Waiting short requests are admitted before waiting long ones, and long requests may hold at
// most long_max_fraction of the --max-num-seqs seats, so a burst of long generations always leaves
// seats, and the first claim on each step's token budget, to short chats: their time to first token
// does not grow with the long backlog. Long requests still use every seat they are allowed whenever
// there is room. With --long-prefill-token-threshold a single prompt's prefill chunk is capped too, so a
// very long prompt cannot take a whole step's budget from the others (vLLM's flag of that name).
//
// Pure bookkeeping: schedule() returns a step_plan, update() takes the sampled tokens back. Deciding
// when a sequence stops is the caller's (engine_core), which then calls finish().

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/engine/kv_cache_manager.hpp"
#include "runtime/engine/request.hpp"
#include "runtime/engine/step_plan.hpp"

namespace troupe {

enum class scheduling_policy { fcfs, priority };

struct scheduler_config {
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_model_len = 2048;
  scheduling_policy policy = scheduling_policy::fcfs;
  int32_t long_request_threshold = 0;      // 0: one pool; else max_tokens above this is a long request
  double long_max_fraction = 0.75;         // of max_num_seqs, the seats long requests may hold
  int32_t long_prefill_token_threshold = 0;  // 0: none; else the largest prefill chunk of one request
};

struct scheduler_stats {
  int64_t num_preemptions = 0;
  int64_t num_computed_prompt_tokens = 0;  // prefill tokens actually computed (prefix hits excluded)
  int64_t num_cached_prompt_tokens = 0;    // prefill tokens served by the prefix cache
  int64_t num_steps = 0;
};

class scheduler {
public:
  scheduler(const scheduler_config& config, kv_cache_manager& kv);

  // Queues a request (status waiting). Needs a fresh id and 0 < tokens < max_model_len; throws
  // std::invalid_argument otherwise (the engine validates user input before this).
  void add(request r);

  // Plans the next step. Empty plan (no seqs) when nothing can run.
  step_plan schedule();

  // Appends each sampled token to its request and registers newly full blocks in the prefix cache.
  // Tokens of requests that finished or were aborted since the plan are dropped. Returns the
  // (id, token) pairs that were appended, in plan order.
  std::vector<std::pair<request_id, int32_t>> update(const step_plan& plan, const step_result& result);

  // Ends a request (stopped, length, aborted or error): frees its blocks at once and tells the shards in
  // the next plan. Returns false for an unknown or already finished request.
  bool finish(request_id id, request_status status);

  const request* find(request_id id) const;
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  const scheduler_stats& stats() const { return stats_; }
  const scheduler_config& config() const { return config_; }

private:
  using waiting_key = std::tuple<int32_t, int64_t, uint64_t, request_id>;  // (pool, priority, arrival, id)
  bool is_long(const request& r) const;
  // The most tokens of `remaining` one request may compute in a step (the prefill chunk cap).
  int32_t chunk_limit(int32_t remaining) const;
  waiting_key key_of(const request& r) const;
  // Index into running_ of the sequence to preempt: the last one (FCFS), or the lowest-priority,
  // latest-arriving one (priority).
  size_t pick_victim() const;
  void preempt(size_t running_index);

  scheduler_config config_;
  kv_cache_manager& kv_;
  std::unordered_map<request_id, request> requests_;
  std::set<waiting_key> waiting_;
  std::vector<request_id> running_;  // in the order they were admitted
  int32_t num_running_long_ = 0;
  std::vector<request_id> released_;  // to tell the shards in the next plan
  uint64_t step_ = 0;
  scheduler_stats stats_;
};

} // namespace troupe
