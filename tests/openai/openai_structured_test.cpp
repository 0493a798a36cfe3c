// Structured outputs in OpenAI bodies (runtime/openai/openai_structured.cpp): each field's forms become one
// structured_output that reaches the sampling params; two constraints at once, a wrong type or a spec the
// compiler refuses is a 400 naming the field; tool_choice required/named become vLLM's JSON schemas.

#include <gtest/gtest.h>

#include <stdexcept>

#include "runtime/openai/openai_request.hpp"

namespace troupe {
namespace {

using kind = structured_output::kind;

const std::string user_hi = R"("messages": [{"role": "user", "content": "hi"}])";

// A test-only compiler: refuses a regex with an unbalanced "(" and a schema that is not an object, and
// records what it compiled.
std::vector<structured_output> compiled;

openai_server_config server(bool with_compiler = true) {
  openai_server_config s;
  s.served_model_names = {"tiny"};
  s.max_model_len = 128;
  s.vocab_size = 1000;
  if (with_compiler)
    s.compile_structured = [](const structured_output& spec) {
      if (spec.type == kind::regex && spec.text.find('(') != std::string::npos && spec.text.find(')') == std::string::npos)
        throw std::invalid_argument("unbalanced parenthesis at offset " + std::to_string(spec.text.find('(')));
      if (spec.type == kind::json_schema && (spec.text.empty() || spec.text.front() != '{'))
        throw std::invalid_argument("the schema must be a JSON object");
      compiled.push_back(spec);
    };
  return s;
}

std::optional<structured_output> chat_spec(const std::string& fields) {
  auto r = parse_chat_request("{" + user_hi + ", " + fields + "}", server());
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value().sampling.structured : std::nullopt;
}

api_error chat_error(const std::string& fields, bool with_compiler = true) {
  auto r = parse_chat_request("{" + user_hi + ", " + fields + "}", server(with_compiler));
  EXPECT_FALSE(r.ok());
  return r.ok() ? api_error{} : r.error();
}

void expect_400(const api_error& e, std::optional<std::string> param, std::string_view message) {
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.type, "BadRequestError");
  EXPECT_EQ(e.param, param);
  EXPECT_EQ(e.message, message);
}

TEST(openai_structured, response_format_json_object_and_json_schema) {
  EXPECT_EQ(chat_spec(R"("response_format": {"type": "json_object"})"), (structured_output{kind::json_object, ""}));
  EXPECT_EQ(chat_spec(R"("response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": true,
               "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}})"),
            (structured_output{kind::json_schema, R"({"type":"object","properties":{"a":{"type":"integer"}}})"}));
  EXPECT_EQ(chat_spec(R"("response_format": {"type": "text"})"), std::nullopt);
  expect_400(chat_error(R"("response_format": {"type": "json_schema", "json_schema": {"name": "p"}})"), "response_format",
             "response_format.json_schema.schema must be provided: the JSON schema the output follows.");
  expect_400(chat_error(R"("response_format": {"type": "yaml"})"), "response_format",
             "response_format.type must be 'text', 'json_object' or 'json_schema', got 'yaml'.");
}

TEST(openai_structured, vllms_guided_fields) {
  EXPECT_EQ(chat_spec(R"("guided_json": {"type": "object"})"), (structured_output{kind::json_schema, R"({"type":"object"})"}));
  EXPECT_EQ(chat_spec(R"("guided_json": "{\"type\": \"object\"}")"),
            (structured_output{kind::json_schema, R"({"type": "object"})"}));
  EXPECT_EQ(chat_spec(R"("guided_regex": "[a-z]+@[a-z]+\\.com")"), (structured_output{kind::regex, R"([a-z]+@[a-z]+\.com)"}));
  EXPECT_EQ(chat_spec(R"("guided_choice": ["yes", "no", "ça va"])"), (structured_output{kind::choice, R"(["yes","no","ça va"])"}));
  EXPECT_EQ(chat_spec(R"("guided_grammar": "root ::= \"a\"")"), (structured_output{kind::grammar, R"(root ::= "a")"}));
  EXPECT_EQ(chat_spec(R"("guided_regex": null)"), std::nullopt);
}

TEST(openai_structured, the_structured_outputs_object) {
  EXPECT_EQ(chat_spec(R"("structured_outputs": {"json": {"type": "object"}})"),
            (structured_output{kind::json_schema, R"({"type":"object"})"}));
  EXPECT_EQ(chat_spec(R"("structured_outputs": {"regex": "\\d+"})"), (structured_output{kind::regex, R"(\d+)"}));
  EXPECT_EQ(chat_spec(R"("structured_outputs": {"choice": ["a", "b"]})"), (structured_output{kind::choice, R"(["a","b"])"}));
  EXPECT_EQ(chat_spec(R"("structured_outputs": {"grammar": "root ::= \"a\""})"), (structured_output{kind::grammar, R"(root ::= "a")"}));
  EXPECT_EQ(chat_spec(R"("structured_outputs": {"json_object": true, "disable_fallback": true})"),
            (structured_output{kind::json_object, ""}));
  expect_400(chat_error(R"("structured_outputs": {"regex": "a", "whitespace_pattern": " "})"),
             "structured_outputs.whitespace_pattern", "`structured_outputs.whitespace_pattern` is not supported by this server.");
}

TEST(openai_structured, completions_take_the_same_fields_and_pass_the_spec_to_the_engine) {
  auto r = parse_completion_request(R"({"prompt": "x", "guided_choice": ["a", "b"]})", server());
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto g = to_generation(r.value(), 3, server());
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g.value().params.structured, (structured_output{kind::choice, R"(["a","b"])"}));
  auto c = parse_chat_request("{" + user_hi + R"(, "response_format": {"type": "json_object"}})", server());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(to_generation(c.value(), 3, server()).value().params.structured, (structured_output{kind::json_object, ""}));
}

TEST(openai_structured, two_constraints_at_once_are_refused) {
  expect_400(chat_error(R"("guided_regex": "a", "response_format": {"type": "json_object"})"), std::nullopt,
             "You can only use one kind of structured outputs constraint but multiple are specified: response_format, "
             "guided_regex.");
  expect_400(chat_error(R"("guided_grammar": "root ::= \"a\"", "guided_json": {"type": "object"})"), std::nullopt,
             "You can only use one kind of structured outputs constraint but multiple are specified: guided_json, "
             "guided_grammar.");
  // vLLM's own validator answers first for two of json/regex/choice in structured_outputs.
  EXPECT_NE(chat_error(R"("structured_outputs": {"regex": "a", "choice": ["a"]})").message.find(
                "You can only use one kind of constraints for structured outputs"),
            std::string::npos);
}

TEST(openai_structured, a_spec_the_compiler_refuses_is_a_400_naming_its_field) {
  expect_400(chat_error(R"("guided_regex": "(ab")"), "guided_regex", "guided_regex: unbalanced parenthesis at offset 0");
  expect_400(chat_error(R"("structured_outputs": {"regex": "x(ab"})"), "structured_outputs",
             "structured_outputs.regex: unbalanced parenthesis at offset 1");
  expect_400(chat_error(R"("guided_json": "[1, 2]")"), "guided_json", "guided_json: the schema must be a JSON object");
  auto c = parse_completion_request(R"({"prompt": "x", "guided_regex": "(("})", server());
  ASSERT_FALSE(c.ok());
  expect_400(c.error(), "guided_regex", "guided_regex: unbalanced parenthesis at offset 0");
}

TEST(openai_structured, wrong_types_are_refused_naming_the_field) {
  expect_400(chat_error(R"("guided_regex": 5)"), "guided_regex", "guided_regex must be a string.");
  expect_400(chat_error(R"("guided_choice": [])"), "guided_choice", "guided_choice must be a non-empty list of strings.");
  expect_400(chat_error(R"("guided_choice": ["a", 1])"), "guided_choice", "guided_choice must be a non-empty list of strings.");
  expect_400(chat_error(R"("guided_json": 3)"), "guided_json",
             "guided_json must be a JSON schema (an object, or a string holding one).");
}

TEST(openai_structured, without_a_grammar_engine_the_fields_are_refused_not_ignored) {
  expect_400(chat_error(R"("guided_regex": "a+")", false), "guided_regex", "`guided_regex` is not supported by this server.");
  expect_400(chat_error(R"("structured_outputs": {"choice": ["a"]})", false), "structured_outputs",
             "`structured_outputs` is not supported by this server.");
}

TEST(openai_structured, tool_choice_required_is_an_array_of_calls_of_the_given_tools) {
  const std::string tools = R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
      "properties":{"city":{"$ref":"#/$defs/city"}},"$defs":{"city":{"type":"string"}}}}},
      {"type":"function","function":{"name":"now"}}])";
  auto r = tool_choice_structured_output(tools, tool_choice_mode::required, "");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r.value().has_value());
  EXPECT_EQ(r.value()->type, kind::json_schema);
  EXPECT_EQ(r.value()->text,
            R"({"type":"array","minItems":1,"items":{"type":"object","anyOf":[)"
            R"({"properties":{"name":{"type":"string","enum":["get_weather"]},"parameters":{"type":"object",)"
            R"("properties":{"city":{"$ref":"#/$defs/city"}}}},"required":["name","parameters"]},)"
            R"({"properties":{"name":{"type":"string","enum":["now"]},"parameters":{"type":"object","properties":{}}},)"
            R"("required":["name","parameters"]}]},"$defs":{"city":{"type":"string"}}})");
}

TEST(openai_structured, a_named_tool_choice_is_that_tools_parameters) {
  const std::string tools = R"([{"type":"function","function":{"name":"a","parameters":{"type":"object","required":["x"]}}},
      {"type":"function","function":{"name":"b"}}])";
  EXPECT_EQ(tool_choice_structured_output(tools, tool_choice_mode::function, "a").value(),
            (structured_output{kind::json_schema, R"({"type":"object","required":["x"]})"}));
  EXPECT_EQ(tool_choice_structured_output(tools, tool_choice_mode::function, "b").value(),
            (structured_output{kind::json_schema, R"({"type":"object","properties":{}})"}));
  expect_400(tool_choice_structured_output(tools, tool_choice_mode::function, "c").error(), "tool_choice",
             "Tool 'c' has not been passed in `tools`.");
  EXPECT_EQ(tool_choice_structured_output(tools, tool_choice_mode::auto_, "").value(), std::nullopt);
  EXPECT_EQ(tool_choice_structured_output(tools, tool_choice_mode::none, "").value(), std::nullopt);
}

TEST(openai_structured, two_tools_defining_one_def_differently_are_refused) {
  const std::string tools = R"([{"type":"function","function":{"name":"a","parameters":{"$defs":{"t":{"type":"string"}}}}},
      {"type":"function","function":{"name":"b","parameters":{"$defs":{"t":{"type":"integer"}}}}}])";
  expect_400(tool_choice_structured_output(tools, tool_choice_mode::required, "").error(), "tools",
             "Tool definition 't' has multiple schemas, which is not supported.");
}

// ---- the request path: tool_choice required / named set the chat's constraint

const std::string weather_tool = R"("tools": [{"type": "function", "function": {"name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])";
const std::string weather_parameters = R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})";

TEST(openai_structured, tool_choice_required_constrains_the_chat_to_its_array_of_calls) {
  EXPECT_EQ(chat_spec(weather_tool + R"(, "tool_choice": "required")"),
            (structured_output{kind::json_schema,
                               R"({"type":"array","minItems":1,"items":{"type":"object","anyOf":[{"properties":{"name":)"
                               R"({"type":"string","enum":["get_weather"]},"parameters":)" +
                                   weather_parameters + R"(},"required":["name","parameters"]}]}})"}));
}

TEST(openai_structured, a_named_tool_choice_constrains_the_chat_to_that_tools_parameters) {
  EXPECT_EQ(chat_spec(weather_tool + R"(, "tool_choice": {"type": "function", "function": {"name": "get_weather"}})"),
            (structured_output{kind::json_schema, weather_parameters}));
}

TEST(openai_structured, tool_choice_auto_and_none_leave_the_chat_unconstrained) {
  EXPECT_EQ(chat_spec(weather_tool + R"(, "tool_choice": "none")"), std::nullopt);
  EXPECT_EQ(chat_spec(weather_tool + R"(, "tool_choice": "none", "guided_regex": "a+")"), (structured_output{kind::regex, "a+"}));
}

// vLLM sets structured_outputs.json from the forced call over whatever else the request asked for.
TEST(openai_structured, a_forced_tool_call_replaces_response_format_and_guided_fields) {
  const std::string named = weather_tool + R"(, "tool_choice": {"type": "function", "function": {"name": "get_weather"}})";
  EXPECT_EQ(chat_spec(named + R"(, "response_format": {"type": "json_object"})"),
            (structured_output{kind::json_schema, weather_parameters}));
  EXPECT_EQ(chat_spec(named + R"(, "guided_regex": "[0-9]+")"), (structured_output{kind::json_schema, weather_parameters}));
  EXPECT_EQ(chat_spec(weather_tool + R"(, "tool_choice": "required", "guided_choice": ["a"])")->type, kind::json_schema);
  // The replaced fields are still checked as vLLM checks them.
  expect_400(chat_error(named + R"(, "guided_regex": "((")"), "guided_regex", "guided_regex: unbalanced parenthesis at offset 0");
  expect_400(chat_error(named + R"(, "guided_regex": "a", "guided_choice": ["a"])"), std::nullopt,
             "You can only use one kind of structured outputs constraint but multiple are specified: guided_regex, "
             "guided_choice.");
}

TEST(openai_structured, without_a_grammar_engine_a_forced_tool_call_is_refused_not_served_unconstrained) {
  expect_400(chat_error(weather_tool + R"(, "tool_choice": "required")", false), "tool_choice",
             "`tool_choice` is not supported by this server.");
}

} // namespace
} // namespace troupe
