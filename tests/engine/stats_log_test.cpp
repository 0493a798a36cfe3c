// The periodic stats line, as vLLM's LoggingStatLogger writes it.

#include <gtest/gtest.h>

#include "runtime/engine/stats_log.hpp"

using namespace troupe;

TEST(stats_log, the_line_gives_the_intervals_throughput_the_queues_kv_use_and_the_lifetime_hit_rate) {
  metrics_snapshot before, now;
  before.num_prompt_tokens = 1000;
  before.num_generation_tokens = 50;
  now.num_prompt_tokens = 6120;
  now.num_generation_tokens = 1014;
  now.num_running = 3;
  now.num_waiting = 1;
  now.kv_cache_usage = 0.0123;
  now.num_prefix_cache_queries = 800;
  now.num_prefix_cache_hits = 320;
  const stats_line line = make_stats_line(before, now, 10.0);
  EXPECT_EQ(line.text,
            "Avg prompt throughput: 512.0 tokens/s, Avg generation throughput: 96.4 tokens/s, Running: 3 reqs, Waiting: "
            "1 reqs, GPU KV cache usage: 1.2%, Prefix cache hit rate: 40.0%");
  EXPECT_FALSE(line.idle);
}

TEST(stats_log, an_interval_with_nothing_running_waiting_or_computed_is_idle) {
  metrics_snapshot s;
  s.num_prompt_tokens = 7;
  s.kv_cache_usage = 0.5;  // blocks kept for the prefix cache
  const stats_line line = make_stats_line(s, s, 10.0);
  EXPECT_EQ(line.text,
            "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s, Running: 0 reqs, Waiting: "
            "0 reqs, GPU KV cache usage: 50.0%, Prefix cache hit rate: 0.0%");
  EXPECT_TRUE(line.idle);
  metrics_snapshot waiting = s;
  waiting.num_waiting = 1;
  EXPECT_FALSE(make_stats_line(s, waiting, 10.0).idle);
}

TEST(stats_log, snapshots_carry_the_token_and_prefix_cache_totals_the_line_needs) {
  engine_metrics m({.model_name = "m"});
  m.on_step({.num_prompt_tokens = 100, .num_generation_tokens = 3, .num_prefix_cache_queries = 64, .num_prefix_cache_hits = 32});
  m.on_step({.num_generation_tokens = 2});
  const metrics_snapshot s = m.snapshot();
  EXPECT_EQ(s.num_prompt_tokens, 100u);
  EXPECT_EQ(s.num_generation_tokens, 5u);
  EXPECT_EQ(s.num_prefix_cache_queries, 64u);
  EXPECT_EQ(s.num_prefix_cache_hits, 32u);
}
