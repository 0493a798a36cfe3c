#include "runtime/metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace troupe {
namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// Every expected text below is what Python's prometheus_client (generate_latest, _created series
// disabled) prints for the same registry.

TEST(metrics_registry, renders_counters_gauges_and_histograms_as_prometheus_client_does) {
  metrics_registry registry;
  registry.add_counter("requests", "Requests served.").labels({}).inc(2);
  auto& success = registry.add_counter("troupe:request_success", "Count of successfully processed requests.",
                                       {"model_name", "finished_reason"});
  success.labels({"m", "stop"}).inc(3);
  success.labels({"m", "length"}).inc();
  registry.add_gauge("troupe:num_requests_running", "Number of requests in model execution batches.", {"model_name"})
      .labels({"m"})
      .set(4);
  registry.add_gauge("temperature", "Degrees.").labels({}).set(-1.5);
  auto& latency = registry.add_histogram("troupe:latency_seconds", "Latency.", {0.1, 1, 2.5}, {"model_name"}).labels({"m"});
  for (double v : {0.05, 0.1, 2.0, 100.0}) latency.observe(v);
  registry.add_counter("troupe:unused", "Never used.", {"model_name"});

  EXPECT_EQ(registry.render(),
            "# HELP requests_total Requests served.\n"
            "# TYPE requests_total counter\n"
            "requests_total 2.0\n"
            "# HELP troupe:request_success_total Count of successfully processed requests.\n"
            "# TYPE troupe:request_success_total counter\n"
            "troupe:request_success_total{finished_reason=\"stop\",model_name=\"m\"} 3.0\n"
            "troupe:request_success_total{finished_reason=\"length\",model_name=\"m\"} 1.0\n"
            "# HELP troupe:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE troupe:num_requests_running gauge\n"
            "troupe:num_requests_running{model_name=\"m\"} 4.0\n"
            "# HELP temperature Degrees.\n"
            "# TYPE temperature gauge\n"
            "temperature -1.5\n"
            "# HELP troupe:latency_seconds Latency.\n"
            "# TYPE troupe:latency_seconds histogram\n"
            "troupe:latency_seconds_bucket{le=\"0.1\",model_name=\"m\"} 2.0\n"
            "troupe:latency_seconds_bucket{le=\"1.0\",model_name=\"m\"} 2.0\n"
            "troupe:latency_seconds_bucket{le=\"2.5\",model_name=\"m\"} 3.0\n"
            "troupe:latency_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 4.0\n"
            "troupe:latency_seconds_count{model_name=\"m\"} 4.0\n"
            "troupe:latency_seconds_sum{model_name=\"m\"} 102.15\n"
            "# HELP troupe:unused_total Never used.\n"
            "# TYPE troupe:unused_total counter\n");
}

TEST(metrics_registry, escapes_backslash_quote_and_newline_in_label_values_and_help) {
  metrics_registry registry;
  registry.add_gauge("escapes", "Help with a backslash \\ and a\nnewline and \"quotes\".", {"path"})
      .labels({"C:\\dir\\\"x\"\nend"})
      .set(1);
  EXPECT_EQ(registry.render(),
            "# HELP escapes Help with a backslash \\\\ and a\\nnewline and \"quotes\".\n"
            "# TYPE escapes gauge\n"
            "escapes{path=\"C:\\\\dir\\\\\\\"x\\\"\\nend\"} 1.0\n");
}

TEST(metrics_registry, an_unlabelled_family_shows_its_series_at_zero_from_the_start) {
  metrics_registry registry;
  registry.add_counter("c", "C.");
  registry.add_gauge("g", "G.");
  registry.add_histogram("h", "H.", {1});
  EXPECT_EQ(registry.render(),
            "# HELP c_total C.\n# TYPE c_total counter\nc_total 0.0\n"
            "# HELP g G.\n# TYPE g gauge\ng 0.0\n"
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1.0\"} 0.0\nh_bucket{le=\"+Inf\"} 0.0\nh_count 0.0\nh_sum 0.0\n");
}

TEST(metrics_registry, a_counter_named_with_total_is_registered_without_it) {
  metrics_registry registry;
  auto& family = registry.add_counter("x_total", "X.");
  EXPECT_EQ(family.name(), "x_total");
  EXPECT_EQ(registry.render(), "# HELP x_total X.\n# TYPE x_total counter\nx_total 0.0\n");
  EXPECT_THROW(registry.add_counter("x", "Again."), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("x_total", "Clash."), std::invalid_argument);
}

TEST(metrics_registry, labels_give_the_same_series_for_the_same_values) {
  metrics_registry registry;
  auto& family = registry.add_counter("c", "C.", {"a", "b"});
  counter& first = family.labels({"1", "2"});
  first.inc(5);
  EXPECT_EQ(&family.labels({"1", "2"}), &first);
  const std::vector<std::string> values{"1", "2"};
  EXPECT_EQ(&family.labels(values), &first);
  EXPECT_NE(&family.labels({"2", "1"}), &first);
  EXPECT_EQ(first.value(), 5.0);
}

TEST(metrics_registry, rejects_misuse_with_a_message) {
  metrics_registry registry;
  auto& family = registry.add_counter("c", "C.", {"a"});
  EXPECT_THROW(family.labels({}), std::invalid_argument);
  EXPECT_THROW(family.labels({"1", "2"}), std::invalid_argument);
  EXPECT_THROW(family.labels({"1"}).inc(-1), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("c", "Taken."), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("1abc", "Bad name."), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("a-b", "Bad name."), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("g1", "Bad label.", {"a:b"}), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("g2", "Reserved label.", {"__a"}), std::invalid_argument);
  EXPECT_THROW(registry.add_gauge("g3", "Twice.", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(registry.add_histogram("h1", "le is the buckets'.", {1}, {"le"}), std::invalid_argument);
  EXPECT_THROW(registry.add_histogram("h2", "No buckets.", {}), std::invalid_argument);
  EXPECT_THROW(registry.add_histogram("h3", "Not ascending.", {1, 1}), std::invalid_argument);
  EXPECT_THROW(registry.add_histogram("h4", "NaN.", {std::nan("")}), std::invalid_argument);
  EXPECT_NO_THROW(registry.add_gauge("g4", "Fine.", {"le"}));  // only histograms reserve le
}

TEST(histogram, counts_a_value_on_a_bound_into_that_bound_s_bucket) {
  metrics_registry registry;
  histogram& h = registry.add_histogram("h", "H.", {1, 2}).labels({});
  for (double v : {1.0, 2.0, 2.0000001, inf}) h.observe(v);
  h.observe(std::nan(""));  // dropped
  const histogram_data d = h.data();
  EXPECT_EQ(d.upper_bounds, (std::vector<double>{1, 2, inf}));
  EXPECT_EQ(d.counts, (std::vector<uint64_t>{1, 2, 4}));
  EXPECT_EQ(d.count(), 4u);
  EXPECT_EQ(d.sum, inf);
}

TEST(histogram, keeps_a_given_infinite_last_bound_without_adding_another) {
  metrics_registry registry;
  histogram& h = registry.add_histogram("h", "H.", {0.5, inf}).labels({});
  EXPECT_EQ(h.data().upper_bounds, (std::vector<double>{0.5, inf}));
}

TEST(prometheus_float, writes_numbers_as_python_repr_then_go_exponents_from_a_million) {
  const std::vector<std::pair<double, std::string>> cases{
      {0, "0.0"},
      {1, "1.0"},
      {0.1, "0.1"},
      {0.3, "0.3"},
      {1.0 / 3, "0.3333333333333333"},
      {1e-5, "1e-05"},
      {1.5e-5, "1.5e-05"},
      {1e-7, "1e-07"},
      {0.0001, "0.0001"},
      {7680, "7680.0"},
      {123456, "123456.0"},
      {1234567, "1.234567e+06"},
      {10000000, "1e+07"},
      {1e10, "1e+010"},
      {12345678901.5, "1.23456789015e+010"},
      {1e15, "1e+015"},
      {9007199254740992.0, "9.007199254740992e+015"},
      {1e16, "1e+16"},
      {1.25e17, "1.25e+17"},
      {1e22, "1e+22"},
      {-1234567, "-1234567.0"},
      {-1.5, "-1.5"},
      {-0.0, "-0.0"},
      {inf, "+Inf"},
      {-inf, "-Inf"},
      {std::nan(""), "NaN"},
  };
  for (const auto& [value, text] : cases) EXPECT_EQ(prometheus_float(value), text) << text;
}

TEST(escape_label_value, escapes_only_backslash_quote_and_newline) {
  EXPECT_EQ(escape_label_value("plain \t text"), "plain \t text");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escape_label_value("two\nlines"), "two\\nlines");
}

// Cumulative counts 10, 20, 40, 40 over bounds 1, 2, 4, +Inf.
histogram_data known_data() { return {{1, 2, 4, inf}, {10, 20, 40, 40}, 0}; }

TEST(histogram_quantile, interpolates_linearly_inside_the_bucket_holding_the_rank) {
  const histogram_data h = known_data();
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.25, h), 1.0);  // rank 10: the top of the first bucket
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.5, h), 2.0);   // rank 20
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.75, h), 3.0);  // rank 30: half way through (2, 4]
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.95, h), 3.8);  // rank 38
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.1, h), 0.4);   // the first bucket starts at 0
  EXPECT_DOUBLE_EQ(*histogram_quantile(0, h), 0.0);
}

TEST(histogram_quantile, answers_the_highest_finite_bound_for_a_rank_in_the_inf_bucket) {
  const histogram_data h{{1, 2, 4, inf}, {10, 20, 40, 50}, 0};
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.99, h), 4.0);
}

TEST(histogram_quantile, answers_the_first_bound_when_it_is_not_positive) {
  const histogram_data h{{0, 1, inf}, {5, 10, 10}, 0};
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.1, h), 0.0);
}

TEST(histogram_quantile, is_empty_without_observations_and_infinite_outside_zero_to_one) {
  EXPECT_EQ(histogram_quantile(0.5, histogram_data{{1, inf}, {0, 0}, 0}), std::nullopt);
  EXPECT_EQ(histogram_quantile(0.5, histogram_data{}), std::nullopt);
  EXPECT_EQ(histogram_quantile(std::nan(""), known_data()), std::nullopt);
  EXPECT_EQ(histogram_quantile(-0.1, known_data()), -inf);
  EXPECT_EQ(histogram_quantile(1.1, known_data()), inf);
}

TEST(histogram_quantile, reads_a_histogram_series) {
  metrics_registry registry;
  histogram& h = registry.add_histogram("h", "H.", {1, 2, 4}).labels({});
  for (int i = 0; i < 10; ++i) h.observe(0.5);
  for (int i = 0; i < 10; ++i) h.observe(1.5);
  for (int i = 0; i < 20; ++i) h.observe(3);
  EXPECT_DOUBLE_EQ(*histogram_quantile(0.75, h.data()), 3.0);
}

TEST(histogram_increase, subtracts_the_earlier_reading_bucket_by_bucket) {
  const histogram_data earlier{{1, 2, inf}, {1, 3, 4}, 10};
  const histogram_data later{{1, 2, inf}, {2, 6, 9}, 25};
  const histogram_data d = histogram_increase(later, earlier);
  EXPECT_EQ(d.upper_bounds, later.upper_bounds);
  EXPECT_EQ(d.counts, (std::vector<uint64_t>{1, 3, 5}));
  EXPECT_DOUBLE_EQ(d.sum, 15);
  EXPECT_EQ(d.count(), 5u);
}

TEST(histogram_increase, takes_an_earlier_reading_with_more_counts_or_other_bounds_as_empty) {
  const histogram_data later{{1, inf}, {2, 3}, 4};
  EXPECT_EQ(histogram_increase(later, histogram_data{{1, inf}, {3, 3}, 1}).counts, later.counts);  // a restart
  EXPECT_EQ(histogram_increase(later, histogram_data{{5, inf}, {1, 1}, 1}).counts, later.counts);
  EXPECT_EQ(histogram_increase(later, histogram_data{}).counts, later.counts);
}

TEST(metrics_registry, concurrent_updates_add_up_exactly) {
  metrics_registry registry;
  auto& counters = registry.add_counter("c", "C.", {"worker"});
  gauge& g = registry.add_gauge("g", "G.").labels({});
  histogram& h = registry.add_histogram("h", "H.", {1, 2}).labels({});
  constexpr int num_threads = 8;
  constexpr int num_rounds = 20000;

  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&, t] {
      counter& shared = counters.labels({"shared"});  // every thread creates or finds the same series
      counter& own = counters.labels({std::to_string(t)});
      for (int i = 0; i < num_rounds; ++i) {
        shared.inc();
        own.inc(2);
        g.inc();
        g.dec(0.5);
        h.observe(i % 3);  // 0, 1, 2: one per bucket below +Inf
        if (i % 5000 == 0) (void)registry.render();  // rendering while others write
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(counters.labels({"shared"}).value(), num_threads * num_rounds);
  for (int t = 0; t < num_threads; ++t) EXPECT_EQ(counters.labels({std::to_string(t)}).value(), 2.0 * num_rounds);
  EXPECT_EQ(g.value(), 0.5 * num_threads * num_rounds);
  // Each thread observed 0 and 1 (bucket le=1) 6667 times each and 2 (bucket le=2) 6666 times.
  const histogram_data d = h.data();
  EXPECT_EQ(d.counts, (std::vector<uint64_t>{8 * 13334, 8 * 20000, 8 * 20000}));
  EXPECT_EQ(d.sum, 8 * (6667 * 1 + 6666 * 2));
}

} // namespace
} // namespace troupe
