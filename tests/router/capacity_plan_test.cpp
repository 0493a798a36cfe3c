// troupe plan's arithmetic: GPUs = ceil(demand tokens/s / (C x utilization)), per pool, by total and by output
// tokens, and the inputs it refuses.

#include "runtime/router/capacity_plan.hpp"

#include <gtest/gtest.h>

#include "runtime/error.hpp"

namespace troupe {
namespace {

template <class F> std::string error_of(F f) {
  try {
    f();
  } catch (const user_error& e) {
    return e.what();
  }
  return "no error";
}

gpu_capacity total_capacity(double c) { return {.total_tokens_per_s = c, .output_tokens_per_s = {}, .source = "--capacity"}; }

capacity_plan_input one_pool(token_demand demand, gpu_capacity c, double utilization = 0.75) {
  capacity_plan_input in;
  in.demand = demand;
  in.utilization = utilization;
  in.pools.push_back({.name = "all", .max_tokens = 0, .share = 1, .capacity = std::move(c)});
  return in;
}

TEST(parse_per_second, reads_a_number_with_a_multiplier_and_a_time_unit) {
  EXPECT_DOUBLE_EQ(parse_per_second("1M/min", "--tokens"), 1e6 / 60);
  EXPECT_DOUBLE_EQ(parse_per_second("2500/s", "--tokens"), 2500);
  EXPECT_DOUBLE_EQ(parse_per_second("12k", "--tokens"), 12000);
  EXPECT_DOUBLE_EQ(parse_per_second("3.6M/h", "--tokens"), 1000);
  EXPECT_DOUBLE_EQ(parse_per_second(" 0.5 / s ", "--requests"), 0.5);
  EXPECT_EQ(error_of([] { parse_per_second("1M/hr", "--tokens"); }), "--tokens '1M/hr': the unit must be /s, /min or /h (e.g. 1M/min)");
  EXPECT_EQ(error_of([] { parse_per_second("lots", "--tokens"); }),
            "--tokens 'lots': give a rate as NUMBER[K|M|G][/s|/min|/h], e.g. 1M/min or 2500/s");
  EXPECT_EQ(error_of([] { parse_per_second("0/s", "--requests"); }), "--requests '0/s': must be above 0");
  EXPECT_EQ(error_of([] { parse_per_second("-5", "--requests"); }), "--requests '-5': must be above 0");
}

TEST(parse_plan_pool_spec, takes_the_routers_bucket_a_share_and_an_optional_capacity) {
  const plan_pool_spec a = parse_plan_pool_spec("short:256,share=0.6");
  EXPECT_EQ(a.name, "short");
  EXPECT_EQ(a.max_tokens, 256);
  EXPECT_DOUBLE_EQ(a.share, 0.6);
  EXPECT_EQ(a.capacity, "");
  const plan_pool_spec b = parse_plan_pool_spec("long,share=0.4,capacity=sweep_long.json");
  EXPECT_EQ(b.name, "long");
  EXPECT_EQ(b.max_tokens, 0);
  EXPECT_EQ(b.capacity, "sweep_long.json");
  EXPECT_EQ(error_of([] { parse_plan_pool_spec("short:256"); }),
            "--pool 'short:256': give the pool's share of the demand: NAME[:MAX_TOKENS],share=F");
  EXPECT_EQ(error_of([] { parse_plan_pool_spec("short,share=1.5"); }),
            "--pool 'short,share=1.5': share must be a fraction in (0, 1] of the demand, e.g. share=0.6");
  EXPECT_EQ(error_of([] { parse_plan_pool_spec("short,share=0.5,gpus=3"); }),
            "--pool 'short,share=0.5,gpus=3': unknown part 'gpus=3' (a pool is NAME[:MAX_TOKENS],share=F[,capacity=C|FILE])");
  EXPECT_NE(error_of([] { parse_plan_pool_spec("short:many,share=1"); }).find("MAX_TOKENS must be a positive number"), std::string::npos);
}

TEST(plan_capacity, one_million_tokens_a_minute_at_2500_per_gpu_and_75_percent_needs_9_gpus) {
  const capacity_plan p = plan_capacity(one_pool({.total_tokens_per_s = 1e6 / 60, .output_tokens_per_s = {}}, total_capacity(2500)));
  ASSERT_EQ(p.pools.size(), 1u);
  ASSERT_TRUE(p.pools[0].by_total.has_value());
  EXPECT_FALSE(p.pools[0].by_output.has_value());
  EXPECT_DOUBLE_EQ(p.pools[0].by_total->usable, 1875);
  EXPECT_DOUBLE_EQ(p.pools[0].by_total->exact, 1e6 / 60 / 1875);  // 8.89
  EXPECT_EQ(p.pools[0].gpus, 9);
  EXPECT_EQ(p.total_gpus, 9);
}

TEST(plan_capacity, a_whole_number_of_gpus_is_not_rounded_up_by_float_error) {
  // 2940 / (700 x 0.7) is 6.000000000000001 in doubles.
  const capacity_plan p = plan_capacity(one_pool({.total_tokens_per_s = 2940, .output_tokens_per_s = {}}, total_capacity(700), 0.7));
  EXPECT_EQ(p.total_gpus, 6);
}

TEST(plan_capacity, each_pool_takes_the_larger_of_its_total_and_output_counts_and_the_fleet_their_sum) {
  capacity_plan_input in;
  in.demand = {.total_tokens_per_s = 10000, .output_tokens_per_s = 2000};
  in.utilization = 0.8;
  in.pools.push_back({.name = "short", .max_tokens = 256, .share = 0.6,
                      .capacity = {.total_tokens_per_s = 1000, .output_tokens_per_s = 250, .source = "--capacity 1000 --output-capacity 250"}});
  in.pools.push_back({.name = "long", .max_tokens = 0, .share = 0.4,
                      .capacity = {.total_tokens_per_s = 1000, .output_tokens_per_s = 100, .source = "long.json"}});
  const capacity_plan p = plan_capacity(in);
  ASSERT_EQ(p.pools.size(), 2u);
  // short: 6000 / 800 = 7.5 -> 8 by total; 1200 / 200 = 6 by output.
  EXPECT_EQ(p.pools[0].by_total->gpus, 8);
  EXPECT_EQ(p.pools[0].by_output->gpus, 6);
  EXPECT_EQ(p.pools[0].gpus, 8);
  EXPECT_FALSE(p.pools[0].output_binds);
  // long: 4000 / 800 = 5 by total; 800 / 80 = 10 by output (long generations are decode bound).
  EXPECT_EQ(p.pools[1].by_total->gpus, 5);
  EXPECT_EQ(p.pools[1].by_output->gpus, 10);
  EXPECT_EQ(p.pools[1].gpus, 10);
  EXPECT_TRUE(p.pools[1].output_binds);
  EXPECT_EQ(p.total_gpus, 18);
  EXPECT_EQ(format_capacity_plan(p),
            "Demand: 10000.0 tokens/s (600000 tokens/min) in total, 2000.0 tokens/s (120000 tokens/min) of output\n"
            "Utilization target: 0.80 of C per GPU\n"
            "Pool short (max_tokens up to 256), share 0.60 of the demand, C from --capacity 1000 --output-capacity 250:\n"
            "  total tokens:  (0.60 x 10000.0 = 6000.0) / (1000.0 x 0.80 = 800.0) = 7.50 -> 8 GPUs\n"
            "  output tokens: (0.60 x 2000.0 = 1200.0) / (250.0 x 0.80 = 200.0) = 6.00 -> 6 GPUs\n"
            "  => 8 GPUs (total tokens bind)\n"
            "Pool long (the longer requests), share 0.40 of the demand, C from long.json:\n"
            "  total tokens:  (0.40 x 10000.0 = 4000.0) / (1000.0 x 0.80 = 800.0) = 5.00 -> 5 GPUs\n"
            "  output tokens: (0.40 x 2000.0 = 800.0) / (100.0 x 0.80 = 80.0) = 10.00 -> 10 GPUs\n"
            "  => 10 GPUs (output tokens bind: decode bound)\n"
            "GPUs needed: 8 + 10 = 18\n");
}

TEST(plan_capacity, one_pool_prints_its_arithmetic_without_shares) {
  const capacity_plan p = plan_capacity(one_pool({.total_tokens_per_s = 1e6 / 60, .output_tokens_per_s = {}}, total_capacity(2500)));
  EXPECT_EQ(format_capacity_plan(p),
            "Demand: 16666.7 tokens/s (1000000 tokens/min) in total\n"
            "Utilization target: 0.75 of C per GPU\n"
            "Pool all (every request), share 1.00 of the demand, C from --capacity:\n"
            "  total tokens:  16666.7 / (2500.0 x 0.75 = 1875.0) = 8.89 -> 9 GPUs\n"
            "  => 9 GPUs\n"
            "GPUs needed: 9\n");
}

TEST(plan_capacity, refuses_what_it_cannot_plan_saying_what_to_change) {
  const token_demand total = {.total_tokens_per_s = 1000, .output_tokens_per_s = {}};
  EXPECT_EQ(error_of([&] { plan_capacity(one_pool(total, total_capacity(100), 0.9)); }),
            "--utilization 0.9: plan at 0.70 to 0.85 of C (below wastes GPUs; above leaves no headroom for bursts, and TTFT "
            "climbs past the knee)");
  EXPECT_EQ(error_of([&] { plan_capacity(one_pool(total, total_capacity(100), 0.5)); }).substr(0, 20), "--utilization 0.5: p");
  EXPECT_EQ(error_of([&] { plan_capacity(one_pool(total, total_capacity(0))); }),
            "pool all: the capacity (--capacity) must be above 0 tokens/s per GPU");
  EXPECT_EQ(error_of([&] { plan_capacity(one_pool({}, total_capacity(100))); }),
            "no demand: give --tokens, --input-tokens and --output-tokens, or --requests with mean lengths");
  EXPECT_EQ(error_of([&] {
              plan_capacity(one_pool({.total_tokens_per_s = {}, .output_tokens_per_s = 500}, total_capacity(100)));
            }),
            "pool all: the demand gives output tokens and the capacity (--capacity) only total tokens/s: give both in the "
            "same kind (a sweep's JSON has both)");
  capacity_plan_input in = one_pool(total, total_capacity(100));
  in.pools[0].share = 0.6;
  in.pools[0].max_tokens = 256;
  in.pools[0].name = "short";
  in.pools.push_back({.name = "long", .max_tokens = 0, .share = 0.3, .capacity = total_capacity(100)});
  EXPECT_EQ(error_of([&] { plan_capacity(in); }), "the pools' shares add up to 0.9, not 1");
  in.pools[1].share = 0.4;
  EXPECT_EQ(plan_capacity(in).total_gpus, 8 + 6);  // 600 / 75 = 8; 400 / 75 = 5.33
  std::swap(in.pools[0], in.pools[1]);
  EXPECT_EQ(error_of([&] { plan_capacity(in); }), "--pool long: every pool but the last needs MAX_TOKENS (NAME:MAX_TOKENS)");
}

} // namespace
} // namespace troupe
