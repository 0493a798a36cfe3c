// The OpenAI-compatible HTTP API of a live `troupe serve` on loopback, driven by curl.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "tests/support/server_process.hpp"

using json = nlohmann::json;
using troupe::testing::server_process;
using troupe::testing::shell;
namespace fs = std::filesystem;

namespace {

constexpr auto quote = troupe::testing::shell_quote;

struct http_reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

http_reply post(const server_process& s, const std::string& path, const std::string& body, const std::string& extra = "") {
  const fs::path headers = fs::temp_directory_path() / ("troupe_http_h_" + std::to_string(::getpid()) + "_" +
                                                        std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())));
  const std::string out = shell("curl -s -D " + headers.string() + " -w '\\n%{http_code}' " + extra + " " + quote(s.url(path)) +
                                " -H 'Content-Type: application/json' --data-binary " + quote(body));
  http_reply r;
  const size_t nl = out.rfind('\n');
  r.body = out.substr(0, nl);
  r.status = std::stoi(out.substr(nl + 1));
  std::ifstream in(headers);
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(c));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    r.headers[name] = value;
  }
  fs::remove(headers);
  return r;
}

// The data events of an SSE body, "[DONE]" included.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> events;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("data: ", 0) == 0) events.push_back(line.substr(6));
  return events;
}

std::string streamed_text(const std::string& body, std::string* finish_reason = nullptr) {
  std::string text;
  for (const auto& e : sse_events(body)) {
    if (e == "[DONE]") break;
    const json chunk = json::parse(e);
    for (const auto& c : chunk["choices"]) {
      text += c.contains("text") ? c["text"].get<std::string>() : c["delta"].value("content", "");
      if (finish_reason && !c["finish_reason"].is_null()) *finish_reason = c["finish_reason"];
    }
  }
  return text;
}

} // namespace

TEST(http_api, completions_answer_with_text_usage_and_finish_reason) {
  server_process s;
  const auto r = post(s, "/v1/completions", R"({"prompt": "Hello world", "max_tokens": 12, "temperature": 0, "ignore_eos": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "troupe-default");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + 12);
  // The stream of the same greedy request carries the same text, then a usage chunk, then [DONE].
  const auto st = post(s, "/v1/completions",
                       R"({"prompt": "Hello world", "max_tokens": 12, "temperature": 0, "ignore_eos": true, "stream": true,
                           "stream_options": {"include_usage": true}})");
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(st.headers.at("content-type"), "text/event-stream");
  std::string reason;
  EXPECT_EQ(streamed_text(st.body, &reason), j["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(reason, "length");
  const auto events = sse_events(st.body);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(json::parse(events[events.size() - 2])["usage"]["completion_tokens"], 12);
}

TEST(http_api, token_id_prompts_several_prompts_and_n_give_every_choice) {
  server_process s;
  const auto r = post(s, "/v1/completions", R"({"prompt": [[5, 6, 7], [8, 9]], "n": 2, "max_tokens": 3, "seed": 4, "ignore_eos": true})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  ASSERT_EQ(j["choices"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(j["choices"][i]["index"], i);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
}

TEST(http_api, the_same_seed_gives_the_same_text) {
  server_process s;
  const std::string body = R"({"prompt": "Once", "max_tokens": 16, "temperature": 1.0, "seed": 11, "ignore_eos": true})";
  const auto a = post(s, "/v1/completions", body), b = post(s, "/v1/completions", body);
  EXPECT_EQ(json::parse(a.body)["choices"][0]["text"], json::parse(b.body)["choices"][0]["text"]);
}

TEST(http_api, a_stop_string_ends_the_text_before_it) {
  server_process s;
  const auto full = post(s, "/v1/completions", R"({"prompt": "Hello", "max_tokens": 24, "temperature": 0, "ignore_eos": true})");
  const std::string text = json::parse(full.body)["choices"][0]["text"];
  ASSERT_GE(text.size(), 8u);
  const std::string stop = text.substr(4, 3);
  const size_t at = text.find(stop);
  const auto r = post(s, "/v1/completions", json({{"prompt", "Hello"}, {"max_tokens", 24}, {"temperature", 0}, {"ignore_eos", true}, {"stop", stop}}).dump());
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], text.substr(0, at));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

TEST(http_api, errors_are_openai_error_objects_with_status_type_and_param) {
  server_process s("--max-model-len 64");
  // vLLM's answers, type and all (FastAPI's "Bad Request" for bodies that do not parse).
  auto r = post(s, "/v1/completions", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "Bad Request");
  r = post(s, "/v1/completions", R"({"model": "gpt-4", "prompt": "x"})");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["error"]["message"], "The model `gpt-4` does not exist.");
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "model");
  r = post(s, "/v1/completions", R"({"prompt": [1, 2, 3], "max_tokens": 100})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["message"],
            "max_tokens=100 cannot be greater than max_model_len=max_total_tokens=64. Please request fewer output tokens. "
            "(parameter=max_tokens, value=100)");
  r = post(s, "/v1/completions", json({{"prompt", std::vector<int>(60, 1)}, {"max_tokens", 10}}).dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["message"].get<std::string>().rfind("This model's maximum context length is 64 tokens", 0), 0u)
      << r.body;
  r = post(s, "/v1/completions", R"({"prompt": "x", "temperature": -1})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("temperature"), std::string::npos);
  r = post(s, "/v1/completions", R"({"prompt": "x", "n": 0})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("n"), std::string::npos) << r.body;
  r = post(s, "/v1/nothing", "{}");
  EXPECT_EQ(r.status, 404);
  // The server still serves.
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status, 200);
}

// Polls /health until it is destroyed (at least once); every answer's status, in order.
class health_poller {
public:
  explicit health_poller(const server_process& s)
      : thread_([this, url = s.url("/health")] {
          do {
            // -m 10: a stalled gateway shows as a status of 000, not as a hung test.
            codes_.push_back(shell("curl -s -m 10 -o /dev/null -w '%{http_code}' " + quote(url)));
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          } while (!done_);
        }) {}
  ~health_poller() { stop(); }
  const std::vector<std::string>& stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
    return codes_;
  }

private:
  std::atomic<bool> done_{false};
  std::vector<std::string> codes_;
  std::thread thread_;
};

TEST(http_api, fields_that_would_size_unbounded_work_get_a_precise_400_while_health_answers) {
  server_process s("--max-model-len 64");
  const fs::path dir = fs::temp_directory_path() / ("troupe_bounds_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  health_poller health(s);
  const auto post_big = [&](const std::string& name, const json& body) {
    std::ofstream(dir / name) << body.dump();
    // "Expect:": for a body over 1 MB curl would otherwise wait a second for a 100 Continue.
    return post(s, "/v1/completions", "@" + (dir / name).string(), "-H 'Expect:'");
  };
  const auto message = [](const http_reply& r) { return json::parse(r.body)["error"]["message"].get<std::string>(); };

  // n: vLLM's bound, naming the number Python reads from 1e20 (int64 would saturate it).
  http_reply r = post(s, "/v1/completions", R"({"prompt": "hi", "n": 1e20})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message(r), "n must be at most 16384, got 100000000000000000000. Ask for fewer choices per prompt.");

  // logit_bias and stop_token_ids: at most one entry per token of the vocabulary.
  const auto expect_vocabulary_bound = [&](const http_reply& reply, const std::string& field, int count) {
    const std::regex expected(field + R"( must have at most (\d+) entries \(the vocabulary size\), got )" +
                              std::to_string(count) + R"(\. Send each token id once, and only ids below \1\.)");
    EXPECT_EQ(reply.status, 400);
    EXPECT_TRUE(std::regex_match(message(reply), expected)) << reply.body;
  };
  json bias = json::object();
  for (int i = 0; i < 200000; ++i) bias[std::to_string(i)] = 1.0;
  expect_vocabulary_bound(post_big("bias.json", {{"prompt", "hi"}, {"logit_bias", bias}}), "logit_bias", 200000);
  std::vector<int> ids(300000);
  for (int i = 0; i < 300000; ++i) ids[i] = i % 1000;
  expect_vocabulary_bound(post_big("stop_ids.json", {{"prompt", "hi"}, {"stop_token_ids", ids}}), "stop_token_ids",
                          300000);

  // priority is an int64 as in vLLM: 2^31 is served (not cut to a negative int32), 2^63 refused.
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "hi", "max_tokens": 2, "priority": 2147483648})").status, 200);
  r = post(s, "/v1/completions", R"({"prompt": "hi", "priority": 9223372036854775808})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message(r),
            "1 validation error:\n  {'type': 'less_than_equal', 'loc': 'body.priority', 'msg': 'Input should be less "
            "than or equal to 9223372036854775807', 'input': '9223372036854775808', 'ctx': {'le': "
            "9223372036854775807}}");

  // A text prompt with more characters than the context could hold is refused without tokenizing.
  r = post_big("prompt.json", {{"prompt", std::string(100000, 'a')}});
  EXPECT_EQ(r.status, 400);
  const std::regex too_many_characters(
      R"(This model's maximum context length is 64 tokens\. However, you requested 16 output tokens and your )"
      R"(prompt contains 100000 characters \(more than \d+ characters, which is the upper bound for 48 input )"
      R"(tokens\)\. Please reduce the length of the input prompt or the number of requested output tokens\. )"
      R"(\(parameter=input_text, value=100000\))");
  EXPECT_TRUE(std::regex_match(message(r), too_many_characters)) << r.body;

  for (const std::string& code : health.stop()) EXPECT_EQ(code, "200");
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status, 200);
  fs::remove_all(dir);
}

TEST(http_api, max_tokens_limit_judges_the_max_tokens_field_not_text_that_looks_like_it) {
  server_process s("--max-tokens-limit 8");
  // A nested "max_tokens" is not the field: the request asked nothing, and gets the limit.
  http_reply r = post(s, "/v1/completions", R"({"prompt": "x", "ignore_eos": true, "metadata": {"max_tokens": 100}})");
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status == 200) {
    EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 8);
  }
  // An escaped key is the field.
  r = post(s, "/v1/completions", R"({"prompt": "x", "max\u005ftokens": 100})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body,
            R"({"error":{"message":"max_tokens must be at most 8 on this server, got 100. Request fewer output )"
            R"(tokens.","type":"BadRequestError","param":"max_tokens","code":400}})");
  r = post(s, "/v1/chat/completions",
           R"({"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 9})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "max_completion_tokens");
}

TEST(http_api, api_keys_are_required_when_given) {
  server_process s("--api-key secret");
  auto r = post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "AuthenticationError");
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})", "-H 'Authorization: Bearer wrong'").status, 401);
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})", "-H 'Authorization: Bearer secret'").status, 200);
}

TEST(http_api, a_body_over_the_limit_gets_413) {
  server_process s;
  const fs::path big = fs::temp_directory_path() / ("troupe_big_body_" + std::to_string(::getpid()));
  {
    std::ofstream out(big);
    out << R"({"prompt": ")" << std::string(17 << 20, 'a') << R"("})";
  }
  const std::string code = shell("curl -s -o /dev/null -w '%{http_code}' " + quote(s.url("/v1/completions")) +
                                 " -H 'Content-Type: application/json' --data-binary @" + big.string());
  fs::remove(big);
  EXPECT_EQ(code, "413");
}

TEST(http_api, a_tenant_over_its_budget_gets_429_while_another_goes_on) {
  const fs::path tenants = fs::temp_directory_path() / ("troupe_tenants_" + std::to_string(::getpid()) + ".json");
  std::ofstream(tenants) << R"({"tenants": [{"name": "small", "api_keys": ["k-small"], "tokens_per_minute": 100},
                                          {"name": "big", "api_keys": ["k-big"]}]})";
  server_process s("--tenants-file " + tenants.string());
  const std::string body = R"({"prompt": [1, 2, 3, 4, 5], "max_tokens": 35})";  // costs 40 tokens
  EXPECT_EQ(post(s, "/v1/completions", body, "-H 'Authorization: Bearer k-small'").status, 200);
  EXPECT_EQ(post(s, "/v1/completions", body, "-H 'Authorization: Bearer k-small'").status, 200);
  const auto r = post(s, "/v1/completions", body, "-H 'Authorization: Bearer k-small'");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "RateLimitError");
  ASSERT_TRUE(r.headers.count("retry-after"));
  EXPECT_FALSE(r.headers.at("retry-after").empty());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(post(s, "/v1/completions", body, "-H 'Authorization: Bearer k-big'").status, 200);
  // With keys configured /metrics takes one too (it names the tenants).
  const std::string metrics = shell("curl -s -H 'Authorization: Bearer k-big' " + quote(s.url("/metrics")));
  EXPECT_NE(metrics.find("troupe:request_rejected_total{model_name=\"troupe-default\",reason=\"rate_limited\"} 1.0"), std::string::npos)
      << metrics.substr(0, 400);
  fs::remove(tenants);
}

TEST(http_api, many_concurrent_streams_each_equal_their_single_request_output_and_disconnects_free_their_blocks) {
  server_process s("--max-num-seqs 256");
  const int unique = 25, copies = 40, quitters = 100;  // 1,000 complete streams, 100 that hang up early
  const fs::path dir = fs::temp_directory_path() / ("troupe_streams_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::vector<std::string> expected(unique);
  for (int p = 0; p < unique; ++p) {
    const std::string body = json({{"prompt", "Prompt number " + std::to_string(p)}, {"max_tokens", 24}, {"temperature", 0},
                                   {"ignore_eos", true}}).dump();
    expected[p] = json::parse(post(s, "/v1/completions", body).body)["choices"][0]["text"];
    json streaming_body = json::parse(body);
    streaming_body["stream"] = true;
    std::ofstream(dir / ("body" + std::to_string(p) + ".json")) << streaming_body.dump();
  }
  std::ofstream(dir / "long.json") << R"({"prompt": "long", "max_tokens": 3000, "stream": true, "ignore_eos": true})";
  {
    std::ofstream cfg(dir / "streams.cfg");
    // Transfers are separated by "next" (a trailing one would be an empty transfer).
    for (int i = 0; i < unique * copies; ++i)
      cfg << (i ? "next\n" : "") << "url = \"" << s.url("/v1/completions") << "\"\noutput = \"" << (dir / ("out" + std::to_string(i))).string()
          << "\"\nheader = \"Content-Type: application/json\"\ndata-binary = \"@" << (dir / ("body" + std::to_string(i % unique) + ".json")).string()
          << "\"\n";
    std::ofstream quit(dir / "quitters.cfg");
    for (int i = 0; i < quitters; ++i)
      quit << (i ? "next\n" : "") << "url = \"" << s.url("/v1/completions") << "\"\noutput = /dev/null\nmax-time = 0.05\n"
           << "header = \"Content-Type: application/json\"\ndata-binary = \"@" << (dir / "long.json").string() << "\"\n";
  }
  std::thread quitting([&] { shell("curl -s --parallel --parallel-max 100 -K " + (dir / "quitters.cfg").string() + " 2>/dev/null"); });
  std::thread streaming([&] { shell("curl -s --parallel --parallel-max 1000 -K " + (dir / "streams.cfg").string()); });
  // /health answers throughout.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(shell("curl -s -m 2 -o /dev/null -w '%{http_code}' " + quote(s.url("/health"))), "200");
  streaming.join();
  quitting.join();
  int mismatched = 0;
  for (int i = 0; i < unique * copies; ++i) {
    std::ifstream in(dir / ("out" + std::to_string(i)));
    const std::string body((std::istreambuf_iterator<char>(in)), {});
    if (streamed_text(body) != expected[i % unique] && ++mismatched <= 3) ADD_FAILURE() << "stream " << i << ": " << body.substr(0, 300);
  }
  EXPECT_EQ(mismatched, 0);
  // Every block comes back once the hung-up requests are aborted.
  std::string metrics;
  for (int i = 0; i < 200; ++i) {
    metrics = shell("curl -s " + quote(s.url("/metrics")));
    if (metrics.find("troupe:num_requests_running{model_name=\"troupe-default\"} 0.0") != std::string::npos &&
        metrics.find("troupe:kv_cache_usage_perc{model_name=\"troupe-default\"} 0.0") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(metrics.find("troupe:kv_cache_usage_perc{model_name=\"troupe-default\"} 0.0"), std::string::npos);
  // The hung-up requests that reached the engine were aborted, none ran to its length (only the 25 + 1,000
  // complete ones did). Some hang up before the server has read them.
  EXPECT_NE(metrics.find("troupe:request_success_total{finished_reason=\"length\",model_name=\"troupe-default\"} 1025.0"), std::string::npos);
  EXPECT_EQ(metrics.find("troupe:request_success_total{finished_reason=\"abort\",model_name=\"troupe-default\"} 0.0"), std::string::npos);
  fs::remove_all(dir);
}

TEST(http_api, sigterm_lets_requests_in_flight_finish_refuses_new_ones_and_exits_0) {
  server_process s;
  std::string in_flight;
  std::thread running([&] {
    in_flight = shell("curl -s " + quote(s.url("/v1/completions")) +
                      " -d '{\"prompt\": \"x\", \"max_tokens\": 2000, \"ignore_eos\": true, \"stream\": true}'");
  });
  // Wait until it streams, then ask the server to stop.
  for (int i = 0; i < 100; ++i) {
    if (shell("curl -s " + quote(s.url("/metrics"))).find("troupe:num_requests_running{model_name=\"troupe-default\"} 1.0") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  s.signal(SIGTERM);
  std::string health;
  for (int i = 0; i < 100 && health != "503"; ++i) {
    health = shell("curl -s -o /dev/null -w '%{http_code}' " + quote(s.url("/health")));
    if (health != "503") std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(health, "503");
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "x"})").status, 503);
  running.join();
  std::string reason;
  streamed_text(in_flight, &reason);
  EXPECT_EQ(reason, "length");
  EXPECT_EQ(s.wait(), 0);
}

TEST(http_api, chat_completions_render_the_models_template_and_stream_deltas) {
  server_process s;
  const std::string body = R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
                              "max_tokens": 10, "temperature": 0, "ignore_eos": true})";
  const auto r = post(s, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["usage"]["completion_tokens"], 10);
  // The prompt is the ChatML rendering of the messages: /tokenize with the same messages counts it.
  const auto tok = post(s, "/tokenize", R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]})");
  ASSERT_EQ(tok.status, 200) << tok.body;
  EXPECT_EQ(json::parse(tok.body)["count"], j["usage"]["prompt_tokens"]);
  const auto detok = post(s, "/detokenize", json({{"tokens", json::parse(tok.body)["tokens"]}}).dump());
  EXPECT_EQ(json::parse(detok.body)["prompt"],
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  json streaming = json::parse(body);
  streaming["stream"] = true;
  const auto st = post(s, "/v1/chat/completions", streaming.dump());
  std::string reason;
  EXPECT_EQ(streamed_text(st.body, &reason), j["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_EQ(reason, "length");
  EXPECT_EQ(json::parse(sse_events(st.body).front())["choices"][0]["delta"]["role"], "assistant");
}

TEST(http_api, the_dashboard_page_and_its_figures_are_served) {
  server_process s("--dashboard-interval 0.2");
  for (int i = 0; i < 3; ++i) post(s, "/v1/completions", R"({"prompt": "Hi", "max_tokens": 4, "ignore_eos": true})");
  const std::string page = shell("curl -s " + quote(s.url("/dashboard")));
  EXPECT_NE(page.find("<title>troupe</title>"), std::string::npos);
  // Self-contained: no script, style or font from anywhere else.
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find(" src="), std::string::npos);
  const json figures = json::parse(shell("curl -s " + quote(s.url("/dashboard.json"))));
  EXPECT_EQ(figures["model"], "troupe-default");
  EXPECT_EQ(figures["finished"]["length"], 3);
  EXPECT_GT(figures["tokens_out_per_s"].get<double>(), 0);
  EXPECT_FALSE(figures["ttft_p50_s"].is_null());
  EXPECT_EQ(figures["running"], 0);
  EXPECT_EQ(figures["interval_s"], 0.2);
}

TEST(http_api, the_dashboard_history_holds_timestamped_samples_and_answers_only_newer_ones) {
  server_process s("--dashboard-interval 0.2");
  // One sample before the requests, so a later one holds them.
  json figures;
  auto history = [&](const std::string& query = "") {
    figures = json::parse(shell("curl -s " + quote(s.url("/dashboard.json" + query))));
    return figures["history"][0];
  };
  for (int i = 0; i < 250 && history()["t"].empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 0; i < 3; ++i) post(s, "/v1/completions", R"({"prompt": "Hi", "max_tokens": 4, "ignore_eos": true})");
  // The tokens the samples account for: each rate times its interval (the first one's starts with the history).
  auto generated = [&](const json& h) {
    double tokens = 0;
    int64_t previous = figures["started_ms"];
    for (size_t i = 0; i < h["t"].size(); ++i) {
      const int64_t t = h["t"][i];
      const json& rate = h["values"]["tokens_out_per_s"][i];
      if (!rate.is_null()) tokens += rate.get<double>() * static_cast<double>(t - previous) / 1000;
      previous = t;
    }
    return tokens;
  };
  json h;
  for (int i = 0; i < 250 && generated(h = history()) < 11.5; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(h["name"], "troupe-default");
  EXPECT_NEAR(generated(h), 12.0, 1e-6);  // 3 requests of 4 tokens
  const std::vector<int64_t> t = h["t"];
  ASSERT_GE(t.size(), 2u);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_GT(t.front(), figures["started_ms"].get<int64_t>());
  EXPECT_LE(t.back(), figures["now_ms"].get<int64_t>());
  for (const std::string column : {"ttft_p95_s", "running", "kv_cache_usage", "rejected_total", "steps_batch_le_1"})
    EXPECT_EQ(h["values"][column].size(), t.size()) << column;
  // A poller asks for what it lacks.
  const json newer = history("?since=" + std::to_string(t.back()));
  for (int64_t ms : newer["t"]) EXPECT_GT(ms, t.back());
  const json since_second = history("?since=" + std::to_string(t[0]));
  ASSERT_FALSE(since_second["t"].empty());
  EXPECT_EQ(since_second["t"][0], t[1]);
}

TEST(http_api, a_stalled_reader_is_cut_off_while_the_others_go_on) {
  server_process s("--max-stream-buffer 32");
  // A client that sends a streaming request and then never reads: a tiny receive window.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int small = 2048;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(s.http_port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string body = R"({"prompt": "stall", "max_tokens": 3000, "ignore_eos": true, "stream": true})";
  const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  // Everyone else is served meanwhile.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "Hi", "max_tokens": 8, "ignore_eos": true})").status, 200);
  std::string metrics;
  for (int i = 0; i < 250; ++i) {
    metrics = shell("curl -s " + quote(s.url("/metrics")));
    if (metrics.find("reason=\"slow_consumer\"} 1.0") != std::string::npos &&
        metrics.find("troupe:num_requests_running{model_name=\"troupe-default\"} 0.0") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  }
  EXPECT_NE(metrics.find("troupe:request_rejected_total{model_name=\"troupe-default\",reason=\"slow_consumer\"} 1.0"),
            std::string::npos);
  EXPECT_NE(metrics.find("troupe:num_requests_running{model_name=\"troupe-default\"} 0.0"), std::string::npos);
  ::close(fd);
}

TEST(http_api, logprobs_are_the_models_log_probabilities_of_the_sampled_tokens) {
  server_process s;
  // Greedy: the sampled token is the most likely one, so it heads the alternatives with the same logprob.
  auto r = post(s, "/v1/completions", R"({"prompt": "Hello", "max_tokens": 5, "temperature": 0, "ignore_eos": true, "logprobs": 3})");
  ASSERT_EQ(r.status, 200) << r.body;
  const json lp = json::parse(r.body)["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), 5u);
  ASSERT_EQ(lp["tokens"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const double chosen = lp["token_logprobs"][i];
    EXPECT_LE(chosen, 0.0);
    double best = -1e30;
    for (const auto& [token, value] : lp["top_logprobs"][i].items()) best = std::max(best, value.get<double>());
    EXPECT_DOUBLE_EQ(chosen, best);
    EXPECT_LE(lp["top_logprobs"][i].size(), 4u);
  }
  r = post(s, "/v1/chat/completions", R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0,
                                          "ignore_eos": true, "logprobs": true, "top_logprobs": 2, "stream": true})");
  size_t tokens = 0;
  for (const auto& e : sse_events(r.body)) {
    if (e == "[DONE]") break;
    const json chunk = json::parse(e);
    if (chunk["choices"].empty() || chunk["choices"][0]["logprobs"].is_null()) continue;
    for (const auto& t : chunk["choices"][0]["logprobs"]["content"]) {
      EXPECT_EQ(t["top_logprobs"].size(), 2u);
      EXPECT_DOUBLE_EQ(t["logprob"].get<double>(), t["top_logprobs"][0]["logprob"].get<double>());
      ++tokens;
    }
  }
  EXPECT_EQ(tokens, 3u);
}

TEST(http_api, a_full_queue_answers_429_with_retry_after_and_the_rest_are_served) {
  server_process s("--max-queue-len 2");
  const fs::path dir = fs::temp_directory_path() / ("troupe_queue_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Long prompts make the first step slow enough that many requests wait at once.
  std::ofstream(dir / "body.json") << json({{"prompt", std::vector<int>(1500, 7)}, {"max_tokens", 4}, {"ignore_eos", true}}).dump();
  {
    std::ofstream cfg(dir / "queue.cfg");
    for (int i = 0; i < 40; ++i)
      cfg << (i ? "next\n" : "") << "url = \"" << s.url("/v1/completions") << "\"\noutput = \"" << (dir / ("out" + std::to_string(i))).string()
          << "\"\nheader = \"Content-Type: application/json\"\ndata-binary = \"@" << (dir / "body.json").string()
          << "\"\nwrite-out = \"%{http_code}\\n\"\n";
  }
  const std::string codes = shell("curl -s --parallel --parallel-max 40 -K " + (dir / "queue.cfg").string());
  int ok = 0, full = 0, other = 0;
  std::istringstream in(codes);
  for (std::string code; std::getline(in, code);) (code == "200" ? ok : code == "429" ? full : other)++;
  EXPECT_EQ(ok + full, 40) << codes;
  EXPECT_EQ(other, 0);
  EXPECT_GT(full, 0);
  EXPECT_GT(ok, 0);
  for (int i = 0; i < 40; ++i) {
    std::ifstream body(dir / ("out" + std::to_string(i)));
    const json j = json::parse(std::string((std::istreambuf_iterator<char>(body)), {}));
    if (j.contains("error")) {
      EXPECT_EQ(j["error"]["type"], "RateLimitError");
      EXPECT_EQ(j["error"]["code"], 429);
    }
  }
  fs::remove_all(dir);
  // Every refusal is counted under its reason.
  const std::string metrics = shell("curl -s " + quote(s.url("/metrics")));
  EXPECT_NE(metrics.find("reason=\"queue_full\"} " + std::to_string(full) + ".0"), std::string::npos);
}

TEST(http_api, a_request_over_the_timeout_is_aborted_with_504) {
  server_process s("--request-timeout 0.3");
  const auto r = post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 3000, "ignore_eos": true})");
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "TimeoutError");
  // A short request still fits in the timeout, and the aborted one left nothing running.
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": "x", "max_tokens": 2})").status, 200);
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = shell("curl -s " + quote(s.url("/metrics")));
    if (metrics.find("troupe:num_requests_running{model_name=\"troupe-default\"} 0.0") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(metrics.find("troupe:num_requests_running{model_name=\"troupe-default\"} 0.0"), std::string::npos);
  EXPECT_NE(metrics.find("reason=\"timeout\"} 1.0"), std::string::npos);
}

TEST(http_api, a_model_without_a_tokenizer_serves_token_id_prompts_and_says_what_else_it_needs) {
  // The reference checkpoints are config and weights only, as after vLLM's --skip-tokenizer-init.
  server_process s(std::string("--model ") + TROUPE_TEST_DATA + "/reference/llama_f32");
  const auto ok = post(s, "/v1/completions", R"({"prompt": [5, 6, 7], "max_tokens": 4, "temperature": 0, "ignore_eos": true})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  const json j = json::parse(ok.body);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_EQ(j["choices"][0]["text"], "");
  const auto text = post(s, "/v1/completions", R"({"prompt": "Hello", "max_tokens": 4})");
  EXPECT_EQ(text.status, 400);
  EXPECT_NE(text.body.find("use token-id prompts"), std::string::npos) << text.body;
  const auto chat = post(s, "/v1/chat/completions", R"({"messages": [{"role": "user", "content": "Hi"}]})");
  EXPECT_EQ(chat.status, 400);
  const auto stop = post(s, "/v1/completions", R"({"prompt": [5, 6], "max_tokens": 4, "stop": ["x"]})");
  EXPECT_EQ(stop.status, 400);
  EXPECT_NE(stop.body.find("use stop_token_ids"), std::string::npos) << stop.body;
  // A stream sends a chunk for every token, with empty text, as vLLM does.
  const auto st = post(s, "/v1/completions", R"({"prompt": [5, 6, 7], "max_tokens": 4, "ignore_eos": true, "stream": true})");
  ASSERT_EQ(st.status, 200);
  const auto events = sse_events(st.body);
  ASSERT_EQ(events.size(), 5u) << st.body;  // 4 tokens, then [DONE]
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(json::parse(events[i])["choices"][0]["text"], "");
  // The server is still serving.
  EXPECT_EQ(post(s, "/v1/completions", R"({"prompt": [9], "max_tokens": 2})").status, 200);
}

// The issue-9 reproduction: one prompt longer than --max-num-batched-tokens, alone on the server,
// used to end the process (a step that sampled nothing took an argmax of zero rows). It is answered,
// with the text `troupe generate` gives the same prompt unchunked, and the server stays up.
TEST(http_api, a_prompt_longer_than_the_step_budget_is_answered_and_the_server_stays_up) {
  server_process server("--max-num-batched-tokens 64");
  for (const int len : {65, 100, 300}) {
    std::string ids;
    for (int i = 0; i < len; ++i) ids += (i ? "," : "") + std::to_string((i * 13 + 5) % 250);
    const http_reply r = post(server, "/v1/completions",
                              R"({"prompt": [)" + ids + R"(], "max_tokens": 6, "temperature": 0})");
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string expected = shell(std::string(TROUPE_BINARY) + " generate --prompt-token-ids " + ids +
                                       " --temperature 0 --max-tokens 6 --json 2>/dev/null");
    EXPECT_EQ(json::parse(r.body)["choices"][0]["text"], json::parse(expected)["text"]) << "prompt of " << len;
  }
  EXPECT_EQ(shell("curl -s -o /dev/null -w '%{http_code}' " + quote(server.url("/health"))), "200");
}

// SIGTERM with generations that outlive --shutdown-timeout: they are ended with an error their clients
// receive (an SSE error event, or a 503 for one still queued), and the process exits 0 within the timeout
// (it used to wait forever in the actor system's destructor for the requests' sink actors).
TEST(http_api, sigterm_ends_generations_longer_than_the_shutdown_timeout_with_an_error_and_exits_in_time) {
  server_process s("--shutdown-timeout 1 --max-num-seqs 1");
  std::vector<std::string> bodies(3);
  std::vector<std::thread> clients;
  for (auto& body : bodies)
    clients.emplace_back([&] {
      body = shell("curl -s -w '\\n%{http_code}' " + quote(s.url("/v1/completions")) +
                   " -d '{\"prompt\": \"x\", \"max_tokens\": 4000, \"ignore_eos\": true, \"stream\": true}'");
    });
  for (int i = 0; i < 200; ++i) {
    if (shell("curl -s " + quote(s.url("/metrics"))).find("troupe:num_requests_waiting{model_name=\"troupe-default\"} 2.0") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto start = std::chrono::steady_clock::now();
  s.signal(SIGTERM);
  EXPECT_EQ(s.wait(), 0);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 1.25) << "the shutdown timeout is 1 s";
  for (auto& c : clients) c.join();
  for (const std::string& body : bodies) {
    EXPECT_NE(body.find("The server shut down before the request finished (--shutdown-timeout 1 s)"), std::string::npos) << body;
    const std::string status = body.substr(body.rfind('\n') + 1);
    if (status == "200") EXPECT_EQ(sse_events(body.substr(0, body.rfind('\n'))).back(), "[DONE]") << body;
    else EXPECT_EQ(status, "503") << body;
  }
}
