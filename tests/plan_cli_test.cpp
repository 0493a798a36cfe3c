// `troupe plan` as a user runs it: a demand and the JSON a sweep wrote (or numbers) in, GPUs per pool out;
// bad input is one line and exit code 1.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "launch/bench/bench_sweep.hpp"
#include "tests/support/server_process.hpp"

namespace fs = std::filesystem;

namespace {

struct run_result {
  int exit_code = -1;
  std::string out, err;
};

run_result plan(const std::string& args) {
  const fs::path err_file = fs::temp_directory_path() / ("troupe_plan_err_" + std::to_string(::getpid()));
  run_result r;
  r.out = troupe::testing::shell(std::string(TROUPE_BINARY) + " plan " + args + " 2>" + err_file.string(), &r.exit_code);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err_file);
  return r;
}

// A sweep's JSON as `troupe bench serve --sweep --json` writes it: rates 1, 2 and 4 held with 125 total
// (25 output) tokens/s per req/s; `knee` false: the first rate already crossed the SLO.
fs::path sweep_file(const std::string& name, bool knee) {
  troupe::sweep_options o;
  o.start_rate = 1;
  o.max_steps = knee ? 3 : 1;
  troupe::rate_sweep sweep(o);
  while (const auto rate = sweep.next_rate()) {
    troupe::sweep_step s;
    s.request_rate = *rate;
    s.completed = 10;
    s.ttft_p95_ms = knee ? 100 : 5000;
    s.total_tokens_per_s = 125 * *rate;
    s.output_tokens_per_s = 25 * *rate;
    s.input_tokens_per_s = 100 * *rate;
    sweep.record(s);
  }
  const fs::path path = fs::temp_directory_path() / ("troupe_plan_" + std::to_string(::getpid()) + "_" + name + ".json");
  std::ofstream(path) << troupe::sweep_json(sweep, "{}");
  return path;
}

void expect_one_error_line(const run_result& r, const std::string& message) {
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

} // namespace

TEST(plan_cli, one_million_tokens_a_minute_at_the_knee_of_a_sweep) {
  const fs::path sweep = sweep_file("knee", true);
  const auto r = plan("--tokens 1M/min --capacity " + sweep.string());
  fs::remove(sweep);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 16666.7 / (500 x 0.75 = 375) = 44.44: 45 GPUs.
  EXPECT_EQ(r.out, "Demand: 16666.7 tokens/s (1000000 tokens/min) in total\n"
                   "Utilization target: 0.75 of C per GPU\n"
                   "Pool all (every request), share 1.00 of the demand, C from " + sweep.string() +
                       " (knee at 4.00 req/s, TTFT p95 100.0 ms):\n"
                   "  total tokens:  16666.7 / (500.0 x 0.75 = 375.0) = 44.44 -> 45 GPUs\n"
                   "  => 45 GPUs\n"
                   "GPUs needed: 45\n");
}

TEST(plan_cli, requests_with_mean_lengths_over_two_pools_each_with_its_capacity) {
  const fs::path sweep = sweep_file("long", true);
  // 20 req/s of 400 + 100 tokens: 10000 total, 2000 output tokens/s.
  const auto r = plan("--requests 1200/min --mean-input-len 400 --mean-output-len 100 --capacity 1000 --output-capacity 250"
                      " --utilization 0.8 --pool short:256,share=0.6 --pool long,share=0.4,capacity=" + sweep.string());
  fs::remove(sweep);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Demand: 10000.0 tokens/s (600000 tokens/min) in total, 2000.0 tokens/s (120000 tokens/min) of output\n"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  total tokens:  (0.60 x 10000.0 = 6000.0) / (1000.0 x 0.80 = 800.0) = 7.50 -> 8 GPUs\n"
                       "  output tokens: (0.60 x 2000.0 = 1200.0) / (250.0 x 0.80 = 200.0) = 6.00 -> 6 GPUs\n"
                       "  => 8 GPUs (total tokens bind)\n"),
            std::string::npos) << r.out;
  // The long pool's C is its sweep's: 500 total, 100 output tokens/s.
  EXPECT_NE(r.out.find("  total tokens:  (0.40 x 10000.0 = 4000.0) / (500.0 x 0.80 = 400.0) = 10.00 -> 10 GPUs\n"
                       "  output tokens: (0.40 x 2000.0 = 800.0) / (100.0 x 0.80 = 80.0) = 10.00 -> 10 GPUs\n"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GPUs needed: 8 + 10 = 18\n"
                       "troupe router --pool short:256 --pool long, with that many workers (one a GPU) in each pool\n"),
            std::string::npos) << r.out;
}

TEST(plan_cli, bad_input_is_one_line_and_exit_code_1) {
  expect_one_error_line(plan("--tokens 1M/min --capacity 2500 --utilization 0.9"), "--utilization 0.9: plan at 0.70 to 0.85 of C");
  expect_one_error_line(plan("--tokens lots --capacity 2500"), "--tokens 'lots': give a rate as NUMBER[K|M|G][/s|/min|/h]");
  expect_one_error_line(plan("--tokens 1M/min"), "give the capacity of one GPU: --capacity C");
  expect_one_error_line(plan("--requests 5/s --capacity 2500"), "--requests needs --mean-input-len and --mean-output-len");
  expect_one_error_line(plan("--tokens 1M/min --input-tokens 5/s --capacity 2500"), "give the demand one way");
  expect_one_error_line(plan("--tokens 1M/min --capacity 2500 --pool short:256,share=0.5 --pool long,share=0.4"),
                        "the pools' shares add up to 0.9, not 1");
  expect_one_error_line(plan("--tokens 1M/min --capacity no_such_sweep.json"),
                        "--capacity no_such_sweep.json: no such file (a sweep's JSON, or a number of tokens/s)");
  expect_one_error_line(plan("--tokens 1M/min --capacity many"), "--capacity 'many': give a rate as NUMBER[K|M|G][/s|/min|/h]");
  const fs::path none = sweep_file("none", false);
  expect_one_error_line(plan("--tokens 1M/min --capacity " + none.string()),
                        "--capacity " + none.string() + ": that sweep found no knee (no rate held, down to 1.00 req/s");
  fs::remove(none);
}
