#include "runtime/engine/engine_metrics.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace troupe {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

const clock::time_point t0 = clock::time_point{} + 1000h;
constexpr double inf = std::numeric_limits<double>::infinity();

// The value printed for one series of a rendered page ("" when the series is missing).
std::string sample(const std::string& page, const std::string& series) {
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(series + " ")) return line.substr(series.size() + 1);
  }
  return "";
}

// Every "# TYPE name type" line, in order.
std::vector<std::string> type_lines(const std::string& page) {
  std::vector<std::string> out;
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# TYPE ")) out.push_back(line.substr(7));
  }
  return out;
}

// Metrics on a clock the test moves by hand.
struct fixture {
  clock::time_point now = t0;
  engine_metrics m{engine_metrics_config{"m", 100, 10s, [this] { return now; }}};
};

TEST(engine_metrics, renders_vllm_s_families_under_troupe_with_their_type_lines) {
  fixture f;
  EXPECT_EQ(type_lines(f.m.render()), (std::vector<std::string>{
                                          "troupe:num_requests_running gauge",
                                          "troupe:num_requests_waiting gauge",
                                          "troupe:kv_cache_usage_perc gauge",
                                          "troupe:prefix_cache_queries_total counter",
                                          "troupe:prefix_cache_hits_total counter",
                                          "troupe:num_preemptions_total counter",
                                          "troupe:prompt_tokens_total counter",
                                          "troupe:generation_tokens_total counter",
                                          "troupe:request_success_total counter",
                                          "troupe:request_rejected_total counter",
                                          "troupe:request_prompt_tokens histogram",
                                          "troupe:request_generation_tokens histogram",
                                          "troupe:iteration_tokens_total histogram",
                                          "troupe:iteration_num_seqs histogram",
                                          "troupe:time_to_first_token_seconds histogram",
                                          "troupe:time_per_output_token_seconds histogram",
                                          "troupe:inter_token_latency_seconds histogram",
                                          "troupe:request_time_per_output_token_seconds histogram",
                                          "troupe:e2e_request_latency_seconds histogram",
                                          "troupe:request_queue_time_seconds histogram",
                                          "troupe:request_inference_time_seconds histogram",
                                          "troupe:request_prefill_time_seconds histogram",
                                          "troupe:request_decode_time_seconds histogram",
                                          "troupe:tensor_parallel_size gauge",
                                      }));
}

// Above one shard: the size and the time shard 0 spent in collectives per step, on /metrics and in the
// snapshot (the mean over the window's steps).
TEST(engine_metrics, a_split_model_reports_its_size_and_collective_time_per_step) {
  clock::time_point now = t0;
  engine_metrics m{engine_metrics_config{"m", 100, 10s, [&] { return now; }, 4}};
  now = t0 + 200ms;
  m.on_step({.num_seqs = 1, .num_generation_tokens = 1, .collective_s = 0.0003});
  m.on_step({.num_seqs = 1, .num_generation_tokens = 1, .collective_s = 0.0001});
  const std::string page = m.render();
  EXPECT_NE(page.find("troupe:tensor_parallel_size{model_name=\"m\"} 4"), std::string::npos) << page;
  EXPECT_NE(page.find("troupe:collective_time_per_step_seconds_count{model_name=\"m\"} 2"), std::string::npos) << page;
  EXPECT_NE(page.find("troupe:collective_time_per_step_seconds_bucket{le=\"0.0002\",model_name=\"m\"} 1.0"),
            std::string::npos) << page;
  now = t0 + 1s;
  const metrics_snapshot s = m.snapshot();
  EXPECT_EQ(s.tensor_parallel_size, 4);
  ASSERT_TRUE(s.collective_s_per_step.has_value());
  EXPECT_NEAR(*s.collective_s_per_step, 0.0002, 1e-12);

  fixture one;  // one shard: no collective family, no figure
  EXPECT_EQ(one.m.render().find("collective"), std::string::npos);
  EXPECT_FALSE(one.m.snapshot().collective_s_per_step.has_value());
}

TEST(engine_metrics, lists_every_finish_and_reject_reason_at_zero_from_the_start) {
  fixture f;
  const std::string page = f.m.render();
  for (const char* reason : {"stop", "length", "abort", "error"}) {
    EXPECT_EQ(sample(page, std::string("troupe:request_success_total{finished_reason=\"") + reason + "\",model_name=\"m\"}"), "0.0")
        << reason;
  }
  for (const char* reason :
       {"queue_full", "rate_limited", "too_long", "invalid", "unauthorized", "draining", "timeout", "slow_consumer"}) {
    EXPECT_EQ(sample(page, std::string("troupe:request_rejected_total{model_name=\"m\",reason=\"") + reason + "\"}"), "0.0")
        << reason;
  }
  EXPECT_EQ(sample(page, "troupe:num_requests_running{model_name=\"m\"}"), "0.0");
}

TEST(engine_metrics, uses_vllm_s_buckets_and_1_2_5_token_buckets_up_to_max_model_len) {
  fixture f;
  const std::string page = f.m.render();
  EXPECT_EQ(sample(page, "troupe:time_to_first_token_seconds_bucket{le=\"2560.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:inter_token_latency_seconds_bucket{le=\"80.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:e2e_request_latency_seconds_bucket{le=\"7680.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:iteration_tokens_total_bucket{le=\"16384.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:request_prompt_tokens_bucket{le=\"100.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:request_prompt_tokens_bucket{le=\"200.0\",model_name=\"m\"}"), "");
}

TEST(engine_metrics, a_step_sets_the_gauges_and_adds_to_the_counters_and_step_histograms) {
  fixture f;
  const std::vector<double> ttft{0.03};
  const std::vector<double> itl{0.02, 0.2};
  f.m.on_step({.num_running = 3, .num_waiting = 2, .kv_cache_usage = 0.25, .num_seqs = 3, .num_prompt_tokens = 100,
               .num_generation_tokens = 3, .num_preemptions = 1, .num_prefix_cache_queries = 64,
               .num_prefix_cache_hits = 32, .time_to_first_token_s = ttft, .inter_token_latency_s = itl});
  f.m.on_step({.num_running = 3, .num_waiting = 1, .kv_cache_usage = 0.5, .num_seqs = 3, .num_generation_tokens = 3});

  const std::string page = f.m.render();
  EXPECT_EQ(sample(page, "troupe:num_requests_running{model_name=\"m\"}"), "3.0");
  EXPECT_EQ(sample(page, "troupe:num_requests_waiting{model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:kv_cache_usage_perc{model_name=\"m\"}"), "0.5");
  EXPECT_EQ(sample(page, "troupe:prompt_tokens_total{model_name=\"m\"}"), "100.0");
  EXPECT_EQ(sample(page, "troupe:generation_tokens_total{model_name=\"m\"}"), "6.0");
  EXPECT_EQ(sample(page, "troupe:num_preemptions_total{model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:prefix_cache_queries_total{model_name=\"m\"}"), "64.0");
  EXPECT_EQ(sample(page, "troupe:prefix_cache_hits_total{model_name=\"m\"}"), "32.0");
  // Tokens per step: 103 (in (64, 128]) and 3 (in (1, 8]).
  EXPECT_EQ(sample(page, "troupe:iteration_tokens_total_bucket{le=\"1.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:iteration_tokens_total_bucket{le=\"8.0\",model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:iteration_tokens_total_bucket{le=\"128.0\",model_name=\"m\"}"), "2.0");
  EXPECT_EQ(sample(page, "troupe:iteration_tokens_total_sum{model_name=\"m\"}"), "106.0");
  EXPECT_EQ(sample(page, "troupe:iteration_num_seqs_bucket{le=\"2.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:iteration_num_seqs_bucket{le=\"4.0\",model_name=\"m\"}"), "2.0");
  EXPECT_EQ(sample(page, "troupe:time_to_first_token_seconds_count{model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:time_to_first_token_seconds_sum{model_name=\"m\"}"), "0.03");
  EXPECT_EQ(sample(page, "troupe:inter_token_latency_seconds_count{model_name=\"m\"}"), "2.0");
  EXPECT_EQ(sample(page, "troupe:inter_token_latency_seconds_bucket{le=\"0.025\",model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:time_per_output_token_seconds_count{model_name=\"m\"}"), "2.0");
}

TEST(engine_metrics, a_finished_request_feeds_its_phases_into_vllm_s_request_histograms) {
  fixture f;
  f.m.on_request_finished({.arrival = t0,
                           .first_scheduled = t0 + 500ms,
                           .first_token = t0 + 750ms,
                           .finished = t0 + 2750ms,
                           .num_prompt_tokens = 7,
                           .num_generation_tokens = 5,
                           .outcome = request_outcome::length});
  const std::string page = f.m.render();
  EXPECT_EQ(sample(page, "troupe:request_success_total{finished_reason=\"length\",model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:request_success_total{finished_reason=\"stop\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:e2e_request_latency_seconds_sum{model_name=\"m\"}"), "2.75");
  EXPECT_EQ(sample(page, "troupe:request_queue_time_seconds_sum{model_name=\"m\"}"), "0.5");
  EXPECT_EQ(sample(page, "troupe:request_prefill_time_seconds_sum{model_name=\"m\"}"), "0.25");
  EXPECT_EQ(sample(page, "troupe:request_decode_time_seconds_sum{model_name=\"m\"}"), "2.0");
  EXPECT_EQ(sample(page, "troupe:request_inference_time_seconds_sum{model_name=\"m\"}"), "2.25");
  EXPECT_EQ(sample(page, "troupe:request_time_per_output_token_seconds_sum{model_name=\"m\"}"), "0.5");  // 2 s over 4 gaps
  EXPECT_EQ(sample(page, "troupe:request_prompt_tokens_bucket{le=\"5.0\",model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:request_prompt_tokens_bucket{le=\"10.0\",model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:request_generation_tokens_bucket{le=\"5.0\",model_name=\"m\"}"), "1.0");
}

TEST(engine_metrics, a_request_aborted_while_waiting_counts_without_phases) {
  fixture f;
  f.m.on_request_finished({.arrival = t0, .finished = t0 + 1s, .num_prompt_tokens = 7, .outcome = request_outcome::abort});
  const std::string page = f.m.render();
  EXPECT_EQ(sample(page, "troupe:request_success_total{finished_reason=\"abort\",model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:e2e_request_latency_seconds_count{model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:request_queue_time_seconds_count{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:request_prefill_time_seconds_count{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:request_decode_time_seconds_count{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:request_time_per_output_token_seconds_count{model_name=\"m\"}"), "0.0");
}

TEST(engine_metrics, a_first_token_outside_a_step_counts_its_time_to_first_token) {
  fixture f;
  f.m.on_first_token(t0, t0 + 40ms);
  EXPECT_EQ(sample(f.m.render(), "troupe:time_to_first_token_seconds_bucket{le=\"0.04\",model_name=\"m\"}"), "1.0");
  EXPECT_DOUBLE_EQ(*f.m.snapshot().ttft_p50, 0.03);  // half way through (0.02, 0.04]
}

TEST(engine_metrics, relayed_tokens_add_to_the_token_counters_and_latencies_without_a_step) {
  fixture f;
  f.m.on_occupancy(2, 1, 0.5);
  const std::vector<double> itl{0.02, 0.2};
  f.now = t0 + 500ms;
  f.m.on_tokens(100, 3, itl);
  const std::string page = f.m.render();
  EXPECT_EQ(sample(page, "troupe:prompt_tokens_total{model_name=\"m\"}"), "100.0");
  EXPECT_EQ(sample(page, "troupe:generation_tokens_total{model_name=\"m\"}"), "3.0");
  EXPECT_EQ(sample(page, "troupe:inter_token_latency_seconds_count{model_name=\"m\"}"), "2.0");
  EXPECT_EQ(sample(page, "troupe:inter_token_latency_seconds_bucket{le=\"0.025\",model_name=\"m\"}"), "1.0");
  EXPECT_EQ(sample(page, "troupe:time_per_output_token_seconds_count{model_name=\"m\"}"), "2.0");
  // No step: the gauges stay as set and no batch is counted.
  EXPECT_EQ(sample(page, "troupe:num_requests_running{model_name=\"m\"}"), "2.0");
  EXPECT_EQ(sample(page, "troupe:iteration_num_seqs_count{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "troupe:iteration_tokens_total_count{model_name=\"m\"}"), "0.0");
  f.now = t0 + 2s;
  const metrics_snapshot s = f.m.snapshot();
  EXPECT_DOUBLE_EQ(s.tokens_in_per_s, 50);  // over the 2 s since the start
  EXPECT_DOUBLE_EQ(s.tokens_out_per_s, 1.5);
  EXPECT_EQ(s.itl_total.count(), 2u);
  EXPECT_EQ(s.batch_size_total.count(), 0u);
}

TEST(engine_metrics, rejections_from_many_threads_add_up_by_reason) {
  fixture f;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        f.m.on_rejected(reject_reason::queue_full);
        if (i % 2 == 0) f.m.on_rejected(reject_reason::slow_consumer);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  const std::string page = f.m.render();
  EXPECT_EQ(sample(page, "troupe:request_rejected_total{model_name=\"m\",reason=\"queue_full\"}"), "40000.0");
  EXPECT_EQ(sample(page, "troupe:request_rejected_total{model_name=\"m\",reason=\"slow_consumer\"}"), "20000.0");
  const metrics_snapshot s = f.m.snapshot();
  EXPECT_EQ(s.num_rejected, 60000u);
  EXPECT_EQ(s.num_rejected_by_reason[static_cast<size_t>(reject_reason::queue_full)], 40000u);
  EXPECT_EQ(s.num_rejected_by_reason[static_cast<size_t>(reject_reason::timeout)], 0u);
}

TEST(engine_metrics, a_snapshot_gives_rates_quantiles_and_batch_sizes_over_the_window) {
  fixture f;
  const std::vector<double> ttft{0.03, 0.05, 0.07, 0.09};
  const std::vector<double> itl{0.02, 0.02, 0.02, 0.2};
  f.now = t0 + 500ms;
  f.m.on_step({.num_running = 4, .num_waiting = 6, .kv_cache_usage = 0.5, .num_seqs = 4, .num_prompt_tokens = 100,
               .num_generation_tokens = 4, .num_preemptions = 2, .time_to_first_token_s = ttft});
  f.now = t0 + 1500ms;
  f.m.on_step({.num_running = 8, .num_waiting = 2, .kv_cache_usage = 0.75, .num_seqs = 8, .num_generation_tokens = 8,
               .inter_token_latency_s = itl});
  f.m.on_request_finished({.arrival = t0, .finished = f.now, .outcome = request_outcome::stop});

  f.now = t0 + 2s;
  const metrics_snapshot s = f.m.snapshot();
  EXPECT_DOUBLE_EQ(s.window_seconds, 2.0);
  EXPECT_DOUBLE_EQ(s.tokens_in_per_s, 50.0);
  EXPECT_DOUBLE_EQ(s.tokens_out_per_s, 6.0);
  EXPECT_DOUBLE_EQ(s.requests_per_s, 0.5);
  EXPECT_NEAR(*s.ttft_p50, 0.06, 1e-12);   // rank 2 of 4: the top of (0.04, 0.06]
  EXPECT_NEAR(*s.ttft_p95, 0.096, 1e-12);  // rank 3.8: 80% into (0.08, 0.1]
  EXPECT_NEAR(*s.itl_p50, 0.02, 1e-12);    // rank 2 of the 3 in (0.01, 0.025]
  EXPECT_NEAR(*s.itl_p95, 0.19, 1e-12);    // rank 3.8: 80% into (0.15, 0.2]
  EXPECT_EQ(s.batch_size.upper_bounds, (std::vector<double>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, inf}));
  EXPECT_EQ(s.batch_size.counts, (std::vector<uint64_t>{0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2}));
  EXPECT_EQ(s.num_running, 8);
  EXPECT_EQ(s.num_waiting, 2);
  EXPECT_DOUBLE_EQ(s.kv_cache_usage, 0.75);
  EXPECT_EQ(s.num_preemptions, 2u);
  EXPECT_EQ(s.num_finished_by_outcome[static_cast<size_t>(request_outcome::stop)], 1u);

  // Ten seconds on, the window has let go of both steps; the totals and gauges stay.
  f.now = t0 + 12s;
  const metrics_snapshot later = f.m.snapshot();
  EXPECT_DOUBLE_EQ(later.window_seconds, 9.0);
  EXPECT_DOUBLE_EQ(later.tokens_in_per_s, 0.0);
  EXPECT_DOUBLE_EQ(later.tokens_out_per_s, 0.0);
  EXPECT_EQ(later.ttft_p50, std::nullopt);
  EXPECT_EQ(later.itl_p95, std::nullopt);
  EXPECT_EQ(later.batch_size.count(), 0u);
  EXPECT_EQ(later.num_running, 8);
  EXPECT_EQ(later.num_preemptions, 2u);
}

TEST(buckets_1_2_5, climbs_one_two_five_up_to_the_maximum) {
  EXPECT_EQ(buckets_1_2_5(100), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
  EXPECT_EQ(buckets_1_2_5(4096), (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}));
  EXPECT_EQ(buckets_1_2_5(1), (std::vector<double>{1}));
  EXPECT_EQ(buckets_1_2_5(0), (std::vector<double>{}));
  EXPECT_EQ(buckets_1_2_5(std::numeric_limits<int64_t>::max()).back(), 5e18);
}

TEST(engine_metrics, rejects_a_config_it_cannot_serve) {
  EXPECT_THROW(engine_metrics(engine_metrics_config{"m", 0}), std::invalid_argument);
  EXPECT_THROW(engine_metrics(engine_metrics_config{"m", 100, 0s}), std::invalid_argument);
}

TEST(engine_metrics, under_the_prefix_vllm_names_every_family_as_vllm_does_and_adds_the_old_kv_gauge) {
  engine_metrics m{engine_metrics_config{.model_name = "m", .max_model_len = 100, .prefix = "vllm"}};
  m.on_occupancy(3, 1, 0.25);
  const std::string page = m.render();
  EXPECT_EQ(page.find("troupe:"), std::string::npos);
  EXPECT_EQ(sample(page, "vllm:num_requests_running{model_name=\"m\"}"), "3.0");
  EXPECT_EQ(sample(page, "vllm:kv_cache_usage_perc{model_name=\"m\"}"), "0.25");
  EXPECT_EQ(sample(page, "vllm:gpu_cache_usage_perc{model_name=\"m\"}"), "0.25");
  EXPECT_EQ(sample(page, "vllm:generation_tokens_total{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "vllm:time_to_first_token_seconds_count{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "vllm:e2e_request_latency_seconds_count{model_name=\"m\"}"), "0.0");
  EXPECT_EQ(sample(page, "vllm:num_preemptions_total{model_name=\"m\"}"), "0.0");
  EXPECT_NE(page.find("DEPRECATED: Use vllm:inter_token_latency_seconds instead."), std::string::npos);
  // troupe's own prefix has no old name to keep.
  fixture f;
  EXPECT_EQ(f.m.render().find("gpu_cache_usage_perc"), std::string::npos);
}

TEST(engine_metrics, refuses_a_prefix_that_is_not_a_prometheus_name_part) {
  EXPECT_NO_THROW(check_metrics_prefix("troupe"));
  EXPECT_NO_THROW(check_metrics_prefix("my_vllm2"));
  for (const char* bad : {"", "2x", "vllm:", "a-b", "a b"}) EXPECT_THROW(check_metrics_prefix(bad), std::invalid_argument) << bad;
  EXPECT_THROW(engine_metrics(engine_metrics_config{.model_name = "m", .prefix = "no:"}), std::invalid_argument);
}

TEST(engine_metrics, a_snapshot_carries_the_cumulative_latency_and_batch_histograms) {
  fixture f;
  const std::vector<double> ttft{0.03};
  f.m.on_step({.num_seqs = 3, .time_to_first_token_s = ttft});
  f.now = t0 + 30s;  // long after the window let go of the step
  const metrics_snapshot s = f.m.snapshot();
  EXPECT_EQ(s.ttft_total.count(), 1u);
  EXPECT_DOUBLE_EQ(s.ttft_total.sum, 0.03);
  EXPECT_EQ(s.itl_total.count(), 0u);
  EXPECT_EQ(s.batch_size_total.counts, (std::vector<uint64_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(s.batch_size.count(), 0u);
}

TEST(engine_metrics, shares_its_registry_with_other_components) {
  fixture f;
  f.m.registry().add_gauge("troupe:gateway_connections", "Open HTTP connections.").labels({}).set(2);
  EXPECT_EQ(sample(f.m.render(), "troupe:gateway_connections"), "2.0");
}

} // namespace
} // namespace troupe
