#include "launch/bench/bench_workload.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/error.hpp"

namespace troupe {

namespace {

// Prompts and arrivals draw from separate streams, so changing --request-rate keeps the prompts.
constexpr uint64_t arrival_stream = 0x9e3779b97f4a7c15ull;

std::uniform_int_distribution<int64_t> length_around(int64_t len, double range_ratio) {
  const auto low = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(len) * (1 - range_ratio))));
  const auto high = std::max<int64_t>(low, static_cast<int64_t>(std::ceil(static_cast<double>(len) * (1 + range_ratio))));
  return std::uniform_int_distribution<int64_t>(low, high);
}

} // namespace

std::vector<bench_prompt> random_prompts(const random_workload_options& o) {
  std::mt19937_64 rng(o.seed);
  auto input_len = length_around(o.input_len, o.range_ratio);
  auto output_len = length_around(o.output_len, o.range_ratio);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(o.vocab_size - 1));
  std::vector<bench_prompt> prompts(static_cast<size_t>(o.num_prompts));
  for (auto& p : prompts) {
    p.token_ids.resize(static_cast<size_t>(input_len(rng)));
    p.output_len = output_len(rng);
    for (auto& t : p.token_ids) t = token(rng);
  }
  return prompts;
}

std::vector<bench_prompt> prefix_repetition_prompts(const prefix_repetition_options& o) {
  const int64_t per_prefix = o.num_prompts / o.num_prefixes;
  if (per_prefix == 0)
    throw user_error("--num-prompts (" + std::to_string(o.num_prompts) + ") must be at least --prefix-repetition-num-prefixes (" +
                     std::to_string(o.num_prefixes) + "): each prefix is shared by num-prompts / num-prefixes prompts");
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(o.vocab_size - 1));
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& t : ids) t = token(rng);
    return ids;
  };
  std::vector<bench_prompt> prompts;
  prompts.reserve(static_cast<size_t>(per_prefix * o.num_prefixes));
  for (int64_t p = 0; p < o.num_prefixes; ++p) {
    const std::vector<int32_t> prefix = random_tokens(o.prefix_len);
    for (int64_t s = 0; s < per_prefix; ++s) {
      bench_prompt prompt{prefix, o.output_len};
      const std::vector<int32_t> suffix = random_tokens(o.suffix_len);
      prompt.token_ids.insert(prompt.token_ids.end(), suffix.begin(), suffix.end());
      prompts.push_back(std::move(prompt));
    }
  }
  std::shuffle(prompts.begin(), prompts.end(), rng);
  return prompts;
}

std::vector<double> arrival_gaps(int64_t n, double request_rate, double burstiness, std::mt19937_64& rng) {
  std::vector<double> gaps(static_cast<size_t>(n), 0.0);
  if (std::isinf(request_rate)) return gaps;
  if (std::isinf(burstiness)) {
    std::fill(gaps.begin(), gaps.end(), 1.0 / request_rate);
    return gaps;
  }
  // Shape k = burstiness, scale theta = 1 / (rate * k): mean k * theta = 1 / rate.
  std::gamma_distribution<double> gap(burstiness, 1.0 / (request_rate * burstiness));
  for (auto& g : gaps) g = gap(rng);
  return gaps;
}

std::vector<double> arrival_times(int64_t n, double request_rate, double burstiness, uint64_t seed) {
  std::mt19937_64 rng(seed ^ arrival_stream);
  std::vector<double> times = arrival_gaps(n, request_rate, burstiness, rng);
  for (size_t i = 1; i < times.size(); ++i) times[i] += times[i - 1];
  if (!times.empty() && times.back() > 0) {
    const double scale = static_cast<double>(n) / request_rate / times.back();
    for (auto& t : times) t *= scale;
  }
  return times;
}

} // namespace troupe
