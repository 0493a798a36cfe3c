// The figures of `troupe bench serve`: numpy's percentiles, vLLM's TPOT/ITL/E2EL, and vLLM's report text.

#include "launch/bench/bench_metrics.hpp"
#include "launch/bench/bench_report.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

// Expected values are numpy.percentile's "linear" method worked by hand: sorted values [1 1 2 3 4 5 6 9],
// virtual index (n - 1) * p / 100, interpolated between its neighbours.
const std::vector<double> pi_digits = {3, 1, 4, 1, 5, 9, 2, 6};

TEST(numpy_percentile, interpolates_between_the_sorted_neighbours_of_the_virtual_index) {
  EXPECT_DOUBLE_EQ(numpy_percentile(pi_digits, 0), 1);
  EXPECT_DOUBLE_EQ(numpy_percentile(pi_digits, 50), 3.5);        // index 3.5: 3 + (4 - 3) * 0.5
  EXPECT_NEAR(numpy_percentile(pi_digits, 95), 7.95, 1e-12);      // index 6.65: 6 + (9 - 6) * 0.65
  EXPECT_NEAR(numpy_percentile(pi_digits, 99), 8.79, 1e-12);      // index 6.93: 6 + (9 - 6) * 0.93
  EXPECT_NEAR(numpy_percentile(pi_digits, 12.5), 1.0, 1e-12);     // index 0.875 between 1 and 1
  EXPECT_NEAR(numpy_percentile(pi_digits, 30), 2.1, 1e-12);       // index 2.1: 2 + (3 - 2) * 0.1
  EXPECT_DOUBLE_EQ(numpy_percentile(pi_digits, 100), 9);
  const std::vector<double> three = {5, 1, 3};
  EXPECT_DOUBLE_EQ(numpy_percentile(three, 25), 2);
  EXPECT_DOUBLE_EQ(numpy_percentile(three, 75), 4);
  EXPECT_DOUBLE_EQ(numpy_percentile(std::vector<double>{7}, 99), 7);
  EXPECT_DOUBLE_EQ(numpy_percentile(std::vector<double>{}, 99), 0);
}

TEST(numpy_median, is_the_middle_value_or_the_mean_of_the_two_middle_values) {
  EXPECT_DOUBLE_EQ(numpy_median(pi_digits), 3.5);
  EXPECT_DOUBLE_EQ(numpy_median(std::vector<double>{5, 1, 3}), 3);
  EXPECT_DOUBLE_EQ(numpy_median(std::vector<double>{}), 0);
}

TEST(summarize_latency, gives_milliseconds_with_population_standard_deviation) {
  const double percentiles[] = {50, 99};
  const latency_summary s = summarize_latency(pi_digits, percentiles);
  EXPECT_DOUBLE_EQ(s.mean_ms, 3875);                        // 31 / 8 s
  EXPECT_NEAR(s.std_ms, std::sqrt(6.609375) * 1000, 1e-9);  // sum of squared deviations 52.875, over 8
  EXPECT_DOUBLE_EQ(s.median_ms, 3500);
  ASSERT_EQ(s.percentiles_ms.size(), 2u);
  EXPECT_EQ(s.percentiles_ms[1].first, 99);
  EXPECT_NEAR(s.percentiles_ms[1].second, 8790, 1e-9);
}

request_outcome succeeded(double start, double ttft, std::vector<double> itl, int64_t prompt_len, int64_t output_tokens) {
  request_outcome o;
  o.success = true;
  o.start_time = start;
  o.ttft = ttft;
  o.latency = ttft;
  for (double gap : itl) o.latency += gap;
  o.itl = std::move(itl);
  o.prompt_len = prompt_len;
  o.output_tokens = output_tokens;
  return o;
}

// A: sent at 0, tokens at 0.1 0.2 0.3 0.4 0.5. B: sent at 0.2, tokens at 0.45 0.55 ... 1.15. C failed.
std::vector<request_outcome> two_successes_and_a_failure() {
  request_outcome failed;
  failed.error = "HTTP 500";
  failed.prompt_len = 40;
  return {succeeded(0.0, 0.1, {0.1, 0.1, 0.1, 0.1}, 10, 5),
          succeeded(0.2, 0.25, {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 20, 8), failed};
}

TEST(compute_bench_metrics, counts_successes_and_computes_ttft_tpot_itl_and_e2el_as_vllm) {
  const double percentiles[] = {50, 99};
  const auto outcomes = two_successes_and_a_failure();
  const bench_metrics m = compute_bench_metrics(outcomes, 2.0, percentiles);
  EXPECT_EQ(m.completed, 2);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.total_input, 30);  // the failed request's prompt does not count
  EXPECT_EQ(m.total_output, 13);
  EXPECT_EQ(m.output_lens, (std::vector<int64_t>{5, 8, 0}));
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 6.5);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 21.5);
  EXPECT_NEAR(m.ttft.mean_ms, 175, 1e-9);
  EXPECT_NEAR(m.ttft.percentiles_ms[1].second, 248.5, 1e-9);  // 100 + 150 * 0.99
  // TPOT = (latency - TTFT) / (tokens - 1): A (0.5 - 0.1) / 4, B (0.95 - 0.25) / 7, both 100 ms.
  EXPECT_NEAR(m.tpot.mean_ms, 100, 1e-9);
  EXPECT_NEAR(m.tpot.std_ms, 0, 1e-9);
  EXPECT_NEAR(m.itl.mean_ms, 100, 1e-9);  // all 11 gaps
  EXPECT_NEAR(m.itl.median_ms, 100, 1e-9);
  EXPECT_NEAR(m.e2el.mean_ms, 725, 1e-9);
  EXPECT_NEAR(m.e2el.median_ms, 725, 1e-9);
  EXPECT_EQ(m.max_concurrent_requests, 2);
  EXPECT_DOUBLE_EQ(m.max_output_tokens_per_s, 11);  // 5 of A and 6 of B fall in the first second
}

TEST(compute_bench_metrics, a_single_token_request_has_no_tpot_and_an_empty_metric_reports_zero) {
  const double percentiles[] = {99};
  const std::vector<request_outcome> outcomes = {succeeded(0, 0.2, {}, 4, 1)};
  const bench_metrics m = compute_bench_metrics(outcomes, 1.0, percentiles);
  EXPECT_EQ(m.completed, 1);
  EXPECT_DOUBLE_EQ(m.tpot.mean_ms, 0);
  EXPECT_DOUBLE_EQ(m.tpot.percentiles_ms[0].second, 0);
  EXPECT_DOUBLE_EQ(m.itl.median_ms, 0);
  EXPECT_NEAR(m.ttft.mean_ms, 200, 1e-9);
}

TEST(compute_bench_metrics, a_request_ending_as_another_starts_is_not_concurrent_with_it) {
  const double percentiles[] = {50};
  const std::vector<request_outcome> outcomes = {succeeded(0, 0.5, {}, 1, 1), succeeded(0.5, 0.5, {}, 1, 1)};
  EXPECT_EQ(compute_bench_metrics(outcomes, 1.0, percentiles).max_concurrent_requests, 1);
}

TEST(bench_report, prints_vllms_serving_benchmark_result_block) {
  const double percentiles[] = {99.9};
  const auto outcomes = two_successes_and_a_failure();
  const bench_metrics m = compute_bench_metrics(outcomes, 2.0, percentiles);
  bench_run_info run;
  run.request_rate = 50;
  run.max_concurrency = 4;
  run.percentile_metrics = {"e2el", "ttft"};  // printed in vLLM's order all the same
  // What Python's str.format gives for vLLM's format strings with these values.
  EXPECT_EQ(format_report(m, run),
            "============ Serving Benchmark Result ============\n"
            "Successful requests:                     2         \n"
            "Failed requests:                         1         \n"
            "Maximum request concurrency:             4         \n"
            "Request rate configured (RPS):           50.00     \n"
            "Benchmark duration (s):                  2.00      \n"
            "Total input tokens:                      30        \n"
            "Total generated tokens:                  13        \n"
            "Request throughput (req/s):              1.00      \n"
            "Output token throughput (tok/s):         6.50      \n"
            "Peak output token throughput (tok/s):    11.00     \n"
            "Peak concurrent requests:                2.00      \n"
            "Total Token throughput (tok/s):          21.50     \n"
            "---------------Time to First Token----------------\n"
            "Mean TTFT (ms):                          175.00    \n"
            "Median TTFT (ms):                        175.00    \n"
            "P99.9 TTFT (ms):                         249.85    \n"
            "----------------End-to-end Latency----------------\n"
            "Mean E2EL (ms):                          725.00    \n"
            "Median E2EL (ms):                        725.00    \n"
            "P99.9 E2EL (ms):                         949.55    \n"
            "==================================================\n");
}

TEST(bench_report, the_result_json_has_vllms_keys) {
  const double percentiles[] = {50, 99};
  const auto outcomes = two_successes_and_a_failure();
  const bench_metrics m = compute_bench_metrics(outcomes, 2.0, percentiles);
  bench_run_info run;
  run.model_id = "org/some-model";
  run.date = "20250101-120000";
  run.num_prompts = 3;
  const auto j = nlohmann::json::parse(result_json(m, run, outcomes, false));
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["num_prompts"], 3);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_TRUE(j["max_concurrency"].is_null());
  EXPECT_EQ(j["total_input_tokens"], 30);
  EXPECT_EQ(j["total_output_tokens"], 13);
  EXPECT_DOUBLE_EQ(j["duration"].get<double>(), 2.0);
  EXPECT_EQ(j["errors"], nlohmann::json::array({"", "", "HTTP 500"}));
  for (const char* key : {"request_throughput", "output_throughput", "total_token_throughput", "mean_ttft_ms",
                          "median_ttft_ms", "std_ttft_ms", "p50_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms",
                          "mean_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_FALSE(j.contains("ttfts"));  // only with --save-detailed
  EXPECT_EQ(nlohmann::json::parse(result_json(m, run, outcomes, true))["output_lens"], nlohmann::json::array({5, 8, 0}));
  EXPECT_EQ(default_result_filename(run), "openai-infqps-some-model-20250101-120000.json");
  run.request_rate = 50;
  run.max_concurrency = 4;
  EXPECT_EQ(default_result_filename(run), "openai-50.0qps-concurrency4-some-model-20250101-120000.json");
}

TEST(bench_report, names_percentiles_as_python_prints_them) {
  EXPECT_EQ(percentile_word(99), "99");
  EXPECT_EQ(percentile_word(99.9), "99.9");
  EXPECT_EQ(percentile_word(50.0), "50");
}

} // namespace
} // namespace troupe
