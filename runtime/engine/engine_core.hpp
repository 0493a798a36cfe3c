#pragma once
// runtime/engine/: the engine's bookkeeping, no GPU in sight: requests and their sampling parameters,
// the block pool, the prefix cache, the KV cache manager, the scheduler and its step plans, stop rules,
// the engine's metrics, and engine_core (this file), which ties them together. May include
// runtime/error.hpp, runtime/tokenizer/ (detokenizing outputs) and runtime/metrics/.
//
// The engine's bookkeeping in one plain object: it validates and queues requests, plans steps through
// the scheduler, and turns sampled tokens into outputs (incremental text, stop rules, finish reasons).
// The scheduler actor owns one and only moves messages in and out of it.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/engine/engine_metrics.hpp"
#include "runtime/engine/kv_cache_manager.hpp"
#include "runtime/engine/sampling_params.hpp"
#include "runtime/engine/scheduler.hpp"
#include "runtime/engine/stop_checker.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

struct engine_request {
  request_id id = 0;
  std::vector<int32_t> prompt_ids;
  sampling_params params;
  int64_t priority = 0;  // as vLLM: any int64 (never truncated)
  std::string cache_salt;
};

// What one step (or an abort) produced for one request.
struct request_output {
  request_id id = 0;
  std::vector<int32_t> new_token_ids;
  std::string text;  // text released by this output (never half a UTF-8 character, never part of a stop string)
  bool finished = false;
  finish_reason reason = finish_reason::none;
  bool aborted = false;
  std::string error;  // set when the request failed
  std::string stop_string;
  std::optional<int32_t> stop_token;
  std::optional<sampled_logprobs> logprobs;  // of new_token_ids, when the request asked for them
  int32_t num_prompt_tokens = 0;
  int32_t num_output_tokens = 0;  // so far
  int32_t num_cached_tokens = 0;  // prompt tokens served by the prefix cache
};

// A snapshot of the engine for metrics and tests.
struct engine_stats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  double kv_usage = 0;
  scheduler_stats sched;
  prefix_cache_stats prefix;
  int64_t num_step_errors = 0;
  // Where the step loop's time goes, summed over steps (the scheduler actor measures them).
  int64_t schedule_ns = 0;  // planning steps (engine_core::schedule)
  int64_t update_ns = 0;    // applying results: stop rules, detokenization, output messages
  int64_t execute_ns = 0;   // inside the shards
  int64_t mask_ns = 0;       // computing structured outputs' bitmasks, on a thread beside the forward pass
  int64_t mask_wait_ns = 0;  // of execute_ns: sampling waiting for those bitmasks after the forward pass
  int64_t step_ns = 0;      // from sending a plan to having applied its results
  // Of those: the steps of one token a sequence (decode steps), how many and their step_ns; the rest carry prompts.
  int64_t num_decode_steps = 0;
  int64_t decode_step_ns = 0;
};

struct engine_config {
  scheduler_config sched;
  kv_cache_config kv;
  int32_t vocab_size = 0;
  std::vector<int32_t> eos_token_ids;
  block_hash_fn block_hash = xxh3_block_hash;  // the prefix cache's; tests inject one that collides
  // Structured outputs: compiles a spec (throwing std::invalid_argument with what is wrong), so a request
  // from any front end (HTTP, native client, router) is checked before it runs. Empty: no grammar engine,
  // and requests with a spec are refused.
  std::function<void(const structured_output&)> compile_structured;
};

class engine_core {
public:
  // tok may be null (token ids only: outputs carry no text).
  engine_core(const engine_config& config, const tokenizer* tok, uint64_t seed = std::random_device{}());

  // Validates and queues a request. Returns "" or a message saying what to change (nothing queued).
  std::string add(engine_request r);

  // Ends a request wherever it is; returns its final output, or nullopt for an unknown id.
  std::optional<request_output> abort(request_id id);

  // Plans the next step; an empty plan when nothing can run.
  step_plan schedule();

  // Reports steps and finished requests to `m` from now on (null: no metrics). `m` must outlive this.
  void set_metrics(engine_metrics* m) { metrics_ = m; }

  // Applies a step's sampled tokens: one output per sampled token, finished requests released.
  std::vector<request_output> update(const step_plan& plan, const step_result& result);

  // A step failed: fails every request it carried, with this error.
  std::vector<request_output> fail(const step_plan& plan, const std::string& error);

  // Ends every request, waiting or running, with this error (the server is going away): their final
  // outputs (aborted, with the error), their blocks released. A step in flight may still carry them; its results for them are
  // dropped as for aborted requests.
  std::vector<request_output> fail_all(const std::string& error);

  bool has_work() const { return scheduler_.has_work(); }
  int32_t num_running() const { return scheduler_.num_running(); }
  int32_t num_waiting() const { return scheduler_.num_waiting(); }
  const scheduler_stats& stats() const { return scheduler_.stats(); }
  engine_stats snapshot() const {
    return {num_running(), num_waiting(), kv_.num_free_blocks(), config_.kv.num_blocks, kv_.usage(), stats(), kv_.stats(), 0};
  }
  const kv_cache_manager& kv() const { return kv_; }
  const engine_config& config() const { return config_; }

private:
  struct output_state {
    stop_checker stops;
    std::unique_ptr<incremental_detokenizer> detok;
    std::vector<int32_t> prompt_ids;  // the detokenizer's view
    std::string text;
    size_t released = 0;
    int32_t num_prompt_tokens = 0;
    std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::time_point> first_scheduled, first_token;
    std::chrono::steady_clock::time_point last_token;
  };
  request_output finish(request_id id, output_state& st, request_status status);
  // Ends each of these requests that is still open with `error`.
  std::vector<request_output> fail_each(const std::vector<request_id>& ids, const std::string& error);
  void report_finished(const output_state& st, int32_t num_generated, request_status status);

  engine_config config_;
  const tokenizer* tokenizer_;
  kv_cache_manager kv_;
  scheduler scheduler_;
  std::unordered_map<request_id, std::unique_ptr<output_state>> states_;
  std::mt19937_64 seeds_;
  uint64_t arrivals_ = 0;
  engine_metrics* metrics_ = nullptr;
  // Running totals at the last step report, to report per-step deltas.
  scheduler_stats reported_sched_;
  prefix_cache_stats reported_prefix_;
  std::vector<double> ttft_, itl_;
};

} // namespace troupe
