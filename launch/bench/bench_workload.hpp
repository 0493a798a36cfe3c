#pragma once
// launch/bench/: the client side of `troupe bench serve` (workload, this file; SSE parsing, stream
// timings, statistics, report), beside its command and out of the engine's runtime. May include
// runtime/error.hpp and runtime/openai/ (Python-compatible float formatting for the report).
//
// What `troupe bench serve` sends and when: random token-id prompts with lengths around the asked ones
// (vLLM's random dataset), prompts that share a few prefixes (vLLM's prefix_repetition dataset), and
// request arrival times (vLLM's get_request). Deterministic for a seed.

#include <cstdint>
#include <random>
#include <vector>

namespace troupe {

struct random_workload_options {
  int64_t num_prompts = 1000;
  int64_t input_len = 1024;
  int64_t output_len = 128;
  double range_ratio = 0;      // lengths uniform over the integers in [floor(len*(1-r)), ceil(len*(1+r))]
  int64_t vocab_size = 256;    // token ids uniform in [0, vocab_size)
  uint64_t seed = 0;
};

struct bench_prompt {
  std::vector<int32_t> token_ids;
  int64_t output_len = 0;
};

// num_prompts prompts; every length is at least 1. Needs range_ratio in [0, 1) and positive sizes.
std::vector<bench_prompt> random_prompts(const random_workload_options& o);

// vLLM's prefix_repetition dataset: num_prefixes random prefixes of prefix_len tokens, each followed by
// num_prompts / num_prefixes (rounded down) random suffixes of suffix_len tokens, so that the prefixes hit a
// prefix cache; the num_prefixes x that many prompts shuffled. Needs num_prompts >= num_prefixes (else a
// user_error) and positive sizes.
struct prefix_repetition_options {
  int64_t num_prompts = 1000;
  int64_t prefix_len = 256;
  int64_t suffix_len = 256;
  int64_t num_prefixes = 10;
  int64_t output_len = 128;
  int64_t vocab_size = 256;  // token ids uniform in [0, vocab_size)
  uint64_t seed = 0;
};
std::vector<bench_prompt> prefix_repetition_prompts(const prefix_repetition_options& o);

// The gaps (s) between n successive arrivals at request_rate per second: gamma-distributed with shape
// `burstiness` and mean 1/request_rate (burstiness 1: exponential, a Poisson process; below 1 burstier,
// above 1 more even; infinite: constant). An infinite request_rate gives zeros.
std::vector<double> arrival_gaps(int64_t n, double request_rate, double burstiness, std::mt19937_64& rng);

// When each of n requests is sent (s from the start): the running sum of arrival_gaps, scaled, as vLLM
// does, so the last request is sent at exactly n / request_rate; the random draws' 1-2% drift in total
// time would otherwise change the throughput between seeds. An infinite rate sends all at 0.
std::vector<double> arrival_times(int64_t n, double request_rate, double burstiness, uint64_t seed);

} // namespace troupe
