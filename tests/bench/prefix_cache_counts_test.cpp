// The prefix-cache hit rate `troupe bench serve` reports, from the counters of Prometheus /metrics texts.

#include "launch/bench/prefix_cache_counts.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(parse_prefix_cache_counts, sums_the_counters_over_every_series_and_prefix_and_skips_comments_and_others) {
  const auto c = parse_prefix_cache_counts(
      "# HELP troupe:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.\n"
      "# TYPE troupe:prefix_cache_queries counter\n"
      "troupe:prefix_cache_queries_total{model_name=\"a b}\"} 100\n"
      "troupe:prefix_cache_queries_total{model_name=\"c\"} 50\n"
      "troupe:prefix_cache_hits_total{model_name=\"a b}\"} 60\n"
      "vllm:prefix_cache_hits_total{model_name=\"c\"} 15\n"
      "vllm:gpu_prefix_cache_hits_total{model_name=\"c\"} 1000\n"
      "troupe:num_requests_running{model_name=\"c\"} 3\n");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->queries, 150);
  EXPECT_EQ(c->hits, 75);
}

TEST(parse_prefix_cache_counts, a_server_without_the_counters_has_none) {
  EXPECT_FALSE(parse_prefix_cache_counts("troupe:num_requests_running{model_name=\"c\"} 3\n").has_value());
  EXPECT_FALSE(parse_prefix_cache_counts("").has_value());
}

TEST(prefix_cache_hit_rate, is_the_hits_over_the_queries_between_two_readings) {
  EXPECT_DOUBLE_EQ(*prefix_cache_hit_rate({100, 40}, {300, 190}), 0.75);
  EXPECT_FALSE(prefix_cache_hit_rate({100, 40}, {100, 40}).has_value());
}

} // namespace
} // namespace troupe
