// Tool calling and reasoning on a live `troupe serve` (CPU backend, the built-in small model): the flags as
// vLLM's, tool_choice "auto" refused without them with vLLM's message, and the parsers reading the sampled
// text end to end: a non-streamed answer and the same (greedy) answer streamed read the same.

#include <gtest/gtest.h>

#include <algorithm>

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

// ---- tool_choice "required" and a named function: constrained decoding makes every sampled answer a call

// Two tools whose parameters are bounded, so every constrained output finishes well inside max_tokens.
const std::string bounded_tools = R"("tools": [
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": false}}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
    "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"], "additionalProperties": false}}}])";

size_t code_points(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Whether `arguments` (a JSON string) holds arguments bounded_tools' `name` accepts; why not, when not.
std::string invalid_arguments(const std::string& name, const std::string& arguments) {
  const json a = json::parse(arguments, nullptr, false);
  if (a.is_discarded() || !a.is_object()) return "not a JSON object: " + arguments;
  if (name == "get_weather") {
    if (a.size() != 2 || !a.contains("city") || !a.contains("days")) return "keys: " + arguments;
    if (!a["city"].is_string() || code_points(a["city"].get<std::string>()) > 8) return "city: " + arguments;
    if (!a["days"].is_number_integer() || a["days"].get<int64_t>() < 1 || a["days"].get<int64_t>() > 7) return "days: " + arguments;
    return "";
  }
  if (name == "get_time") {
    if (a.size() != 1 || !a.contains("zone") || (a["zone"] != "utc" && a["zone"] != "cet")) return "zone: " + arguments;
    return "";
  }
  return "unknown tool " + name;
}

// "required" is vLLM's array without maxItems, and JSON allows whitespace between tokens: the sampled array
// of calls may run long, hence the larger max_tokens.
std::string sampled_body(int seed, const std::string& tool_choice, bool stream) {
  const int max_tokens = tool_choice == R"("required")" ? 2000 : 300;
  return R"({"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": )" + std::to_string(max_tokens) +
         R"(, "temperature": 1, "seed": )" + std::to_string(seed) + ", " + bounded_tools + R"(, "tool_choice": )" + tool_choice +
         (stream ? R"(, "stream": true})" : "}");
}

struct streamed_calls {
  std::vector<json> calls;  // {"id", "name", "arguments"} in index order
  std::string content;
  std::string finish_reason;
};

// A streamed choice's tool-call deltas put together: the first delta of an index carries its id, type and
// name, the rest only argument pieces.
streamed_calls read_stream(const std::string& body) {
  streamed_calls out;
  for (const json& e : events(body)) {
    if (e["choices"].empty()) continue;
    const json& choice = e["choices"][0];
    const json& delta = choice["delta"];
    if (delta.contains("content") && delta["content"].is_string()) out.content += delta["content"].get<std::string>();
    if (delta.contains("tool_calls"))
      for (const json& t : delta["tool_calls"]) {
        const size_t index = t["index"].get<size_t>();
        if (index == out.calls.size()) {
          EXPECT_TRUE(t.contains("id")) << t;
          EXPECT_EQ(t["type"], "function") << t;
          out.calls.push_back(json{{"id", t["id"]}, {"name", t["function"]["name"]}, {"arguments", ""}});
        } else {
          EXPECT_LT(index, out.calls.size()) << t;
          EXPECT_FALSE(t.contains("id")) << t;
        }
        if (t["function"].contains("arguments"))
          out.calls[index]["arguments"] = out.calls[index]["arguments"].get<std::string>() + t["function"]["arguments"].get<std::string>();
      }
    if (!choice["finish_reason"].is_null()) out.finish_reason = choice["finish_reason"];
  }
  return out;
}

bool is_vllm_tool_call_id(const json& id) {
  const std::string prefix = "chatcmpl-tool-";
  if (!id.is_string()) return false;
  const std::string s = id.get<std::string>();
  return s.rfind(prefix, 0) == 0 && s.size() > prefix.size() &&
         s.find_first_not_of("0123456789abcdef", prefix.size()) == std::string::npos;
}

// vLLM serves required and named without --enable-auto-tool-choice or a parser: the server has neither.
TEST(tool_calls_serve, tool_choice_required_answers_every_sampled_request_with_valid_calls_streamed_or_not) {
  server_process s("--client-port -1");
  for (int seed = 0; seed < 4; ++seed) {
    const raw_response whole = post(s, sampled_body(seed, R"("required")", false));
    ASSERT_EQ(whole.status, 200) << whole.body;
    const json choice = json::parse(whole.body)["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << whole.body;
    EXPECT_EQ(choice["message"]["content"], "") << whole.body;
    const json& calls = choice["message"]["tool_calls"];
    ASSERT_TRUE(calls.is_array() && !calls.empty()) << whole.body;
    for (const json& call : calls) {
      EXPECT_TRUE(is_vllm_tool_call_id(call["id"])) << call;
      EXPECT_EQ(call["type"], "function");
      EXPECT_EQ(invalid_arguments(call["function"]["name"], call["function"]["arguments"]), "") << call;
    }
    // The same seed streamed samples the same calls; their argument pieces add up to the same arguments.
    const streamed_calls streamed = read_stream(post(s, sampled_body(seed, R"("required")", true)).body);
    EXPECT_EQ(streamed.finish_reason, "tool_calls");
    EXPECT_EQ(streamed.content, "");
    ASSERT_EQ(streamed.calls.size(), calls.size()) << whole.body;
    for (size_t i = 0; i < calls.size(); ++i) {
      EXPECT_TRUE(is_vllm_tool_call_id(streamed.calls[i]["id"])) << streamed.calls[i];
      EXPECT_EQ(streamed.calls[i]["name"], calls[i]["function"]["name"]);
      EXPECT_EQ(streamed.calls[i]["arguments"], calls[i]["function"]["arguments"]);
    }
  }
}

TEST(tool_calls_serve, a_named_tool_choice_answers_every_sampled_request_with_that_functions_valid_arguments) {
  server_process s("--client-port -1");
  const std::string named = R"({"type": "function", "function": {"name": "get_weather"}})";
  for (int seed = 0; seed < 4; ++seed) {
    const raw_response whole = post(s, sampled_body(seed, named, false));
    ASSERT_EQ(whole.status, 200) << whole.body;
    const json choice = json::parse(whole.body)["choices"][0];
    // vLLM keeps the engine's finish_reason for a named function: the constrained output ended, "stop".
    EXPECT_EQ(choice["finish_reason"], "stop") << whole.body;
    EXPECT_EQ(choice["message"]["content"], "") << whole.body;
    const json& calls = choice["message"]["tool_calls"];
    ASSERT_EQ(calls.size(), 1u) << whole.body;
    EXPECT_TRUE(is_vllm_tool_call_id(calls[0]["id"])) << calls[0];
    EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(invalid_arguments("get_weather", calls[0]["function"]["arguments"]), "") << calls[0];
    const streamed_calls streamed = read_stream(post(s, sampled_body(seed, named, true)).body);
    EXPECT_EQ(streamed.finish_reason, "stop");
    ASSERT_EQ(streamed.calls.size(), 1u);
    EXPECT_EQ(streamed.calls[0]["name"], "get_weather");
    EXPECT_EQ(streamed.calls[0]["arguments"], calls[0]["function"]["arguments"]);
  }
}

// tool_choice auto with a guided_regex that forces hermes-format text (vLLM accepts the two together): the
// hermes parser reads the sampled text into tool_calls.
TEST(tool_calls_serve, auto_tool_choice_reads_sampled_text_forced_into_the_hermes_format_as_tool_calls) {
  server_process s("--client-port -1 --enable-auto-tool-choice --tool-call-parser hermes");
  const std::string regex = R"(<tool_call>\\n\\{\"name\": \"get_weather\", \"arguments\": \\{\"city\": \"[a-z]{1,8}\", \"days\": [1-7]\\}\\}\\n</tool_call>)";
  for (int seed = 0; seed < 3; ++seed) {
    const std::string body = R"({"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 100, "temperature": 1, "seed": )" +
                             std::to_string(seed) + ", " + bounded_tools + R"(, "guided_regex": ")" + regex + "\"";
    const raw_response whole = post(s, body + "}");
    ASSERT_EQ(whole.status, 200) << whole.body;
    const json choice = json::parse(whole.body)["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << whole.body;
    EXPECT_TRUE(choice["message"]["content"].is_null()) << whole.body;
    const json& calls = choice["message"]["tool_calls"];
    ASSERT_EQ(calls.size(), 1u) << whole.body;
    EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(invalid_arguments("get_weather", calls[0]["function"]["arguments"]), "") << calls[0];
    const streamed_calls streamed = read_stream(post(s, body + R"(, "stream": true})").body);
    EXPECT_EQ(streamed.finish_reason, "tool_calls");
    ASSERT_EQ(streamed.calls.size(), 1u);
    EXPECT_EQ(streamed.calls[0]["arguments"], calls[0]["function"]["arguments"]);
  }
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
