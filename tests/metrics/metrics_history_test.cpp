#include "runtime/metrics/metrics_history.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

using values = std::vector<double>;

TEST(metrics_history, returns_the_samples_oldest_first_with_their_times_and_one_list_per_column) {
  metrics_history h({"running", "waiting"}, 4);
  h.add(1000, values{1, 0});
  h.add(6000, values{2, 3});
  const metrics_history::range r = h.all();
  EXPECT_EQ(r.unix_ms, (std::vector<int64_t>{1000, 6000}));
  EXPECT_EQ(r.values, (std::vector<values>{{1, 2}, {0, 3}}));
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.latest_ms(), 6000);
}

TEST(metrics_history, drops_the_oldest_sample_once_full) {
  metrics_history h({"x"}, 3);
  for (int i = 1; i <= 5; ++i) h.add(i * 1000, values{double(i)});
  const metrics_history::range r = h.all();
  EXPECT_EQ(r.unix_ms, (std::vector<int64_t>{3000, 4000, 5000}));
  EXPECT_EQ(r.values[0], (values{3, 4, 5}));
  EXPECT_EQ(h.size(), 3u);
}

TEST(metrics_history, since_returns_only_samples_newer_than_the_time_given) {
  metrics_history h({"x"}, 8);
  for (int i = 1; i <= 4; ++i) h.add(i * 5000, values{double(i)});
  const metrics_history::range r = h.since(10000);
  EXPECT_EQ(r.unix_ms, (std::vector<int64_t>{15000, 20000}));
  EXPECT_EQ(r.values[0], (values{3, 4}));
  EXPECT_TRUE(h.since(20000).unix_ms.empty());
  EXPECT_EQ(h.since(20000).values.size(), 1u);  // still one (empty) list per column
}

TEST(metrics_history, keeps_nan_as_no_value) {
  metrics_history h({"ttft_p95_s"}, 2);
  h.add(1, values{std::numeric_limits<double>::quiet_NaN()});
  EXPECT_TRUE(std::isnan(h.all().values[0][0]));
}

TEST(metrics_history, has_no_latest_time_before_the_first_sample) {
  metrics_history h({"x"}, 2);
  EXPECT_EQ(h.latest_ms(), std::nullopt);
  EXPECT_TRUE(h.all().unix_ms.empty());
}

TEST(metrics_history, refuses_a_sample_of_the_wrong_width_or_older_than_the_newest) {
  metrics_history h({"a", "b"}, 2);
  EXPECT_THROW(h.add(1, values{1}), std::invalid_argument);
  h.add(5000, values{1, 2});
  EXPECT_THROW(h.add(4999, values{1, 2}), std::invalid_argument);
  h.add(5000, values{3, 4});  // the same millisecond is fine
  EXPECT_EQ(h.size(), 2u);
}

TEST(metrics_history, refuses_no_columns_a_repeated_column_or_no_capacity) {
  EXPECT_THROW(metrics_history({}, 2), std::invalid_argument);
  EXPECT_THROW(metrics_history({"a", "a"}, 2), std::invalid_argument);
  EXPECT_THROW(metrics_history({"a"}, 0), std::invalid_argument);
}

} // namespace
} // namespace troupe
