#include "runtime/engine/engine_metrics.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <utility>

namespace troupe {

namespace {

using clock = std::chrono::steady_clock;

// Buckets as vLLM's PrometheusStatLogger has them.
const std::vector<double> ttft_buckets{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                       1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const std::vector<double> itl_buckets{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                      0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> request_latency_buckets{0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
                                                  30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const std::vector<double> iteration_tokens_buckets{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
// troupe's own: batch sizes up to the largest --max-num-seqs anyone runs.
const std::vector<double> iteration_seqs_buckets{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
// troupe's own: from an NVLink all-reduce of one token (tens of microseconds) to a CPU shard's large prefill.
const std::vector<double> collective_buckets{0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002,
                                             0.005,   0.01,    0.02,    0.05,   0.1,    0.2,    0.5,   1.0};

constexpr size_t prompt_channel = 0;
constexpr size_t generation_channel = 1;
constexpr size_t finished_channel = 2;
// Each histogram in the window takes one channel per bucket, +Inf included.
constexpr size_t first_histogram_channel = 3;

size_t num_window_channels() {
  return first_histogram_channel + (ttft_buckets.size() + 1) + (itl_buckets.size() + 1) + (iteration_seqs_buckets.size() + 1) +
         2;  // collective seconds, steps
}

double seconds_between(clock::time_point from, clock::time_point to) {
  const double s = std::chrono::duration<double>(to - from).count();
  return s > 0 ? s : 0.0;  // reports from different threads may be a hair out of order
}

// Which bucket (of bounds plus +Inf) a value falls in, as histogram::observe counts it.
size_t bucket_of(const std::vector<double>& bounds, double value) {
  return static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
}

// The window's per-bucket sums of one histogram, as cumulative histogram_data.
histogram_data window_histogram(const std::vector<double>& sums, size_t first_channel, const std::vector<double>& bounds) {
  histogram_data h;
  h.upper_bounds = bounds;
  h.upper_bounds.push_back(std::numeric_limits<double>::infinity());
  uint64_t total = 0;
  for (size_t i = 0; i < h.upper_bounds.size(); ++i) {
    total += static_cast<uint64_t>(sums[first_channel + i]);
    h.counts.push_back(total);
  }
  return h;  // sum is not tracked in the window
}

} // namespace

std::string_view to_string(request_outcome outcome) {
  switch (outcome) {
  case request_outcome::stop: return "stop";
  case request_outcome::length: return "length";
  case request_outcome::abort: return "abort";
  case request_outcome::error: return "error";
  }
  return "";
}

std::string_view to_string(reject_reason reason) {
  switch (reason) {
  case reject_reason::queue_full: return "queue_full";
  case reject_reason::rate_limited: return "rate_limited";
  case reject_reason::too_long: return "too_long";
  case reject_reason::invalid: return "invalid";
  case reject_reason::unauthorized: return "unauthorized";
  case reject_reason::draining: return "draining";
  case reject_reason::timeout: return "timeout";
  case reject_reason::slow_consumer: return "slow_consumer";
  }
  return "";
}

void check_metrics_prefix(std::string_view prefix) {
  auto first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  auto rest = [&](char c) { return first(c) || (c >= '0' && c <= '9'); };
  if (prefix.empty() || !first(prefix[0]) || !std::all_of(prefix.begin() + 1, prefix.end(), rest))
    throw std::invalid_argument("--metrics-prefix must be a Prometheus name part (letters, digits and _, not starting "
                                "with a digit), such as troupe or vllm; got '" + std::string(prefix) + "'");
}

std::vector<double> buckets_1_2_5(int64_t max_value) {
  std::vector<double> buckets;
  for (int64_t scale = 1;; scale *= 10) {
    for (int64_t mantissa : {1, 2, 5}) {
      if (mantissa * scale > max_value) return buckets;
      buckets.push_back(static_cast<double>(mantissa * scale));
    }
    if (scale > max_value / 10) return buckets;  // the next scale starts past max_value (and might overflow)
  }
}

engine_metrics::engine_metrics(engine_metrics_config config)
    : config_(std::move(config)),
      window_(num_window_channels(), std::chrono::seconds(1), static_cast<size_t>(std::max<int64_t>(config_.window.count(), 1)),
              config_.clock ? config_.clock() : clock::now()) {
  if (config_.max_model_len < 1) throw std::invalid_argument("engine_metrics: max_model_len must be at least 1");
  if (config_.window < std::chrono::seconds(1)) throw std::invalid_argument("engine_metrics: the window must be at least 1 s");
  check_metrics_prefix(config_.prefix);

  const std::string& model = config_.model_name;
  const std::vector<std::string> labels{"model_name"};
  // Every family is PREFIX:name.
  auto named = [&](std::string_view name) { return config_.prefix + ":" + std::string(name); };
  auto add_gauge = [&](std::string_view name, std::string help) {
    return &registry_.add_gauge(named(name), std::move(help), labels).labels({model});
  };
  auto add_counter = [&](std::string_view name, std::string help) {
    return &registry_.add_counter(named(name), std::move(help), labels).labels({model});
  };
  auto add_histogram = [&](std::string_view name, std::string help, const std::vector<double>& buckets) {
    return &registry_.add_histogram(named(name), std::move(help), buckets, labels).labels({model});
  };

  // In vLLM's order of registration, troupe's own families beside their closest kin.
  running_ = add_gauge("num_requests_running", "Number of requests in model execution batches.");
  waiting_ = add_gauge("num_requests_waiting", "Number of requests waiting to be processed.");
  kv_usage_ = add_gauge("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");
  // vLLM renamed it in 0.10; dashboards written before (vLLM's own example among them) plot the old name.
  if (config_.prefix == "vllm")
    gpu_cache_usage_ = add_gauge("gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage. "
                                                         "DEPRECATED: Use vllm:kv_cache_usage_perc instead.");
  prefix_queries_ = add_counter("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.");
  prefix_hits_ = add_counter("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.");
  preemptions_ = add_counter("num_preemptions", "Cumulative number of preemption from the engine.");
  prompt_tokens_ = add_counter("prompt_tokens", "Number of prefill tokens processed.");
  generation_tokens_ = add_counter("generation_tokens", "Number of generation tokens processed.");

  auto& success = registry_.add_counter(named("request_success"), "Count of successfully processed requests.",
                                        {"model_name", "finished_reason"});
  for (size_t i = 0; i < num_request_outcomes; ++i) {
    success_[i] = &success.labels({model, to_string(static_cast<request_outcome>(i))});
  }
  auto& rejected = registry_.add_counter(named("request_rejected"), "Count of requests rejected or cut off by the server, by reason.",
                                         {"model_name", "reason"});
  for (size_t i = 0; i < num_reject_reasons; ++i) {
    rejected_[i] = &rejected.labels({model, to_string(static_cast<reject_reason>(i))});
  }

  const std::vector<double> token_buckets = buckets_1_2_5(config_.max_model_len);
  request_prompt_tokens_ = add_histogram("request_prompt_tokens", "Number of prefill tokens processed.", token_buckets);
  request_generation_tokens_ =
      add_histogram("request_generation_tokens", "Number of generation tokens processed.", token_buckets);
  iteration_tokens_ =
      add_histogram("iteration_tokens_total", "Histogram of number of tokens per engine_step.", iteration_tokens_buckets);
  iteration_num_seqs_ =
      add_histogram("iteration_num_seqs", "Histogram of number of sequences per engine_step.", iteration_seqs_buckets);

  ttft_ = add_histogram("time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft_buckets);
  tpot_ = add_histogram("time_per_output_token_seconds",
                        "Histogram of time per output token in seconds. "
                        "DEPRECATED: Use " + named("inter_token_latency_seconds") + " instead.",
                        itl_buckets);
  itl_ = add_histogram("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", itl_buckets);
  request_tpot_ = add_histogram("request_time_per_output_token_seconds",
                                "Histogram of time_per_output_token_seconds per request.", itl_buckets);
  e2e_ = add_histogram("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", request_latency_buckets);
  queue_time_ = add_histogram("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
                              request_latency_buckets);
  inference_time_ = add_histogram("request_inference_time_seconds",
                                  "Histogram of time spent in RUNNING phase for request.", request_latency_buckets);
  prefill_time_ = add_histogram("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
                                request_latency_buckets);
  decode_time_ = add_histogram("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
                               request_latency_buckets);

  tensor_parallel_size_ = add_gauge("tensor_parallel_size", "Shards the model is split over (--tensor-parallel-size).");
  tensor_parallel_size_->set(config_.tensor_parallel_size);
  if (config_.tensor_parallel_size > 1)
    collective_time_ = add_histogram("collective_time_per_step_seconds",
                                     "Histogram of time shard 0 spent in tensor-parallel collectives per engine_step "
                                     "(waiting for the other ranks included).",
                                     collective_buckets);

  ttft_channel_ = first_histogram_channel;
  itl_channel_ = ttft_channel_ + ttft_buckets.size() + 1;
  seqs_channel_ = itl_channel_ + itl_buckets.size() + 1;
  collective_channel_ = seqs_channel_ + iteration_seqs_buckets.size() + 1;
}

clock::time_point engine_metrics::now() const { return config_.clock ? config_.clock() : clock::now(); }

void engine_metrics::on_occupancy(int32_t num_running, int32_t num_waiting, double kv_cache_usage) {
  running_->set(num_running);
  waiting_->set(num_waiting);
  kv_usage_->set(kv_cache_usage);
  if (gpu_cache_usage_) gpu_cache_usage_->set(kv_cache_usage);
}

void engine_metrics::on_step(const step_report& step) {
  on_occupancy(step.num_running, step.num_waiting, step.kv_cache_usage);
  prefix_queries_->inc(static_cast<double>(step.num_prefix_cache_queries));
  prefix_hits_->inc(static_cast<double>(step.num_prefix_cache_hits));
  preemptions_->inc(static_cast<double>(step.num_preemptions));
  prompt_tokens_->inc(static_cast<double>(step.num_prompt_tokens));
  generation_tokens_->inc(static_cast<double>(step.num_generation_tokens));
  iteration_tokens_->observe(static_cast<double>(step.num_prompt_tokens + step.num_generation_tokens));
  iteration_num_seqs_->observe(step.num_seqs);
  for (double s : step.time_to_first_token_s) ttft_->observe(s);
  for (double s : step.inter_token_latency_s) {
    itl_->observe(s);
    tpot_->observe(s);
  }
  if (collective_time_) collective_time_->observe(step.collective_s);

  std::lock_guard lock(window_mutex_);
  const clock::time_point t = now();
  window_.add(t, prompt_channel, static_cast<double>(step.num_prompt_tokens));
  window_.add(t, generation_channel, static_cast<double>(step.num_generation_tokens));
  window_.add(t, seqs_channel_ + bucket_of(iteration_seqs_buckets, step.num_seqs), 1);
  for (double s : step.time_to_first_token_s) window_.add(t, ttft_channel_ + bucket_of(ttft_buckets, s), 1);
  for (double s : step.inter_token_latency_s) window_.add(t, itl_channel_ + bucket_of(itl_buckets, s), 1);
  window_.add(t, collective_channel_, step.collective_s);
  window_.add(t, collective_channel_ + 1, 1);
}

void engine_metrics::on_tokens(int64_t num_prompt_tokens, int64_t num_generation_tokens, std::span<const double> inter_token_latency_s) {
  prompt_tokens_->inc(static_cast<double>(num_prompt_tokens));
  generation_tokens_->inc(static_cast<double>(num_generation_tokens));
  for (double s : inter_token_latency_s) {
    itl_->observe(s);
    tpot_->observe(s);
  }
  std::lock_guard lock(window_mutex_);
  const clock::time_point t = now();
  window_.add(t, prompt_channel, static_cast<double>(num_prompt_tokens));
  window_.add(t, generation_channel, static_cast<double>(num_generation_tokens));
  for (double s : inter_token_latency_s) window_.add(t, itl_channel_ + bucket_of(itl_buckets, s), 1);
}

void engine_metrics::on_first_token(clock::time_point arrival, clock::time_point first_token) {
  const double s = seconds_between(arrival, first_token);
  ttft_->observe(s);
  std::lock_guard lock(window_mutex_);
  window_.add(now(), ttft_channel_ + bucket_of(ttft_buckets, s), 1);
}

void engine_metrics::on_request_finished(const finished_request_report& r) {
  success_[static_cast<size_t>(r.outcome)]->inc();
  e2e_->observe(seconds_between(r.arrival, r.finished));
  request_prompt_tokens_->observe(static_cast<double>(r.num_prompt_tokens));
  request_generation_tokens_->observe(static_cast<double>(r.num_generation_tokens));
  if (r.first_scheduled) {
    queue_time_->observe(seconds_between(r.arrival, *r.first_scheduled));
    inference_time_->observe(seconds_between(*r.first_scheduled, r.finished));
    if (r.first_token) prefill_time_->observe(seconds_between(*r.first_scheduled, *r.first_token));
  }
  if (r.first_token) {
    const double decode = seconds_between(*r.first_token, r.finished);
    decode_time_->observe(decode);
    // vLLM observes 0 for a single token; troupe skips it, as a request with one token has no pace.
    if (r.num_generation_tokens > 1) request_tpot_->observe(decode / static_cast<double>(r.num_generation_tokens - 1));
  }

  std::lock_guard lock(window_mutex_);
  window_.add(now(), finished_channel, 1);
}

void engine_metrics::on_rejected(reject_reason reason) { rejected_[static_cast<size_t>(reason)]->inc(); }

std::string engine_metrics::render() const { return registry_.render(); }

metrics_snapshot engine_metrics::snapshot() const {
  sliding_window::totals w;
  {
    std::lock_guard lock(window_mutex_);
    w = window_.sum(now());
  }
  metrics_snapshot s;
  s.window_seconds = w.seconds;
  if (w.seconds > 0) {
    s.tokens_in_per_s = w.sums[prompt_channel] / w.seconds;
    s.tokens_out_per_s = w.sums[generation_channel] / w.seconds;
    s.requests_per_s = w.sums[finished_channel] / w.seconds;
  }
  const histogram_data ttft = window_histogram(w.sums, ttft_channel_, ttft_buckets);
  const histogram_data itl = window_histogram(w.sums, itl_channel_, itl_buckets);
  s.ttft_p50 = histogram_quantile(0.5, ttft);
  s.ttft_p95 = histogram_quantile(0.95, ttft);
  s.itl_p50 = histogram_quantile(0.5, itl);
  s.itl_p95 = histogram_quantile(0.95, itl);
  s.batch_size = window_histogram(w.sums, seqs_channel_, iteration_seqs_buckets);
  s.ttft_total = ttft_->data();
  s.itl_total = itl_->data();
  s.batch_size_total = iteration_num_seqs_->data();

  s.num_running = static_cast<int64_t>(running_->value());
  s.num_waiting = static_cast<int64_t>(waiting_->value());
  s.kv_cache_usage = kv_usage_->value();
  s.tensor_parallel_size = config_.tensor_parallel_size;
  if (collective_time_ && w.sums[collective_channel_ + 1] > 0)
    s.collective_s_per_step = w.sums[collective_channel_] / w.sums[collective_channel_ + 1];
  s.num_prompt_tokens = static_cast<uint64_t>(prompt_tokens_->value());
  s.num_generation_tokens = static_cast<uint64_t>(generation_tokens_->value());
  s.num_prefix_cache_queries = static_cast<uint64_t>(prefix_queries_->value());
  s.num_prefix_cache_hits = static_cast<uint64_t>(prefix_hits_->value());
  s.num_preemptions = static_cast<uint64_t>(preemptions_->value());
  for (size_t i = 0; i < num_reject_reasons; ++i) {
    s.num_rejected_by_reason[i] = static_cast<uint64_t>(rejected_[i]->value());
    s.num_rejected += s.num_rejected_by_reason[i];
  }
  for (size_t i = 0; i < num_request_outcomes; ++i) s.num_finished_by_outcome[i] = static_cast<uint64_t>(success_[i]->value());
  return s;
}

} // namespace troupe
