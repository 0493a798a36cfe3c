// `troupe serve` as a vLLM user types it: MODEL as a positional, vLLM's flags (each working, accepted with a
// line saying why it has no effect, or refused saying why), VLLM_API_KEY, several served names, --seed,
// --max-model-len's check, --root-path, CORS, and the log: timestamped, levelled, a line per request and a
// stats line. Each against a real `troupe serve` on the CPU backend and the built-in small model.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "actors/engine.hpp"
#include "actors/gateway.hpp"
#include "runtime/cli/vllm_flags.hpp"
#include "runtime/model/random_model.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/server_process.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace troupe;
using troupe::testing::fetch;
using troupe::testing::http_request;
using troupe::testing::raw_connection;
using troupe::testing::raw_response;
using troupe::testing::run_command;
using troupe::testing::server_process;

namespace {

std::string reference_dir(const std::string& name) { return std::string(TROUPE_TEST_DATA) + "/reference/" + name; }

troupe::testing::command_result troupe_cmd(const std::string& args, const std::string& env = "") {
  return run_command(env + std::string(TROUPE_BINARY) + " " + args + " </dev/null");
}

size_t num_lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

// A response to one request on a fresh connection.
raw_response http_call(const server_process& s, const std::string& method, const std::string& path,
                     const std::string& body = "", const std::string& headers = "") {
  raw_connection c(s.http_port());
  c.send(http_request(method, path, body, headers));
  auto r = c.read_response(method == "HEAD");
  if (!r) throw std::runtime_error("no response to " + method + " " + path);
  return *r;
}

// A server whose stderr (its log) goes to a file, with `env` ("A=1 B=2") in its environment.
class logged_server {
public:
  explicit logged_server(const std::string& args, const std::string& env = "")
      : log_(fs::temp_directory_path() / ("troupe_serve_log_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))),
        server_(args + " --client-port -1", (env.empty() ? "" : "export " + env + "; ") + "exec 2>" + log_.string() + "; ") {}
  ~logged_server() { fs::remove(log_); }
  const server_process& server() const { return server_; }
  std::string log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The log once a line containing `text` is in it, or as it is at the deadline.
  std::string log_once(const std::string& text, std::chrono::milliseconds deadline = std::chrono::seconds(10)) const {
    const auto until = std::chrono::steady_clock::now() + deadline;
    std::string l = log();
    while (l.find(text) == std::string::npos && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      l = log();
    }
    return l;
  }

private:
  static inline int counter_ = 0;
  fs::path log_;
  server_process server_;
};

// The body of a /v1/completions answer that must succeed.
std::string completed(const server_process& s, const std::string& body) {
  const raw_response r = http_call(s, "POST", "/v1/completions", body);
  if (r.status != 200) throw std::runtime_error("completion: " + std::to_string(r.status) + " " + r.body);
  return r.body;
}

// Whether `help` lists `flag` as an option ("  --port UINT", "  -q,--quantization TEXT").
bool lists_flag(const std::string& help, std::string_view flag) {
  for (const char* before : {"  ", ","})
    for (const char* after : {" ", "\n"})
      if (help.find(before + std::string(flag) + after) != std::string::npos) return true;
  return false;
}

} // namespace

// ---- the command line

TEST(serve_cli, the_model_is_a_positional_as_in_vllm_serve_and_model_may_repeat_it) {
  const std::string dir = reference_dir("llama_f32");
  server_process s(dir + " --client-port -1");
  const json models = json::parse(fetch(s.http_port(), "/v1/models"));
  EXPECT_EQ(models["data"][0]["id"], dir);
  EXPECT_EQ(models["data"][0]["root"], dir);
  server_process same("--model " + dir + " " + dir + " --client-port -1");
  EXPECT_EQ(json::parse(fetch(same.http_port(), "/v1/models"))["data"][0]["id"], dir);
  const auto twice = troupe_cmd("serve " + dir + " --model /other --port 0");
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("[error] the model is given twice, as MODEL (" + dir + ") and as --model (/other): give one"),
            std::string::npos)
      << twice.err;
  EXPECT_EQ(num_lines(twice.err), 1u) << twice.err;
}

TEST(serve_cli, help_lists_every_vllm_flag_that_works_names_those_without_effect_and_shows_true_defaults) {
  const auto help = troupe_cmd("serve --help");
  ASSERT_EQ(help.exit_code, 0);
  for (const vllm_flag& f : vllm_serve_flags()) {
    if (f.what == flag_class::works) {
      EXPECT_TRUE(lists_flag(help.out, f.name)) << f.name << " works but is no flag of troupe serve";
    }
    if (f.what == flag_class::no_effect) {
      EXPECT_TRUE(help.out.find(std::string(f.name) + ",") != std::string::npos ||
                  help.out.find(std::string(f.name) + ".") != std::string::npos)
          << f.name;
    }
  }
  // Defaults as the code has them.
  const engine_options e;
  const gateway_options g;
  EXPECT_NE(help.out.find("--host TEXT=" + g.host), std::string::npos);
  EXPECT_NE(help.out.find("--port UINT=" + std::to_string(g.port)), std::string::npos);
  EXPECT_NE(help.out.find("--max-logprobs INT=" + std::to_string(g.max_logprobs)), std::string::npos);
  EXPECT_NE(help.out.find("--block-size INT:POSITIVE=" + std::to_string(e.block_size)), std::string::npos);
  EXPECT_NE(help.out.find("--kv-cache-memory INT=" + std::to_string(e.kv_cache_memory)), std::string::npos);
  EXPECT_NE(help.out.find("--enable-prefix-caching     Reuse the KV blocks of prompts' common prefixes (on by default)"),
            std::string::npos);
  EXPECT_TRUE(e.enable_prefix_caching);
  EXPECT_NE(help.out.find("--allowed-origins TEXT=[\"*\"]"), std::string::npos);
  EXPECT_EQ(g.cors.allowed_origins, std::vector<std::string>{"*"});
}

TEST(serve_cli, vllm_flags_without_effect_are_accepted_with_one_log_line_each_saying_why) {
  logged_server s("--trust-remote-code --swap-space 4 --uvicorn-log-level info --pipeline-parallel-size 1 --disable-log-stats");
  EXPECT_EQ(fetch(s.server().http_port(), "/health"), "");
  const std::string log = s.log_once("serving ");
  for (const std::string line :
       {"[warning] --trust-remote-code has no effect: troupe runs no model code from the checkpoint; its architectures "
        "are built in\n",
        "[warning] --swap-space 4 has no effect: troupe preempts a sequence by freeing its blocks and recomputing it "
        "later, never by swapping to CPU memory\n",
        "[warning] --uvicorn-log-level info has no effect: troupe has no uvicorn: its HTTP server logs at --log-level "
        "(or TROUPE_LOGGING_LEVEL / VLLM_LOGGING_LEVEL)\n",
        "[warning] --pipeline-parallel-size 1 has no effect: troupe has no pipeline parallelism; split the model with "
        "--tensor-parallel-size\n"})
    EXPECT_NE(log.find(line), std::string::npos) << line << log;
  size_t notes = 0;
  for (size_t at = log.find("has no effect"); at != std::string::npos; at = log.find("has no effect", at + 1)) ++notes;
  EXPECT_EQ(notes, 4u) << log;
}

TEST(serve_cli, a_refused_or_unknown_flag_exits_1_with_one_line_naming_it) {
  const auto lora = troupe_cmd("serve --enable-lora --max-loras 4");
  EXPECT_EQ(lora.exit_code, 1);
  EXPECT_NE(lora.err.find("[error] --enable-lora is not supported: troupe cannot load LoRA adapters; serve a model with "
                          "the adapter merged into its weights\n"),
            std::string::npos)
      << lora.err;
  EXPECT_EQ(num_lines(lora.err), 1u) << lora.err;
  const auto pp = troupe_cmd("serve -pp 2");
  EXPECT_EQ(pp.exit_code, 1);
  EXPECT_NE(pp.err.find("[error] -pp 2 is not supported: troupe has no pipeline parallelism"), std::string::npos) << pp.err;
  const auto typo = troupe_cmd("serve --max-num-seq 8");
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.err.find("[error] unknown flag --max-num-seq for `troupe serve`; the closest troupe flag is --max-num-seqs"),
            std::string::npos)
      << typo.err;
  EXPECT_EQ(num_lines(typo.err), 1u) << typo.err;
  EXPECT_TRUE(typo.out.empty());
}

TEST(serve_cli, a_metrics_prefix_that_is_not_a_name_part_is_refused_saying_what_is_allowed) {
  const auto r = troupe_cmd("serve --metrics-prefix my-vllm");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("[error] --metrics-prefix must be a Prometheus name part (letters, digits and _, not starting with a "
                       "digit), such as troupe or vllm; got 'my-vllm'\n"),
            std::string::npos)
      << r.err;
}

TEST(troupe_cli, every_command_line_error_of_every_command_exits_1_with_one_line) {
  for (const std::string args :
       {"", "serve --port abc", "serve /a /b", "serve --log-level loud", "serve --allowed-origins '[1]'",
        "serve --metrics-prefix vllm:", "serve --dashboard-interval 0", "generate --max-tokens x", "generate --swap-space 4", "make-model", "make-model --out /tmp/x --hidden-size",
        "bench throughput --nope", "bench serve --request-rate", "nonsense"}) {
    const auto r = troupe_cmd(args);
    EXPECT_EQ(r.exit_code, 1) << args << ": " << r.err;
    EXPECT_EQ(num_lines(r.err), 1u) << args << ": " << r.err;
    EXPECT_NE(r.err.find("[error] "), std::string::npos) << args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << args << ": " << r.out;
  }
  EXPECT_EQ(troupe_cmd("--version").exit_code, 0);
  EXPECT_EQ(troupe_cmd("generate --help").exit_code, 0);
}

TEST(serve_cli, the_api_key_comes_from_vllm_api_key_or_troupe_api_key_when_no_flag_gives_one) {
  {
    logged_server s("--disable-log-stats", "VLLM_API_KEY=from-vllm");
    EXPECT_EQ(http_call(s.server(), "GET", "/v1/models").status, 401);
    EXPECT_EQ(http_call(s.server(), "GET", "/v1/models", "", "Authorization: Bearer from-vllm\r\n").status, 200);
    EXPECT_NE(s.log_once("API key from").find("[info] API key from VLLM_API_KEY: requests must send"), std::string::npos);
    EXPECT_EQ(s.log().find("from-vllm"), std::string::npos);  // the key itself is never logged
  }
  {
    logged_server s("--disable-log-stats", "VLLM_API_KEY=v TROUPE_API_KEY=t");
    EXPECT_EQ(http_call(s.server(), "GET", "/v1/models", "", "Authorization: Bearer v\r\n").status, 401);
    EXPECT_EQ(http_call(s.server(), "GET", "/v1/models", "", "Authorization: Bearer t\r\n").status, 200);
  }
  {
    logged_server s("--api-key flag --disable-log-stats", "VLLM_API_KEY=v");
    EXPECT_EQ(http_call(s.server(), "GET", "/v1/models", "", "Authorization: Bearer v\r\n").status, 401);
    EXPECT_EQ(http_call(s.server(), "GET", "/v1/models", "", "Authorization: Bearer flag\r\n").status, 200);
  }
}

TEST(serve_cli, every_served_model_name_answers_and_v1_models_lists_them_all) {
  server_process s("--served-model-name alpha beta --client-port -1");
  const json models = json::parse(fetch(s.http_port(), "/v1/models"));
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][0]["id"], "alpha");
  EXPECT_EQ(models["data"][1]["id"], "beta");
  // Responses name the first, as vLLM's.
  EXPECT_EQ(json::parse(completed(s, R"({"model": "beta", "prompt": "Hi", "max_tokens": 2})"))["model"], "alpha");
  EXPECT_EQ(http_call(s, "POST", "/v1/completions", R"({"model": "gamma", "prompt": "Hi", "max_tokens": 2})").status, 404);
}

TEST(serve_cli, the_seed_makes_unseeded_sampling_repeat_across_starts) {
  const std::string body = R"({"prompt": "Once upon a time", "max_tokens": 16, "temperature": 1.0, "ignore_eos": true})";
  const auto text = [&](const std::string& seed) {
    server_process s("--seed " + seed + " --client-port -1");
    return json::parse(completed(s, body))["choices"][0]["text"].get<std::string>();
  };
  const std::string a = text("7");
  EXPECT_EQ(a, text("7"));
  EXPECT_NE(a, text("8"));
}

TEST(serve_cli, max_model_len_beyond_the_models_positions_needs_vllms_override) {
  const std::string dir = reference_dir("llama_f32");
  std::ifstream in(dir + "/config.json");
  const int64_t positions = json::parse(in)["max_position_embeddings"];
  const std::string longer = std::to_string(positions * 2);
  const auto refused = troupe_cmd("serve " + dir + " --port 0 --client-port -1 --max-model-len " + longer);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("[error] User-specified max_model_len (" + longer +
                             ") is greater than the derived max_model_len (max_position_embeddings=" +
                             std::to_string(positions) +
                             " in model's config.json). To allow overriding this maximum, set the env var "
                             "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."),
            std::string::npos)
      << refused.err;
  logged_server allowed(dir + " --max-model-len " + longer + " --disable-log-stats", "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1");
  EXPECT_EQ(json::parse(fetch(allowed.server().http_port(), "/v1/models"))["data"][0]["max_model_len"], positions * 2);
  EXPECT_NE(allowed.log().find("[warning] User-specified max_model_len (" + longer + ")"), std::string::npos) << allowed.log();
}

TEST(serve_cli, the_tokenizer_may_come_from_another_folder) {
  const std::string prompt = R"({"prompt": "Hello world, hello troupe"})";
  server_process own("--client-port -1");  // the built-in model, with its tokenizer
  const json expected = json::parse(http_call(own, "POST", "/tokenize", prompt).body)["tokens"];
  server_process borrowed(reference_dir("llama_f32") + " --tokenizer " + default_model_dir().string() + " --client-port -1");
  EXPECT_EQ(json::parse(http_call(borrowed, "POST", "/tokenize", prompt).body)["tokens"], expected);
  const auto missing = troupe_cmd("serve --port 0 --client-port -1 --tokenizer " + reference_dir("llama_f32"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("--tokenizer " + reference_dir("llama_f32") + ": no tokenizer.json there"), std::string::npos)
      << missing.err;
}

// ---- HTTP habits

TEST(serve_cli, a_root_path_serves_paths_with_and_without_its_prefix) {
  server_process s("--root-path /api --client-port -1");
  EXPECT_EQ(http_call(s, "GET", "/api/v1/models").status, 200);
  EXPECT_EQ(http_call(s, "GET", "/v1/models").status, 200);
  EXPECT_EQ(http_call(s, "GET", "/api/health").status, 200);
  EXPECT_EQ(http_call(s, "GET", "/other/v1/models").status, 404);
  EXPECT_EQ(troupe_cmd("serve --root-path api").exit_code, 1);
}

TEST(serve_cli, cors_preflights_are_answered_and_responses_carry_the_allowed_origin) {
  server_process any("--api-key k --client-port -1");
  // A preflight needs no key: browsers send none.
  const raw_response pre = http_call(any, "OPTIONS", "/v1/chat/completions", "",
                                   "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                                   "Access-Control-Request-Headers: authorization, content-type\r\n");
  EXPECT_EQ(pre.status, 200);
  EXPECT_EQ(pre.body, "OK");
  EXPECT_EQ(pre.header("access-control-allow-origin"), "*");
  EXPECT_EQ(pre.header("access-control-allow-methods"), "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
  EXPECT_EQ(pre.header("access-control-allow-headers"), "authorization, content-type");
  EXPECT_EQ(pre.header("access-control-max-age"), "600");
  const raw_response get = http_call(any, "GET", "/v1/models", "", "Origin: https://app.example\r\nAuthorization: Bearer k\r\n");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.header("access-control-allow-origin"), "*");
  EXPECT_FALSE(http_call(any, "GET", "/health").has("access-control-allow-origin"));  // no Origin, no CORS headers

  server_process one(R"(--allowed-origins '["https://app.example"]' --allowed-methods '["POST"]' --allow-credentials --client-port -1)");
  const raw_response evil = http_call(one, "OPTIONS", "/v1/completions", "",
                                    "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n");
  EXPECT_EQ(evil.status, 400);
  EXPECT_EQ(evil.body, "Disallowed CORS origin");
  const raw_response ok = http_call(one, "OPTIONS", "/v1/completions", "",
                                  "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.header("access-control-allow-origin"), "https://app.example");
  EXPECT_EQ(ok.header("access-control-allow-credentials"), "true");
  EXPECT_EQ(http_call(one, "OPTIONS", "/v1/completions", "", "Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n").body,
            "Disallowed CORS method");
}

TEST(serve_cli, request_ids_cached_prompt_tokens_and_max_logprobs_work_as_vllms_flags) {
  server_process s("--enable-request-id-headers --enable-prompt-tokens-details --max-logprobs 2 --client-port -1");
  EXPECT_EQ(http_call(s, "GET", "/v1/models", "", "X-Request-Id: abc-123\r\n").header("x-request-id"), "abc-123");
  EXPECT_TRUE(std::regex_match(http_call(s, "GET", "/v1/models").header("x-request-id"), std::regex("[0-9a-f]{32}")));
  std::string ids;
  for (int i = 0; i < 40; ++i) ids += (i ? "," : "") + std::to_string(10 + i);
  const std::string body = R"({"prompt": [)" + ids + R"(], "max_tokens": 2})";
  completed(s, body);
  const json again = json::parse(completed(s, body));
  EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"], 32);  // two full blocks of 16
  const raw_response three = http_call(s, "POST", "/v1/completions", R"({"prompt": "Hi", "max_tokens": 1, "logprobs": 3})");
  EXPECT_EQ(three.status, 400);
}

// ---- the log

TEST(serve_cli, the_log_is_timestamped_and_levelled_with_a_line_per_request_and_a_stats_line) {
  logged_server s("--served-model-name tiny", "VLLM_LOG_STATS_INTERVAL=0.2");
  const auto& srv = s.server();
  completed(srv, R"({"prompt": "Hello", "max_tokens": 4, "ignore_eos": true})");
  EXPECT_EQ(http_call(srv, "GET", "/nope").status, 404);
  fetch(srv.http_port(), "/health");  // probes are not logged
  const std::string log = s.log_once("Avg prompt throughput");
  const std::string base = "http://127.0.0.1:" + std::to_string(srv.http_port());
  EXPECT_NE(log.find("[info] serving Qwen2ForCausalLM as tiny: OpenAI API at " + base + "/v1, live dashboard at " + base +
                     "/dashboard, Prometheus metrics at " + base + "/metrics\n"),
            std::string::npos)
      << log;
  const std::regex stamp(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[(trace|debug|info|warning|error|critical)\] .*)");
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) EXPECT_TRUE(std::regex_match(line, stamp)) << line;
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(\[info\] 127\.0\.0\.1:\d+ "POST /v1/completions HTTP/1\.1" 200 cmpl-[0-9a-f]{32}: \d+ prompt \+ 4 generated tokens, length, \d+\.\d{3} s\n)")))
      << log;
  EXPECT_TRUE(std::regex_search(log, std::regex(R"(\[info\] 127\.0\.0\.1:\d+ "GET /nope HTTP/1\.1" 404 \d+\.\d{3} s\n)"))) << log;
  EXPECT_EQ(log.find("/health"), std::string::npos) << log;
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(\[info\] Avg prompt throughput: \d+\.\d tokens/s, Avg generation throughput: \d+\.\d tokens/s, )"
                      R"(Running: \d+ reqs, Waiting: \d+ reqs, GPU KV cache usage: \d+\.\d%, Prefix cache hit rate: \d+\.\d%\n)")))
      << log;
}

TEST(serve_cli, disable_log_requests_and_disable_log_stats_turn_their_lines_off) {
  logged_server s("--disable-log-requests --disable-log-stats", "VLLM_LOG_STATS_INTERVAL=0.05");
  completed(s.server(), R"({"prompt": "Hello", "max_tokens": 2})");
  // Several stats intervals pass (no line is awaited: it must not come).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string log = s.log();
  EXPECT_EQ(log.find("/v1/completions"), std::string::npos) << log;
  EXPECT_EQ(log.find("Avg prompt throughput"), std::string::npos) << log;
}

TEST(serve_cli, the_log_level_comes_from_the_flag_else_troupe_logging_level_else_vllm_logging_level) {
  // An idle interval's stats line is a debug line, as vLLM's.
  logged_server debug("", "VLLM_LOG_STATS_INTERVAL=0.05 VLLM_LOGGING_LEVEL=DEBUG");
  EXPECT_NE(debug.log_once("[debug] Avg prompt throughput: 0.0 tokens/s").find("[debug] Avg prompt throughput: 0.0 tokens/s"),
            std::string::npos);
  logged_server quiet("--log-level error --trust-remote-code", "TROUPE_LOGGING_LEVEL=debug");
  completed(quiet.server(), R"({"prompt": "Hello", "max_tokens": 2})");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // for lines that must not come
  EXPECT_EQ(quiet.log(), "");  // not even the note of the flag without effect: a warning
  const auto bad = troupe_cmd("serve --port 0", "TROUPE_LOGGING_LEVEL=loud ");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("[error] TROUPE_LOGGING_LEVEL must be trace, debug, info, warning, error, critical or off, got 'loud'"),
            std::string::npos)
      << bad.err;
}
