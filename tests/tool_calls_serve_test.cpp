// Tool calling and reasoning on a live `troupe serve` (CPU backend, the built-in small model): the flags as
// vLLM's, tool_choice "auto" refused without them with vLLM's message, and the parsers reading the sampled
// text end to end: a non-streamed answer and the same (greedy) answer streamed read the same.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/raw_http.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/server_process.hpp"

using json = nlohmann::json;
using troupe::testing::http_request;
using troupe::testing::raw_connection;
using troupe::testing::raw_response;
using troupe::testing::run_command;
using troupe::testing::server_process;

namespace {

raw_response post(const server_process& s, const std::string& body) {
  raw_connection c(s.http_port());
  c.send(http_request("POST", "/v1/chat/completions", body, "Connection: close\r\n"));
  c.shutdown_write();
  auto r = c.read_response();
  if (!r) throw std::runtime_error("no response");
  return *r;
}

// The chunks of an SSE body, without [DONE].
std::vector<json> events(const std::string& body) {
  std::vector<json> out;
  for (size_t at = body.find("data: "); at != std::string::npos; at = body.find("data: ", at + 6)) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    if (data != "[DONE]") out.push_back(json::parse(data));
  }
  return out;
}

const std::string tools = R"("tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])";

std::string chat_body(bool stream, const std::string& extra = "") {
  return R"({"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 12, "temperature": 0, "ignore_eos": true, )" +
         tools + extra + (stream ? R"(, "stream": true})" : "}");
}

TEST(tool_calls_serve, auto_tool_choice_without_the_flags_is_refused_with_vllms_message) {
  server_process s("--client-port -1");
  const raw_response r = post(s, chat_body(false));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["message"],
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set");
}

TEST(tool_calls_serve, a_tools_request_answers_in_the_openai_shape_and_streams_the_same_reading) {
  server_process s("--client-port -1 --enable-auto-tool-choice --tool-call-parser hermes");
  const raw_response whole = post(s, chat_body(false));
  ASSERT_EQ(whole.status, 200) << whole.body;
  const json message = json::parse(whole.body)["choices"][0]["message"];
  const std::string finish = json::parse(whole.body)["choices"][0]["finish_reason"];
  ASSERT_TRUE(message["tool_calls"].is_array());
  EXPECT_EQ(finish, message["tool_calls"].empty() ? std::string("length") : std::string("tool_calls"));
  for (const json& call : message["tool_calls"]) {
    EXPECT_EQ(call["type"], "function");
    EXPECT_TRUE(json::parse(call["function"]["arguments"].get<std::string>()).is_object());
  }
  // The same greedy output streamed: its content pieces and tool-call pieces add up to the message.
  const raw_response streamed = post(s, chat_body(true));
  ASSERT_EQ(streamed.status, 200);
  std::string content;
  std::vector<std::pair<std::string, std::string>> calls;
  std::string last_finish;
  for (const json& e : events(streamed.body)) {
    const json& choice = e["choices"][0];
    if (choice["delta"].contains("content")) content += choice["delta"]["content"].get<std::string>();
    if (choice["delta"].contains("tool_calls"))
      for (const json& t : choice["delta"]["tool_calls"]) {
        if (t.contains("id")) calls.emplace_back(t["function"]["name"], "");
        if (t["function"].contains("arguments")) calls.back().second += t["function"]["arguments"].get<std::string>();
      }
    if (!choice["finish_reason"].is_null()) last_finish = choice["finish_reason"];
  }
  EXPECT_EQ(content, message["content"].is_null() ? "" : message["content"].get<std::string>());
  ASSERT_EQ(calls.size(), message["tool_calls"].size());
  for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i].second, message["tool_calls"][i]["function"]["arguments"]);
  EXPECT_EQ(last_finish, finish);
}

TEST(tool_calls_serve, the_deepseek_r1_reasoning_parser_reads_sampled_text_without_an_end_as_reasoning) {
  server_process s("--client-port -1 --reasoning-parser deepseek_r1");
  const std::string body = R"({"messages": [{"role": "user", "content": "Think."}], "max_tokens": 10, "temperature": 0,
    "ignore_eos": true)";
  const raw_response whole = post(s, body + "}");
  ASSERT_EQ(whole.status, 200) << whole.body;
  const json message = json::parse(whole.body)["choices"][0]["message"];
  ASSERT_TRUE(message["reasoning_content"].is_string()) << whole.body;
  EXPECT_FALSE(message["reasoning_content"].get<std::string>().empty());
  EXPECT_TRUE(message["content"].is_null());
  std::string reasoning;
  for (const json& e : events(post(s, body + R"(, "stream": true})").body)) {
    const json& delta = e["choices"][0]["delta"];
    EXPECT_FALSE(delta.contains("content") && !delta["content"].get<std::string>().empty()) << delta;
    if (delta.contains("reasoning_content")) reasoning += delta["reasoning_content"].get<std::string>();
  }
  EXPECT_EQ(reasoning, message["reasoning_content"]);
  // include_reasoning false leaves it out.
  const json hidden = json::parse(post(s, body + R"(, "include_reasoning": false})").body)["choices"][0]["message"];
  EXPECT_TRUE(hidden["reasoning_content"].is_null());
}

// Tool parsers whose markers may be special tokens (hermes, qwen3, mistral) turn skip_special_tokens off, as
// vLLM's adjust_request does; the engine honours the field for every request.
TEST(tool_calls_serve, skip_special_tokens_false_keeps_special_tokens_in_the_text) {
  server_process s("--client-port -1");
  raw_connection t(s.http_port());
  t.send(http_request("POST", "/tokenize", R"({"prompt": "<|im_start|>", "add_special_tokens": false})", "Connection: close\r\n"));
  t.shutdown_write();
  const json tokens = json::parse(t.read_response()->body)["tokens"];
  ASSERT_EQ(tokens.size(), 1u);
  const std::string bias = R"({"prompt": "Hi", "max_tokens": 2, "temperature": 0, "logit_bias": {")" +
                           std::to_string(tokens[0].get<int>()) + R"(": 100})";
  auto text = [&](const std::string& extra) {
    raw_connection c(s.http_port());
    c.send(http_request("POST", "/v1/completions", bias + extra + "}", "Connection: close\r\n"));
    c.shutdown_write();
    return json::parse(c.read_response()->body)["choices"][0]["text"].get<std::string>();
  };
  EXPECT_EQ(text(R"(, "skip_special_tokens": false)"), "<|im_start|><|im_start|>");
  EXPECT_EQ(text(""), "");
}

TEST(tool_calls_serve, unknown_parser_names_exit_1_naming_the_valid_ones) {
  const auto tool = run_command(std::string(TROUPE_BINARY) + " serve --enable-auto-tool-choice --tool-call-parser pythonic </dev/null");
  EXPECT_EQ(tool.exit_code, 1);
  EXPECT_NE(tool.err.find("invalid tool call parser: pythonic (chose from { hermes,llama3_json,mistral,qwen3,qwen3_coder })"),
            std::string::npos)
      << tool.err;
  const auto reasoning = run_command(std::string(TROUPE_BINARY) + " serve --reasoning-parser granite </dev/null");
  EXPECT_EQ(reasoning.exit_code, 1);
  EXPECT_NE(reasoning.err.find("invalid reasoning parser: granite (chose from { qwen3,deepseek_r1 })"), std::string::npos)
      << reasoning.err;
  const auto alone = run_command(std::string(TROUPE_BINARY) + " serve --enable-auto-tool-choice </dev/null");
  EXPECT_EQ(alone.exit_code, 1);
  EXPECT_NE(alone.err.find("--enable-auto-tool-choice requires --tool-call-parser"), std::string::npos) << alone.err;
  const auto plugin = run_command(std::string(TROUPE_BINARY) + " serve --tool-parser-plugin x.py </dev/null");
  EXPECT_EQ(plugin.exit_code, 1);
}

} // namespace
