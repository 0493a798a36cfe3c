// `troupe bench serve` against a live `troupe serve` on the built-in CPU model, as a user runs it.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "tests/support/server_process.hpp"

using json = nlohmann::json;
using troupe::testing::server_process;
namespace fs = std::filesystem;

namespace {

struct run_result {
  int exit_code = -1;
  std::string out, err;
};

run_result bench_serve(const std::string& args) {
  const fs::path err_file = fs::temp_directory_path() / ("troupe_bench_serve_err_" + std::to_string(::getpid()));
  run_result r;
  r.out = troupe::testing::shell(std::string(TROUPE_BINARY) + " bench serve --disable-tqdm " + args + " 2>" + err_file.string(),
                                 &r.exit_code);
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err_file);
  return r;
}

fs::path result_file(const std::string& name) {
  return fs::temp_directory_path() / ("troupe_bench_serve_" + std::to_string(::getpid()) + "_" + name + ".json");
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  json j = json::parse(in);
  fs::remove(path);
  return j;
}

// A port nothing listens on: bound, read back, released.
uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Positive (a TPOT median may be 0 when a whole stream lands in one read) and ordered p50 <= p95 <= p99.
void expect_positive_and_ordered(const json& j, const std::string& metric) {
  const double p50 = j["p50_" + metric + "_ms"], p95 = j["p95_" + metric + "_ms"], p99 = j["p99_" + metric + "_ms"];
  EXPECT_GT(j["mean_" + metric + "_ms"].get<double>(), 0) << metric;
  EXPECT_GT(p99, 0) << metric;
  EXPECT_GE(p50, 0) << metric;
  EXPECT_LE(p50, p95) << metric;
  EXPECT_LE(p95, p99) << metric;
  EXPECT_DOUBLE_EQ(j["median_" + metric + "_ms"].get<double>(), p50) << metric;
}

} // namespace

TEST(bench_serve_cli, reports_every_request_of_a_run_against_troupe_serve) {
  server_process s;
  const fs::path result = result_file("concurrency");
  const auto r = bench_serve("--base-url http://127.0.0.1:" + std::to_string(s.http_port()) +
                             " --num-prompts 8 --random-input-len 16 --random-output-len 8 --ignore-eos --max-concurrency 4"
                             " --save-result --result-filename " + result.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("============ Serving Benchmark Result ============\n"
                       "Successful requests:                     8         \n"
                       "Failed requests:                         0         \n"
                       "Maximum request concurrency:             4         \n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Total generated tokens:                  64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("-----Time per Output Token (excl. 1st token)------\n"), std::string::npos) << r.out;
  const json j = read_json(result);
  EXPECT_EQ(j["completed"], 8);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["num_prompts"], 8);
  EXPECT_EQ(j["max_concurrency"], 4);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["model_id"], "troupe-default");  // asked of GET /v1/models
  EXPECT_EQ(j["total_input_tokens"], 8 * 16);
  EXPECT_EQ(j["total_output_tokens"], 8 * 8);
  EXPECT_LE(j["max_concurrent_requests"].get<int>(), 4);
  EXPECT_GT(j["duration"].get<double>(), 0);
  EXPECT_GT(j["output_throughput"].get<double>(), 0);
  for (const char* metric : {"ttft", "tpot", "e2el"}) expect_positive_and_ordered(j, metric);
  EXPECT_GT(j["p50_ttft_ms"].get<double>(), 0);
  EXPECT_GT(j["p50_e2el_ms"].get<double>(), 0);
  EXPECT_LE(j["p99_ttft_ms"].get<double>(), j["p99_e2el_ms"].get<double>());  // each TTFT is within its E2EL
  EXPECT_EQ(j["errors"], json(std::vector<std::string>(8, "")));
}

TEST(bench_serve_cli, paces_requests_at_the_request_rate) {
  server_process s;
  const fs::path result = result_file("rate");
  const auto r = bench_serve("--port " + std::to_string(s.http_port()) +
                             " --num-prompts 8 --random-input-len 16 --random-output-len 8 --ignore-eos --request-rate 50"
                             " --save-result --save-detailed --result-filename " + result.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Traffic request rate: 50.0\nBurstiness factor: 1.0 (Poisson process)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Request rate configured (RPS):           50.00"), std::string::npos) << r.out;
  const json j = read_json(result);
  EXPECT_EQ(j["completed"], 8);
  EXPECT_EQ(j["request_rate"], 50.0);
  EXPECT_EQ(j["total_output_tokens"], 64);
  // The last request leaves at 8 / 50 s; the arrivals are spread, not all at 0.
  const auto starts = j["start_times"].get<std::vector<double>>();
  ASSERT_EQ(starts.size(), 8u);
  EXPECT_GE(*std::max_element(starts.begin(), starts.end()), 0.16);
  EXPECT_GE(j["duration"].get<double>(), 0.16);
  EXPECT_EQ(j["output_lens"], json(std::vector<int>(8, 8)));
}

TEST(bench_serve_cli, the_prefix_repetition_dataset_shares_its_prefixes_and_reports_the_servers_prefix_cache_hit_rate) {
  // 2 prefixes of 32 tokens (two 16-token blocks) x 4 prompts, each with 8 tokens of its own, one at a time.
  // The initial test run sends the first prompt, caching its prefix; of the run's 8 x 40 prompt tokens the
  // 7 prompts after each prefix's first find its 32 tokens cached: 224 / 320.
  server_process s;
  const fs::path result = result_file("prefix_repetition");
  const auto r = bench_serve("--port " + std::to_string(s.http_port()) +
                             " --dataset-name prefix_repetition --num-prompts 9 --prefix-repetition-num-prefixes 2"
                             " --prefix-repetition-prefix-len 32 --prefix-repetition-suffix-len 8 --prefix-repetition-output-len 3"
                             " --ignore-eos --max-concurrency 1 --result-filename " + result.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("==================================================\nPrefix cache hit rate (%):               70.00     \n"), std::string::npos) << r.out;
  const json j = read_json(result);
  EXPECT_EQ(j["dataset_name"], "prefix_repetition");
  EXPECT_EQ(j["num_prompts"], 8);  // 9 / 2 prompts per prefix, rounded down, as vLLM's dataset makes them
  EXPECT_EQ(j["completed"], 8);
  EXPECT_EQ(j["total_input_tokens"], 8 * 40);
  EXPECT_EQ(j["total_output_tokens"], 8 * 3);
  EXPECT_DOUBLE_EQ(j["prefix_cache_hit_rate"].get<double>(), 224.0 / 320);
}

TEST(bench_serve_cli, fewer_prompts_than_prefixes_fails_before_sending_anything) {
  const auto r = bench_serve("--port " + std::to_string(unused_port()) +
                             " --dataset-name prefix_repetition --num-prompts 4 --prefix-repetition-num-prefixes 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--num-prompts (4) must be at least --prefix-repetition-num-prefixes (8)"), std::string::npos) << r.err;
}

TEST(bench_serve_cli, the_chat_backend_sends_detokenized_prompts_to_chat_completions) {
  server_process s;
  const fs::path result = result_file("chat");
  const auto r = bench_serve("--base-url http://127.0.0.1:" + std::to_string(s.http_port()) +
                             " --backend openai-chat --num-prompts 3 --random-input-len 8 --random-output-len 4 --ignore-eos"
                             " --result-filename " + result.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = read_json(result);
  EXPECT_EQ(j["backend"], "openai-chat");
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["total_output_tokens"], 12);
  EXPECT_GT(j["total_input_tokens"].get<int>(), 3 * 8 - 1);  // the server's count, chat template included
}

TEST(bench_serve_cli, failed_requests_are_counted_and_the_first_error_shown) {
  // Lengths 10..30 + 4..12 against a 32-token context: with seed 0 the first request fits (the initial
  // test run passes) and a few later ones do not.
  server_process s("--max-model-len 32");
  const fs::path result = result_file("failures");
  const auto r = bench_serve("--port " + std::to_string(s.http_port()) +
                             " --num-prompts 12 --random-input-len 20 --random-output-len 8 --random-range-ratio 0.5"
                             " --seed 0 --ignore-eos --result-filename " + result.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = read_json(result);
  EXPECT_GE(j["failed"].get<int>(), 1);
  EXPECT_GE(j["completed"].get<int>(), 1);
  EXPECT_EQ(j["completed"].get<int>() + j["failed"].get<int>(), 12);
  int num_errors = 0;
  for (const auto& e : j["errors"])
    if (!e.get<std::string>().empty()) {
      ++num_errors;
      EXPECT_NE(e.get<std::string>().find("HTTP 400 from http://127.0.0.1:" + std::to_string(s.http_port()) + "/v1/completions: "
                                          "This model's maximum context length is 32 tokens"),
                std::string::npos)
          << e;
    }
  EXPECT_EQ(num_errors, j["failed"].get<int>());
  EXPECT_NE(r.err.find("requests failed; the first error: HTTP 400"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("Failed requests:                         " + std::to_string(num_errors)), std::string::npos) << r.out;
}

TEST(bench_serve_cli, a_port_with_no_server_fails_naming_the_url) {
  const std::string base = "http://127.0.0.1:" + std::to_string(unused_port());
  auto r = bench_serve("--base-url " + base + " --num-prompts 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect to " + base + "/v1/models: Connection refused"), std::string::npos) << r.err;
  // With --model there is no model list to ask: the first request fails the same way.
  r = bench_serve("--base-url " + base + " --model m --num-prompts 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Initial test run failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(base + "/v1/completions: Connection refused"), std::string::npos) << r.err;
}

TEST(bench_serve_cli, an_unknown_model_fails_the_initial_test_run_with_the_servers_message) {
  server_process s;
  const auto r = bench_serve("--port " + std::to_string(s.http_port()) + " --model gpt-4 --num-prompts 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Initial test run failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("HTTP 404 from " + s.url("/v1/completions") + ": The model `gpt-4` does not exist."), std::string::npos) << r.err;
}

TEST(bench_serve_cli, bad_flags_say_what_to_change) {
  auto r = bench_serve("--random-range-ratio 1.5");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--random-range-ratio must be in [0, 1)"), std::string::npos) << r.err;
  r = bench_serve("--percentile-metrics ttft,latency");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("'latency' is not a metric; choose from ttft,tpot,itl,e2el"), std::string::npos) << r.err;
  r = bench_serve("--request-rate 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--request-rate: must be greater than 0"), std::string::npos) << r.err;
  r = bench_serve("--base-url https://example.com");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("https is not supported"), std::string::npos) << r.err;
  r = bench_serve("--backend openai-chat --endpoint /v1/completions");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--endpoint must end in chat/completions"), std::string::npos) << r.err;
  r = bench_serve("--sweep --sweep-factor 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--sweep-factor must be above 1: each step up multiplies the rate by it"), std::string::npos) << r.err;
}

TEST(bench_serve_cli, sweep_raises_the_rate_step_by_step_and_reports_c_at_the_knee) {
  server_process s;
  const fs::path result = result_file("sweep");
  // Two steps (8 then 16 req/s) under an SLO nothing on this model can cross: the knee is the higher rate.
  const auto r = bench_serve("--port " + std::to_string(s.http_port()) +
                             " --sweep --request-rate 8 --sweep-factor 2 --sweep-max-steps 2 --ttft-slo-ms 60000"
                             " --num-prompts 6 --random-input-len 16 --random-output-len 4 --ignore-eos --json " + result.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("============== Request-rate sweep (TTFT SLO: p95 <= 60000 ms) ==============\n"
                       "     req/s   done failed TTFT p50 ms TTFT p95 ms ITL p50 ms ITL p95 ms   in tok/s  out tok/s total tok/s  verdict\n"
                       "      8.00      6      0 "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Sweep ended (max_steps): every rate up to 16.00 req/s held within 2 steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Knee: 16.00 req/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Sustained capacity C: "), std::string::npos) << r.out;
  const json j = read_json(result);
  EXPECT_EQ(j["ttft_slo_ms"], 60000.0);
  EXPECT_EQ(j["workload"]["num_prompts"], 6);
  EXPECT_EQ(j["workload"]["random_input_len"], 16);
  ASSERT_EQ(j["steps"].size(), 2u);
  EXPECT_EQ(j["steps"][0]["request_rate"], 8.0);
  EXPECT_EQ(j["steps"][1]["request_rate"], 16.0);
  for (const auto& step : j["steps"]) {
    EXPECT_EQ(step["completed"], 6);
    EXPECT_EQ(step["failed"], 0);
    EXPECT_EQ(step["verdict"], "holds");
    // Every step's tokens over its duration: 6 prompts of 16 tokens in, 6 x 4 tokens out.
    EXPECT_NEAR(step["input_throughput"].get<double>() * step["duration"].get<double>(), 96, 1e-6);
    EXPECT_NEAR(step["output_throughput"].get<double>() * step["duration"].get<double>(), 24, 1e-6);
    EXPECT_GT(step["p95_ttft_ms"].get<double>(), 0);
    EXPECT_LE(step["p50_ttft_ms"].get<double>(), step["p95_ttft_ms"].get<double>());
  }
  EXPECT_EQ(j["end"], "max_steps");
  EXPECT_EQ(j["knee"], j["steps"][1]);
  EXPECT_EQ(j["capacity"]["output_tokens_per_s"], j["steps"][1]["output_throughput"]);
  EXPECT_EQ(j["capacity"]["total_tokens_per_s"], j["steps"][1]["total_token_throughput"]);
}

TEST(bench_serve_cli, a_sweep_where_no_rate_holds_fails_saying_why_and_still_writes_its_steps) {
  server_process s;
  const fs::path result = result_file("sweep_none");
  const auto r = bench_serve("--port " + std::to_string(s.http_port()) +
                             " --sweep --request-rate 20 --sweep-max-steps 1 --ttft-slo-ms 0.001"
                             " --num-prompts 2 --random-input-len 8 --random-output-len 2 --json " + result.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the sweep found no knee: no rate held, down to 20.00 req/s (TTFT p95 "), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("Knee: none\n"), std::string::npos) << r.out;
  const json j = read_json(result);
  EXPECT_EQ(j["steps"].size(), 1u);
  EXPECT_EQ(j["steps"][0]["verdict"], "slo_crossed");
  EXPECT_TRUE(j["knee"].is_null());
  EXPECT_EQ(j["end"], "none_held");
}
