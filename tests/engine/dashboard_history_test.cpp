#include "runtime/engine/dashboard_history.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

namespace troupe {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

const clock::time_point t0 = clock::time_point{} + 1000h;

// Metrics on a clock the test moves by hand.
struct fixture {
  clock::time_point now = t0;
  engine_metrics m{engine_metrics_config{"m", 100, 10s, [this] { return now; }}};
};

// The value of one column of a sample.
double column(const std::vector<double>& sample, const metrics_snapshot& s, const std::string& name) {
  const std::vector<std::string> columns = dashboard_columns(s);
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return sample.at(i);
  ADD_FAILURE() << "no column " << name;
  return 0;
}

TEST(dashboard_columns, name_the_figures_then_one_column_per_batch_size_bucket) {
  fixture f;
  const std::vector<std::string> columns = dashboard_columns(f.m.snapshot());
  EXPECT_EQ(columns, (std::vector<std::string>{
                         "ttft_p50_s", "ttft_p95_s", "itl_p50_s", "itl_p95_s", "tokens_in_per_s", "tokens_out_per_s",
                         "requests_per_s", "running", "waiting", "kv_cache_usage", "batch_size_mean",
                         "preemptions_per_s", "rejected_per_s", "preemptions_total", "rejected_total",
                         "steps_batch_le_1", "steps_batch_le_2", "steps_batch_le_4", "steps_batch_le_8",
                         "steps_batch_le_16", "steps_batch_le_32", "steps_batch_le_64", "steps_batch_le_128",
                         "steps_batch_le_256", "steps_batch_le_512", "steps_batch_le_1024", "steps_batch_le_inf"}));
}

TEST(dashboard_sample, covers_only_what_happened_between_the_two_snapshots) {
  fixture f;
  // Before the interval: a slow first token and a big batch that the sample must not see.
  const std::vector<double> slow{5.0};
  f.m.on_step({.num_seqs = 100, .num_prompt_tokens = 1000, .time_to_first_token_s = slow});
  const metrics_snapshot before = f.m.snapshot();

  const std::vector<double> ttft{0.03, 0.05, 0.07, 0.09};
  const std::vector<double> itl{0.02, 0.02, 0.02, 0.2};
  f.m.on_step({.num_running = 4, .num_waiting = 6, .kv_cache_usage = 0.5, .num_seqs = 4, .num_prompt_tokens = 100,
               .num_generation_tokens = 4, .num_preemptions = 2, .time_to_first_token_s = ttft});
  f.m.on_step({.num_running = 8, .num_waiting = 2, .kv_cache_usage = 0.75, .num_seqs = 8, .num_generation_tokens = 16,
               .inter_token_latency_s = itl});
  f.m.on_request_finished({.arrival = t0, .finished = t0, .outcome = request_outcome::stop});
  f.m.on_rejected(reject_reason::queue_full);
  const metrics_snapshot after = f.m.snapshot();

  const std::vector<double> s = dashboard_sample(before, after, 5.0);
  EXPECT_NEAR(column(s, after, "ttft_p50_s"), 0.06, 1e-12);   // rank 2 of 4: the top of (0.04, 0.06]
  EXPECT_NEAR(column(s, after, "ttft_p95_s"), 0.096, 1e-12);  // rank 3.8: 80% into (0.08, 0.1]
  EXPECT_NEAR(column(s, after, "itl_p50_s"), 0.02, 1e-12);
  EXPECT_NEAR(column(s, after, "itl_p95_s"), 0.19, 1e-12);
  EXPECT_DOUBLE_EQ(column(s, after, "tokens_in_per_s"), 20.0);   // 100 prompt tokens in 5 s
  EXPECT_DOUBLE_EQ(column(s, after, "tokens_out_per_s"), 4.0);   // 20 generated in 5 s
  EXPECT_DOUBLE_EQ(column(s, after, "requests_per_s"), 0.2);
  EXPECT_DOUBLE_EQ(column(s, after, "running"), 8);
  EXPECT_DOUBLE_EQ(column(s, after, "waiting"), 2);
  EXPECT_DOUBLE_EQ(column(s, after, "kv_cache_usage"), 0.75);
  EXPECT_DOUBLE_EQ(column(s, after, "batch_size_mean"), 6.0);  // steps of 4 and 8
  EXPECT_DOUBLE_EQ(column(s, after, "preemptions_per_s"), 0.4);
  EXPECT_DOUBLE_EQ(column(s, after, "rejected_per_s"), 0.2);
  EXPECT_DOUBLE_EQ(column(s, after, "preemptions_total"), 2);
  EXPECT_DOUBLE_EQ(column(s, after, "rejected_total"), 1);
  EXPECT_DOUBLE_EQ(column(s, after, "steps_batch_le_4"), 1);
  EXPECT_DOUBLE_EQ(column(s, after, "steps_batch_le_8"), 1);
  EXPECT_DOUBLE_EQ(column(s, after, "steps_batch_le_128"), 0);  // the step of 100 came before
}

TEST(dashboard_sample, has_no_quantile_without_observations_and_no_rate_without_time) {
  fixture f;
  const metrics_snapshot s0 = f.m.snapshot();
  const std::vector<double> idle = dashboard_sample(s0, s0, 5.0);
  EXPECT_TRUE(std::isnan(column(idle, s0, "ttft_p95_s")));
  EXPECT_TRUE(std::isnan(column(idle, s0, "batch_size_mean")));
  EXPECT_DOUBLE_EQ(column(idle, s0, "tokens_out_per_s"), 0.0);
  EXPECT_TRUE(std::isnan(column(dashboard_sample(s0, s0, 0.0), s0, "tokens_out_per_s")));
}

TEST(dashboard_recorder, adds_one_sample_per_record_timed_by_the_wall_clock_it_is_given) {
  fixture f;
  dashboard_recorder r(f.m.snapshot(), 1'000'000, 720);
  f.m.on_step({.num_generation_tokens = 50});
  r.record(1'005'000, f.m.snapshot());
  f.m.on_step({.num_generation_tokens = 10});
  r.record(1'010'000, f.m.snapshot());
  const metrics_history::range h = r.history().all();
  EXPECT_EQ(h.unix_ms, (std::vector<int64_t>{1'005'000, 1'010'000}));
  const std::vector<std::string>& columns = r.history().columns();
  const size_t out = static_cast<size_t>(std::find(columns.begin(), columns.end(), "tokens_out_per_s") - columns.begin());
  EXPECT_EQ(h.values[out], (std::vector<double>{10.0, 2.0}));
}

TEST(dashboard_recorder, records_a_clock_set_back_at_the_previous_time_without_rates) {
  fixture f;
  dashboard_recorder r(f.m.snapshot(), 1'000'000, 4);
  r.record(990'000, f.m.snapshot());
  const metrics_history::range h = r.history().all();
  EXPECT_EQ(h.unix_ms, (std::vector<int64_t>{1'000'000}));
  EXPECT_TRUE(std::isnan(h.values[4][0]));  // tokens_in_per_s
  EXPECT_DOUBLE_EQ(h.values[7][0], 0.0);    // running
}

TEST(dashboard_recorder, keeps_only_the_columns_it_is_given_in_their_order) {
  fixture f;
  dashboard_recorder r(f.m.snapshot(), 1'000'000, 4, {"running", "tokens_out_per_s"});
  EXPECT_EQ(r.history().columns(), (std::vector<std::string>{"running", "tokens_out_per_s"}));
  f.m.on_step({.num_running = 3, .num_generation_tokens = 20});
  r.record(1'002'000, f.m.snapshot());
  const metrics_history::range h = r.history().all();
  EXPECT_EQ(h.values, (std::vector<std::vector<double>>{{3.0}, {10.0}}));
  EXPECT_THROW(dashboard_recorder(f.m.snapshot(), 0, 4, {"running", "speed"}), std::invalid_argument);
}

TEST(dashboard_recorder, a_skipped_time_leaves_no_sample_and_the_next_covers_only_what_follows) {
  fixture f;
  dashboard_recorder r(f.m.snapshot(), 1'000'000, 4, {"tokens_out_per_s"});
  f.m.on_step({.num_generation_tokens = 500});  // while out of rotation: not in any sample
  r.skip(1'010'000, f.m.snapshot());
  EXPECT_EQ(r.history().size(), 0u);
  f.m.on_step({.num_generation_tokens = 30});
  r.record(1'013'000, f.m.snapshot());
  const metrics_history::range h = r.history().all();
  EXPECT_EQ(h.unix_ms, (std::vector<int64_t>{1'013'000}));
  EXPECT_EQ(h.values[0], (std::vector<double>{10.0}));  // 30 tokens over the 3 s since the skip
}

} // namespace
} // namespace troupe
