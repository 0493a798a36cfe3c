#pragma once
// How `troupe bench serve` prints and saves its figures: the text block and the JSON keys of vLLM's
// benchmark_serving (`vllm bench serve`), so scripts and eyes used to vLLM read them unchanged.

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "launch/bench/bench_metrics.hpp"

namespace troupe {

// The run's settings as the report and the JSON name them.
struct bench_run_info {
  std::string backend = "openai";  // openai | openai-chat
  std::string model_id;
  std::string date;                // "%Y%m%d-%H%M%S", local time
  int64_t num_prompts = 0;
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  int32_t max_concurrency = 0;     // 0: no limit (vLLM's None)
  std::vector<std::string> percentile_metrics = {"ttft", "tpot", "itl", "e2el"};
};

// The "Serving Benchmark Result" block, 50 columns wide, lines as Python's "{:<40} {:<10}" pads them.
std::string format_report(const bench_metrics& m, const bench_run_info& run);

// The result as vLLM's --save-result writes it (one line of JSON, keys in vLLM's order). detailed adds
// the per-request lists (input_lens, output_lens, ttfts, itls, latencies, start_times, generated_texts);
// errors are always there, "" for each request that succeeded.
std::string result_json(const bench_metrics& m, const bench_run_info& run, std::span<const request_outcome> outcomes,
                        bool detailed);

// vLLM's default result file name: "{backend}-{rate}qps[-concurrency{n}]-{model's last path part}-{date}.json".
std::string default_result_filename(const bench_run_info& run);

// How a percentile is named in keys and labels: "99" for 99, "99.9" for 99.9 (Python's str of the float).
std::string percentile_word(double p);

} // namespace troupe
