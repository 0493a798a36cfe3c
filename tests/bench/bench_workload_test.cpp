// What `troupe bench serve` sends and when: random prompts and Poisson/gamma arrivals, fixed by the seed.

#include "launch/bench/bench_workload.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>

#include "runtime/error.hpp"

namespace troupe {
namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

struct moments {
  double mean = 0, variance = 0;
};

moments moments_of(const std::vector<double>& v) {
  moments m;
  m.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  for (double x : v) m.variance += (x - m.mean) * (x - m.mean);
  m.variance /= static_cast<double>(v.size());
  return m;
}

TEST(arrival_gaps, poisson_gaps_average_one_over_the_rate_with_exponential_variance) {
  std::mt19937_64 rng(1);
  const moments m = moments_of(arrival_gaps(200000, 50, 1.0, rng));
  EXPECT_NEAR(m.mean, 1.0 / 50, 0.01 / 50);                  // within 1%
  EXPECT_NEAR(m.variance, 1.0 / (50.0 * 50), 0.03 / 2500);   // exponential: 1 / rate^2
}

TEST(arrival_gaps, burstiness_keeps_the_mean_and_divides_the_variance) {
  for (double burstiness : {0.25, 4.0}) {
    std::mt19937_64 rng(2);
    const moments m = moments_of(arrival_gaps(200000, 10, burstiness, rng));
    EXPECT_NEAR(m.mean, 0.1, 0.002) << burstiness;
    EXPECT_NEAR(m.variance, 0.01 / burstiness, 0.0005 / burstiness) << burstiness;  // gamma: k * theta^2
  }
}

TEST(arrival_gaps, an_infinite_rate_sends_at_once_and_infinite_burstiness_evenly) {
  std::mt19937_64 rng(3);
  EXPECT_EQ(arrival_gaps(3, inf, 1.0, rng), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(arrival_gaps(3, 4, inf, rng), (std::vector<double>{0.25, 0.25, 0.25}));
}

TEST(arrival_times, are_the_same_for_a_seed_and_end_at_n_over_the_rate) {
  const auto a = arrival_times(100, 20, 1.0, 7), b = arrival_times(100, 20, 1.0, 7), c = arrival_times(100, 20, 1.0, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 100u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_GT(a.front(), 0);
  EXPECT_NEAR(a.back(), 100.0 / 20, 1e-9);  // vLLM scales the sum so the run lasts num_prompts / rate
  EXPECT_EQ(arrival_times(4, inf, 1.0, 7), (std::vector<double>{0, 0, 0, 0}));
}

TEST(random_prompts, have_the_asked_lengths_and_ids_inside_the_vocabulary) {
  random_workload_options o;
  o.num_prompts = 50;
  o.input_len = 16;
  o.output_len = 8;
  o.vocab_size = 100;
  for (const auto& p : random_prompts(o)) {
    EXPECT_EQ(p.token_ids.size(), 16u);
    EXPECT_EQ(p.output_len, 8);
    for (int32_t t : p.token_ids) {
      EXPECT_GE(t, 0);
      EXPECT_LT(t, 100);
    }
  }
}

TEST(random_prompts, a_range_ratio_spreads_lengths_over_floor_to_ceil_and_the_seed_fixes_them) {
  random_workload_options o;
  o.num_prompts = 400;
  o.input_len = 10;
  o.output_len = 3;
  o.range_ratio = 0.5;
  const auto prompts = random_prompts(o);
  int64_t min_in = 1 << 30, max_in = 0, min_out = 1 << 30, max_out = 0;
  for (const auto& p : prompts) {
    min_in = std::min<int64_t>(min_in, static_cast<int64_t>(p.token_ids.size()));
    max_in = std::max<int64_t>(max_in, static_cast<int64_t>(p.token_ids.size()));
    min_out = std::min(min_out, p.output_len);
    max_out = std::max(max_out, p.output_len);
  }
  EXPECT_EQ(min_in, 5);
  EXPECT_EQ(max_in, 15);
  EXPECT_EQ(min_out, 1);  // floor(1.5)
  EXPECT_EQ(max_out, 5);  // ceil(4.5)
  EXPECT_EQ(random_prompts(o)[7].token_ids, prompts[7].token_ids);
  o.seed = 1;
  EXPECT_NE(random_prompts(o)[7].token_ids, prompts[7].token_ids);
}

TEST(prefix_repetition_prompts, each_prompt_is_one_of_the_prefixes_and_a_suffix_of_its_own_each_prefix_as_often) {
  prefix_repetition_options o;
  o.num_prompts = 14;  // 3 prefixes x 4 prompts; the 2 left over are not sent, as vLLM's dataset drops them
  o.prefix_len = 5;
  o.suffix_len = 3;
  o.num_prefixes = 3;
  o.output_len = 7;
  o.vocab_size = 1000;
  const auto prompts = prefix_repetition_prompts(o);
  ASSERT_EQ(prompts.size(), 12u);
  std::map<std::vector<int32_t>, int> uses;
  std::set<std::vector<int32_t>> suffixes;
  for (const auto& p : prompts) {
    ASSERT_EQ(p.token_ids.size(), 8u);
    EXPECT_EQ(p.output_len, 7);
    ++uses[std::vector<int32_t>(p.token_ids.begin(), p.token_ids.begin() + 5)];
    suffixes.insert(std::vector<int32_t>(p.token_ids.begin() + 5, p.token_ids.end()));
  }
  EXPECT_EQ(uses.size(), 3u);
  for (const auto& [prefix, n] : uses) EXPECT_EQ(n, 4);
  EXPECT_EQ(suffixes.size(), 12u);  // 1000^3 suffixes: twelve draws do not repeat
}

TEST(prefix_repetition_prompts, are_shuffled_and_fixed_by_the_seed) {
  prefix_repetition_options o;
  o.num_prompts = 40;
  o.prefix_len = 4;
  o.suffix_len = 2;
  o.num_prefixes = 4;
  o.vocab_size = 1000;
  const auto prompts = prefix_repetition_prompts(o);
  // Built prefix by prefix, then shuffled: the first ten do not all share the first prompt's prefix.
  auto prefix_of = [](const bench_prompt& p) { return std::vector<int32_t>(p.token_ids.begin(), p.token_ids.begin() + 4); };
  int same_as_first = 0;
  for (size_t i = 0; i < 10; ++i) same_as_first += prefix_of(prompts[i]) == prefix_of(prompts[0]);
  EXPECT_LT(same_as_first, 10);
  EXPECT_EQ(prefix_repetition_prompts(o)[9].token_ids, prompts[9].token_ids);
  o.seed = 1;
  EXPECT_NE(prefix_repetition_prompts(o)[9].token_ids, prompts[9].token_ids);
}

TEST(prefix_repetition_prompts, fewer_prompts_than_prefixes_is_an_error_naming_both_flags) {
  prefix_repetition_options o;
  o.num_prompts = 3;
  o.num_prefixes = 8;
  try {
    prefix_repetition_prompts(o);
    FAIL() << "no error";
  } catch (const user_error& e) {
    EXPECT_NE(std::string(e.what()).find("--num-prompts (3) must be at least --prefix-repetition-num-prefixes (8)"),
              std::string::npos)
        << e.what();
  }
}

} // namespace
} // namespace troupe
