// The router's per-worker dashboard histories: samples only while a worker is in rotation, each covering
// only time in rotation, and its state in words.

#include "runtime/router/worker_dashboards.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace troupe {
namespace {

std::vector<double> column(const metrics_history& h, const std::string& name) {
  const auto& c = h.columns();
  const size_t i = static_cast<size_t>(std::find(c.begin(), c.end(), name) - c.begin());
  return h.all().values.at(i);
}

TEST(worker_dashboards, each_worker_keeps_a_few_columns_of_what_the_router_saw_of_it) {
  worker_dashboards d({.model_name = "m"}, {"http://a:1", "http://b:1"});
  EXPECT_EQ(d.history(0), nullptr);  // not started
  d.start(1'000'000, 16);
  EXPECT_EQ(d.history(0)->columns(), (std::vector<std::string>{"ttft_p95_s", "itl_p95_s", "tokens_in_per_s", "tokens_out_per_s",
                                                                "requests_per_s", "running", "waiting", "kv_cache_usage"}));
  EXPECT_EQ(d.name(1), "http://b:1");
  EXPECT_EQ(d.size(), 2u);
}

TEST(worker_dashboards, a_worker_out_of_rotation_gets_no_sample_and_says_why) {
  worker_dashboards d({.model_name = "m"}, {"http://a:1", "http://b:1"});
  d.start(1'000'000, 16);
  EXPECT_EQ(d.state(0), "out of rotation: not checked yet");
  d.set_state(0, true, "");
  d.set_state(1, false, "its /health did not answer 200 within 1 s");
  d.metrics(0).on_tokens(40, 8, {});
  d.metrics(0).on_occupancy(3, 1, 0.25);
  d.metrics(1).on_tokens(100, 100, {});  // while out: in no sample
  d.record(1'002'000);
  EXPECT_EQ(d.state(0), "in rotation");
  EXPECT_EQ(d.state(1), "out of rotation: its /health did not answer 200 within 1 s");
  EXPECT_EQ(d.history(0)->all().unix_ms, (std::vector<int64_t>{1'002'000}));
  EXPECT_EQ(column(*d.history(0), "tokens_in_per_s"), (std::vector<double>{20}));
  EXPECT_EQ(column(*d.history(0), "tokens_out_per_s"), (std::vector<double>{4}));
  EXPECT_EQ(column(*d.history(0), "running"), (std::vector<double>{3}));
  EXPECT_EQ(column(*d.history(0), "kv_cache_usage"), (std::vector<double>{0.25}));
  EXPECT_EQ(d.history(1)->size(), 0u);

  // Back in rotation: the next sample covers the 2 s since the last one, not the time it was out.
  d.set_state(1, true, "");
  d.metrics(1).on_tokens(0, 6, {});
  d.record(1'004'000);
  EXPECT_EQ(d.history(1)->all().unix_ms, (std::vector<int64_t>{1'004'000}));
  EXPECT_EQ(column(*d.history(1), "tokens_out_per_s"), (std::vector<double>{3}));
  EXPECT_EQ(d.history(0)->size(), 2u);
}

} // namespace
} // namespace troupe
