#pragma once
// troupe's metric set: vLLM V1's Prometheus metrics (PrometheusStatLogger in vllm/v1/metrics/loggers.py,
// names, help texts and buckets as of vLLM 0.11/0.12) under the `troupe:` prefix (or `vllm:`, with
// serve --metrics-prefix vllm), plus troupe's own troupe:request_rejected_total{reason} and
// troupe:iteration_num_seqs. Every series carries model_name (vLLM's other label, engine, is left out:
// troupe runs one engine per model).
//
// The engine reports plain numbers and steady_clock times (no engine types), once per step and once
// per finished request; the gateway reports rejections. render() is the /metrics body; snapshot() is
// what a live dashboard shows: rates and latency quantiles over a sliding window, and the cumulative
// histograms its history samples (runtime/engine/dashboard_history) take differences of.
//
// Thread-safe: counters and histograms are atomics; the sliding window takes a short lock once per
// on_step / on_request_finished / on_first_token. on_rejected never locks.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/metrics/metrics.hpp"
#include "runtime/metrics/sliding_window.hpp"

namespace troupe {

// How a request ended: the finished_reason label of troupe:request_success_total (vLLM's
// FinishReason, whose "repetition" troupe never produces).
enum class request_outcome : uint8_t { stop, length, abort, error };
inline constexpr size_t num_request_outcomes = 4;
// "stop", "length", "abort", "error".
std::string_view to_string(request_outcome outcome);

// Why the gateway turned a request away or cut it off: the reason label of
// troupe:request_rejected_total.
enum class reject_reason : uint8_t {
  queue_full,     // the waiting queue is at its cap
  rate_limited,   // the tenant's token bucket is empty
  too_long,       // prompt + max_tokens exceed the model length or the max_tokens cap
  invalid,        // the body failed validation
  unauthorized,   // missing or unknown API key
  draining,       // the server is shutting down
  timeout,        // the request waited or ran past its deadline
  slow_consumer,  // the client read its stream slower than its buffer allows
};
inline constexpr size_t num_reject_reasons = 8;
// The label value: "queue_full", "rate_limited", ... as the enumerators are spelled.
std::string_view to_string(reject_reason reason);

// The 1-2-5 series 1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's build_1_2_5_buckets): the buckets of
// the per-request token count histograms. Empty for max_value < 1.
std::vector<double> buckets_1_2_5(int64_t max_value);

// The prefix of every family's name: troupe's own, or vLLM's so that dashboards and alerts written for
// vLLM read troupe unchanged (serve --metrics-prefix vllm).
inline constexpr std::string_view default_metrics_prefix = "troupe";

// Checks a --metrics-prefix: a Prometheus name part ([a-zA-Z_][a-zA-Z0-9_]*). Throws std::invalid_argument
// with a message saying what is allowed.
void check_metrics_prefix(std::string_view prefix);

struct engine_metrics_config {
  std::string model_name;        // the served model name: the model_name label of every series
  int64_t max_model_len = 4096;  // the top of the request_prompt_tokens / request_generation_tokens buckets (>= 1)
  std::chrono::seconds window{10};               // what snapshot() rates and quantiles cover (>= 1 s, whole seconds)
  std::function<std::chrono::steady_clock::time_point()> clock{};  // empty: steady_clock::now (tests inject one)
  int32_t tensor_parallel_size = 1;  // troupe:tensor_parallel_size; above 1, collective times are kept too
  // Families are named PREFIX:name. Under "vllm" the KV gauge is also exported as vLLM's deprecated
  // vllm:gpu_cache_usage_perc, which vLLM's example Grafana dashboard plots.
  std::string prefix = std::string(default_metrics_prefix);
};

// What one engine step did, and the scheduler's state after it.
struct step_report {
  int32_t num_running = 0;              // requests running after the step
  int32_t num_waiting = 0;              // requests queued (the queue length)
  double kv_cache_usage = 0;            // fraction of KV blocks in use, 0..1
  int32_t num_seqs = 0;                 // sequences in the step's batch
  // Prompt tokens the step computed (prefill chunks). NOTE: vLLM instead adds a request's whole prompt,
  // prefix cache hits included, when its first token comes; troupe counts work done, as it happens.
  int64_t num_prompt_tokens = 0;
  int64_t num_generation_tokens = 0;    // tokens the step sampled
  int64_t num_preemptions = 0;          // requests preempted while planning it
  int64_t num_prefix_cache_queries = 0; // tokens looked up in the prefix cache
  int64_t num_prefix_cache_hits = 0;    // of those, tokens found cached
  // Seconds from arrival to first token, one per request whose first token this step sampled.
  std::span<const double> time_to_first_token_s{};
  // Seconds since the same request's previous token, one per other token this step sampled.
  std::span<const double> inter_token_latency_s{};
  // Seconds shard 0 spent in tensor-parallel collectives during the step, waiting for the other ranks
  // included (host time: on a GPU, the time to enqueue them). 0 on one shard.
  double collective_s = 0;
};

// One finished request's life. Times come from one steady_clock; a phase the request never reached
// (aborted while waiting: never scheduled, no first token) is left empty and its histograms skip it.
struct finished_request_report {
  std::chrono::steady_clock::time_point arrival{};                       // the gateway accepted it
  std::optional<std::chrono::steady_clock::time_point> first_scheduled{};  // it first left the waiting queue
  std::optional<std::chrono::steady_clock::time_point> first_token{};      // its first token was sampled
  std::chrono::steady_clock::time_point finished{};                      // its last token / its end
  int64_t num_prompt_tokens = 0;
  int64_t num_generation_tokens = 0;
  request_outcome outcome = request_outcome::stop;
};

// What the live dashboard shows. Rates, quantiles and the batch size distribution cover the last
// window_seconds; the totals cover the server's life.
struct metrics_snapshot {
  double window_seconds = 0;            // shorter than the configured window just after start
  double tokens_in_per_s = 0;           // prompt tokens computed per second
  double tokens_out_per_s = 0;          // tokens generated per second
  double requests_per_s = 0;            // requests finished per second
  std::optional<double> ttft_p50, ttft_p95;  // seconds; empty when no first token fell in the window
  std::optional<double> itl_p50, itl_p95;    // seconds; empty when no inter-token gap fell in the window
  histogram_data batch_size;            // sequences per step (troupe:iteration_num_seqs buckets), over the window
  // The same three since start (cumulative, with sums): two snapshots' histogram_increase covers the
  // time between them, as a plot of the past needs.
  histogram_data ttft_total, itl_total, batch_size_total;

  int64_t num_running = 0;              // as of the last step
  int64_t num_waiting = 0;              // the queue length, as of the last step
  double kv_cache_usage = 0;            // 0..1, as of the last step
  int32_t tensor_parallel_size = 1;
  std::optional<double> collective_s_per_step;  // mean over the window's steps; empty on one shard or no step

  uint64_t num_prompt_tokens = 0;                             // total computed
  uint64_t num_generation_tokens = 0;                         // total sampled
  uint64_t num_prefix_cache_queries = 0;                      // total tokens looked up
  uint64_t num_prefix_cache_hits = 0;                         // total tokens found cached
  uint64_t num_preemptions = 0;                               // total
  uint64_t num_rejected = 0;                                  // total, all reasons
  std::array<uint64_t, num_reject_reasons> num_rejected_by_reason{};  // total, indexed by reject_reason
  std::array<uint64_t, num_request_outcomes> num_finished_by_outcome{};  // total, indexed by request_outcome
};

class engine_metrics {
public:
  // Registers every family, with each labelled series already at zero (so /metrics lists them from the
  // start). Throws std::invalid_argument for max_model_len < 1 or a window under 1 s.
  explicit engine_metrics(engine_metrics_config config);
  engine_metrics(const engine_metrics&) = delete;
  engine_metrics& operator=(const engine_metrics&) = delete;

  // Once per engine step: gauges, token / preemption / prefix cache counters, the per-step histograms,
  // and the TTFT / inter-token latencies the step produced.
  void on_step(const step_report& step);
  // The gauges alone, for changes between steps (an abort while nothing else runs).
  void on_occupancy(int32_t num_running, int32_t num_waiting, double kv_cache_usage);

  // Tokens that passed through without a step of this process (a router relaying its workers' streams):
  // the prompt and generation token counters and the inter-token latencies, as a step report lists them,
  // without the gauges or the per-step histograms (the batch is a worker's).
  void on_tokens(int64_t num_prompt_tokens, int64_t num_generation_tokens, std::span<const double> inter_token_latency_s);

  // A first token sampled outside a step report (same effect as listing it in one).
  void on_first_token(std::chrono::steady_clock::time_point arrival, std::chrono::steady_clock::time_point first_token);

  // Once per request that ended (any outcome): request_success and the per-request histograms.
  void on_request_finished(const finished_request_report& request);

  // A request turned away (or cut off) by the gateway. Lock-free: safe from any thread, any rate.
  void on_rejected(reject_reason reason);

  // The /metrics body (Prometheus text format 0.0.4).
  std::string render() const;

  metrics_snapshot snapshot() const;

  // PREFIX of every family's name (engine_metrics_config::prefix).
  const std::string& prefix() const { return config_.prefix; }

  // For families of other components that belong on the same /metrics page.
  metrics_registry& registry() { return registry_; }

private:
  std::chrono::steady_clock::time_point now() const;
  void window_add(std::chrono::steady_clock::time_point t, size_t channel, double amount);

  engine_metrics_config config_;
  metrics_registry registry_;

  gauge* running_;
  gauge* waiting_;
  gauge* kv_usage_;
  gauge* gpu_cache_usage_ = nullptr;  // the same, under vLLM's deprecated name: only with the prefix "vllm"
  counter* prefix_queries_;
  counter* prefix_hits_;
  counter* preemptions_;
  counter* prompt_tokens_;
  counter* generation_tokens_;
  std::array<counter*, num_request_outcomes> success_{};
  std::array<counter*, num_reject_reasons> rejected_{};
  histogram* request_prompt_tokens_;
  histogram* request_generation_tokens_;
  histogram* iteration_tokens_;
  histogram* iteration_num_seqs_;
  histogram* ttft_;
  histogram* tpot_;  // vLLM's deprecated name of the inter-token latency, fed the same values
  histogram* itl_;
  histogram* request_tpot_;
  histogram* e2e_;
  histogram* queue_time_;
  histogram* inference_time_;
  histogram* prefill_time_;
  histogram* decode_time_;
  gauge* tensor_parallel_size_;
  histogram* collective_time_ = nullptr;  // only above one shard

  // Window channels: prompt tokens, generation tokens, finished requests, then one per bucket of
  // TTFT, inter-token latency and sequences per step (per bucket, not cumulative).
  size_t ttft_channel_ = 0;
  size_t itl_channel_ = 0;
  size_t seqs_channel_ = 0;
  size_t collective_channel_ = 0;  // seconds in collectives, then steps, summed
  mutable std::mutex window_mutex_;
  sliding_window window_;
};

} // namespace troupe
