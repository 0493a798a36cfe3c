#pragma once
// The figures `troupe bench serve` reports, computed from the requests' outcomes as vLLM's
// benchmark_serving computes them (calculate_metrics), so the two tools' numbers compare:
//   - TTFT, E2EL: one value per successful request; ITL: every gap of every successful request;
//   - TPOT: (latency - TTFT) / (output tokens - 1), for successful requests with more than one token;
//   - mean, median, standard deviation (population, ddof=0) and percentiles as numpy computes them;
//     a metric with no values reports 0 everywhere (vLLM's `np.mean(values or 0)`).
//   - peak output tokens/s: token chunks counted into one-second buckets from the first request's start;
//     peak concurrent requests: the most requests between their start and their end at any instant.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "launch/bench/bench_stream.hpp"

namespace troupe {

// numpy.percentile(values, p) with its default method ("linear"): the sorted values' virtual index
// (n - 1) * p / 100, interpolated between its two neighbours. values need not be sorted; p in [0, 100].
// Empty values: 0.
double numpy_percentile(std::span<const double> values, double p);

// numpy.median: the middle value, or the mean of the two middle values. Empty values: 0.
double numpy_median(std::span<const double> values);

// Summary of one latency metric, in milliseconds.
struct latency_summary {
  double mean_ms = 0, median_ms = 0, std_ms = 0;
  std::vector<std::pair<double, double>> percentiles_ms;  // (p, value)
};

// Summarizes values given in seconds.
latency_summary summarize_latency(std::span<const double> seconds, std::span<const double> percentiles);

struct bench_metrics {
  int64_t completed = 0, failed = 0;
  int64_t total_input = 0, total_output = 0;  // tokens of the successful requests
  double duration_s = 0;
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
  double max_output_tokens_per_s = 0;
  int64_t max_concurrent_requests = 0;
  latency_summary ttft, tpot, itl, e2el;
  std::vector<int64_t> output_lens;  // per request, 0 for a failed one
};

// The figures of a run that took duration_s (> 0) seconds; percentiles in (0, 100].
bench_metrics compute_bench_metrics(std::span<const request_outcome> outcomes, double duration_s,
                                    std::span<const double> percentiles);

} // namespace troupe
