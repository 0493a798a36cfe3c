// The request-rate sweep of `troupe bench serve --sweep`: its ladder, its knee and its report, driven by
// synthetic servers (each a function from the offered rate to the figures a step would measure).

#include "launch/bench/bench_sweep.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe {
namespace {

// A server that serves `per_request` total tokens (a fifth of them output) per request up to `max_rate`
// requests/s, answers the first token in 100 ms while the rate is at most `slo_rate` and in 3 s above it,
// and fails 2 of 10 requests above `fail_rate`.
struct fake_server {
  double slo_rate = 1e9, max_rate = 1e9, fail_rate = 1e9;
  double per_request = 100;

  sweep_step operator()(double rate) const {
    sweep_step s;
    s.request_rate = rate;
    s.completed = rate > fail_rate ? 8 : 10;
    s.failed = 10 - s.completed;
    s.duration_s = 10 / rate;
    s.ttft_p50_ms = rate <= slo_rate ? 50 : 2000;
    s.ttft_p95_ms = rate <= slo_rate ? 100 : 3000;
    s.itl_p50_ms = 10;
    s.itl_p95_ms = 20;
    s.total_tokens_per_s = per_request * std::min(rate, max_rate);
    s.output_tokens_per_s = s.total_tokens_per_s / 5;
    s.input_tokens_per_s = s.total_tokens_per_s - s.output_tokens_per_s;
    return s;
  }
};

sweep_options slo_1s(double start_rate) {
  sweep_options o;
  o.start_rate = start_rate;
  o.factor = 2;
  o.refine_steps = 2;
  o.ttft_slo_ms = 1000;
  return o;
}

// Runs the sweep to its end; returns the rates in the order they ran.
std::vector<double> run(rate_sweep& sweep, const fake_server& server) {
  std::vector<double> rates;
  while (const auto rate = sweep.next_rate()) {
    rates.push_back(*rate);
    sweep.record(server(*rate));
  }
  return rates;
}

TEST(rate_sweep, doubles_the_rate_until_ttft_crosses_the_slo_then_halves_the_gap_twice) {
  rate_sweep sweep(slo_1s(1));
  EXPECT_EQ(run(sweep, {.slo_rate = 5}), (std::vector<double>{1, 2, 4, 8, 6, 5}));
  EXPECT_EQ(sweep.verdicts(), (std::vector<step_verdict>{step_verdict::holds, step_verdict::holds, step_verdict::holds,
                                                          step_verdict::slo_crossed, step_verdict::slo_crossed, step_verdict::holds}));
  const sweep_summary s = sweep.summary();
  ASSERT_TRUE(s.knee.has_value());
  EXPECT_EQ(*s.knee, 5u);
  EXPECT_EQ(sweep.steps()[*s.knee].request_rate, 5);
  EXPECT_EQ(s.end, sweep_end::bracketed);
  EXPECT_EQ(s.reason, "5.00 req/s held and 6.00 req/s did not (TTFT p95 3000.0 ms above the SLO of 1000 ms)");
  EXPECT_EQ(sweep.by_rate(), (std::vector<size_t>{0, 1, 2, 5, 4, 3}));
}

TEST(rate_sweep, stops_where_the_throughput_stops_growing_and_puts_the_knee_below_it) {
  rate_sweep sweep(slo_1s(1));
  // 100, 200, 300 and again 300 tokens/s: 8 req/s adds nothing over 4.
  EXPECT_EQ(run(sweep, {.max_rate = 3}), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(sweep.verdicts().back(), step_verdict::saturated);
  const sweep_summary s = sweep.summary();
  EXPECT_EQ(s.end, sweep_end::saturated);
  ASSERT_TRUE(s.knee.has_value());
  EXPECT_EQ(sweep.steps()[*s.knee].request_rate, 4);
  EXPECT_EQ(s.reason, "at 8.00 req/s the total tokens/s (300.0) grew 0.0% over 4.00 req/s's (300.0), less than "
                      "--sweep-min-growth 5%: the server is saturated and more load only queues");
}

TEST(rate_sweep, growth_just_above_the_minimum_still_holds) {
  rate_sweep sweep(slo_1s(1));
  sweep.record(fake_server{}(1));  // 100 tokens/s
  sweep_step up = fake_server{}(2);
  up.total_tokens_per_s = 106;  // 6% more
  EXPECT_EQ(sweep.record(up), step_verdict::holds);
  up.request_rate = 4;
  up.total_tokens_per_s = 111;  // 4.7% more than 106
  EXPECT_EQ(sweep.record(up), step_verdict::saturated);
  EXPECT_EQ(sweep.next_rate(), std::nullopt);
}

TEST(rate_sweep, a_first_rate_over_the_slo_steps_down_until_one_holds_then_refines) {
  rate_sweep sweep(slo_1s(8));
  EXPECT_EQ(run(sweep, {.slo_rate = 3}), (std::vector<double>{8, 4, 2, 3, 3.5}));
  const sweep_summary s = sweep.summary();
  EXPECT_EQ(s.end, sweep_end::bracketed);
  EXPECT_EQ(sweep.steps()[*s.knee].request_rate, 3);
}

TEST(rate_sweep, failed_requests_count_as_overload) {
  rate_sweep sweep(slo_1s(1));
  EXPECT_EQ(run(sweep, {.fail_rate = 4}), (std::vector<double>{1, 2, 4, 8, 6, 5}));
  EXPECT_EQ(sweep.verdicts()[3], step_verdict::failed);
  const sweep_summary s = sweep.summary();
  EXPECT_EQ(sweep.steps()[*s.knee].request_rate, 4);
  EXPECT_EQ(s.reason, "4.00 req/s held and 5.00 req/s did not (2 of 10 requests failed)");
}

TEST(rate_sweep, ends_after_max_steps_with_the_highest_rate_as_a_lower_bound) {
  sweep_options o = slo_1s(1);
  o.max_steps = 3;
  rate_sweep sweep(o);
  EXPECT_EQ(run(sweep, {}), (std::vector<double>{1, 2, 4}));
  const sweep_summary s = sweep.summary();
  EXPECT_EQ(s.end, sweep_end::max_steps);
  EXPECT_EQ(sweep.steps()[*s.knee].request_rate, 4);
  EXPECT_EQ(s.reason, "every rate up to 4.00 req/s held within 3 steps: C is a lower bound; raise --sweep-max-steps or the "
                      "first --request-rate");
}

TEST(rate_sweep, with_no_rate_holding_there_is_no_knee) {
  sweep_options o = slo_1s(1);
  o.max_steps = 3;
  rate_sweep sweep(o);
  EXPECT_EQ(run(sweep, {.slo_rate = 0.1}), (std::vector<double>{1, 0.5, 0.25}));
  const sweep_summary s = sweep.summary();
  EXPECT_EQ(s.end, sweep_end::none_held);
  EXPECT_EQ(s.knee, std::nullopt);
  EXPECT_EQ(s.reason, "no rate held, down to 0.25 req/s (TTFT p95 3000.0 ms above the SLO of 1000 ms): lower --request-rate "
                      "or raise --ttft-slo-ms");
}

TEST(rate_sweep, refuses_options_that_cannot_make_a_ladder) {
  auto refused = [](sweep_options o) {
    try {
      rate_sweep s(o);
    } catch (const user_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refused({.start_rate = INFINITY}), "--sweep needs a finite first --request-rate above 0");
  EXPECT_EQ(refused({.factor = 1}), "--sweep-factor must be above 1: each step up multiplies the rate by it");
  EXPECT_EQ(refused({.max_steps = 0}), "--sweep-max-steps must be at least 1");
  EXPECT_EQ(refused({.ttft_slo_ms = 0}), "--ttft-slo-ms must be above 0");
  EXPECT_EQ(refused({}), "accepted");
}

TEST(format_sweep_report, prints_a_row_per_rate_the_verdicts_the_knee_and_c) {
  sweep_options o = slo_1s(2);
  o.max_steps = 2;
  rate_sweep sweep(o);
  run(sweep, {.slo_rate = 3});  // 2 holds, 4 does not
  EXPECT_EQ(format_sweep_report(sweep),
            "============== Request-rate sweep (TTFT SLO: p95 <= 1000 ms) ==============\n"
            "     req/s   done failed TTFT p50 ms TTFT p95 ms ITL p50 ms ITL p95 ms   in tok/s  out tok/s total tok/s  verdict\n"
            "      2.00     10      0        50.0       100.0       10.0       20.0      160.0       40.0       200.0  holds <- knee\n"
            "      4.00     10      0      2000.0      3000.0       10.0       20.0      320.0       80.0       400.0  slo_crossed\n"
            "Sweep ended (bracketed): 2.00 req/s held and 4.00 req/s did not (TTFT p95 3000.0 ms above the SLO of 1000 ms)\n"
            "Knee: 2.00 req/s, TTFT p95 100.0 ms\n"
            "Sustained capacity C: 40.0 output tokens/s, 200.0 total tokens/s (input 160.0)\n"
            "============================================================\n");
}

TEST(sweep_json, carries_each_step_by_rate_the_knee_and_the_capacity) {
  rate_sweep sweep(slo_1s(1));
  run(sweep, {.slo_rate = 5});
  const auto j = nlohmann::json::parse(sweep_json(sweep, R"({"num_prompts": 10})"));
  EXPECT_EQ(j["ttft_slo_ms"], 1000.0);
  EXPECT_EQ(j["workload"]["num_prompts"], 10);
  ASSERT_EQ(j["steps"].size(), 6u);
  std::vector<double> rates;
  for (const auto& s : j["steps"]) rates.push_back(s["request_rate"]);
  EXPECT_EQ(rates, (std::vector<double>{1, 2, 4, 5, 6, 8}));
  EXPECT_EQ(j["steps"][4]["verdict"], "slo_crossed");
  EXPECT_EQ(j["end"], "bracketed");
  EXPECT_EQ(j["knee"]["request_rate"], 5.0);
  EXPECT_EQ(j["knee"]["p95_ttft_ms"], 100.0);
  EXPECT_EQ(j["capacity"]["total_tokens_per_s"], 500.0);
  EXPECT_EQ(j["capacity"]["output_tokens_per_s"], 100.0);
  EXPECT_EQ(j["capacity"]["input_tokens_per_s"], 400.0);

  sweep_options none = slo_1s(1);
  none.max_steps = 1;
  rate_sweep empty(none);
  run(empty, {.slo_rate = 0.1});
  const auto k = nlohmann::json::parse(sweep_json(empty, "{}"));
  EXPECT_TRUE(k["knee"].is_null());
  EXPECT_TRUE(k["capacity"].is_null());
  EXPECT_EQ(k["end"], "none_held");
}

} // namespace
} // namespace troupe
