// OpenAI request parsing and validation: every refusal with vLLM's exact status, type, param and
// message; every accepted field form.

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/python_json.hpp"

namespace troupe {
namespace {

const std::string user_hi = R"("messages": [{"role": "user", "content": "hi"}])";

openai_server_config tiny_server() {
  openai_server_config s;
  s.served_model_names = {"tiny", "tiny-alias"};
  s.max_model_len = 128;
  s.vocab_size = 1000;
  return s;
}

chat_request chat(std::string_view body) {
  auto r = parse_chat_request(body, tiny_server());
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : chat_request{};
}

api_error chat_error(std::string_view body) {
  auto r = parse_chat_request(body, tiny_server());
  EXPECT_FALSE(r.ok());
  return r.ok() ? api_error{} : r.error();
}

// The error to_generation gives a chat body that parses, for a 10-token prompt.
api_error chat_generation_error(std::string_view body, int64_t num_prompt_tokens = 10) {
  auto g = to_generation(chat(body), num_prompt_tokens, tiny_server());
  EXPECT_FALSE(g.ok());
  return g.ok() ? api_error{} : g.error();
}

openai_generation chat_generation(std::string_view body, int64_t num_prompt_tokens = 10) {
  auto g = to_generation(chat(body), num_prompt_tokens, tiny_server());
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message);
  return g.ok() ? g.value() : openai_generation{};
}

completion_request completion(std::string_view body) {
  auto r = parse_completion_request(body, tiny_server());
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : completion_request{};
}

api_error completion_error(std::string_view body) {
  auto r = parse_completion_request(body, tiny_server());
  EXPECT_FALSE(r.ok());
  return r.ok() ? api_error{} : r.error();
}

void expect_error(const api_error& e, int status, std::string_view type, std::optional<std::string> param,
                  std::string_view message) {
  EXPECT_EQ(e.status, status);
  EXPECT_EQ(e.code, status);
  EXPECT_EQ(e.type, type);
  EXPECT_EQ(e.param, param);
  EXPECT_EQ(e.message, message);
}

// ---- the body as FastAPI decodes it ----

TEST(OpenaiRequest, InvalidJsonIsAValidationErrorNamingPythonsMessageAndCharacterPosition) {
  expect_error(chat_error(R"({"model": "tiny",})"), 400, "Bad Request", "body.17",
               "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.17', 'msg': 'JSON decode error', "
               "'input': '<dict of 0 items>', 'ctx': {'error': 'Expecting property name enclosed in double quotes'}}");
}

TEST(OpenaiRequest, JsonErrorPositionsCountCharactersNotBytes) {
  expect_error(chat_error("{\"m\": \"\xC3\xA9\xC3\xA9\" x}"), 400, "Bad Request", "body.11",
               "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.11', 'msg': 'JSON decode error', "
               "'input': '<dict of 0 items>', 'ctx': {'error': \"Expecting ',' delimiter\"}}");
}

TEST(OpenaiRequest, EmptyBodyIsAMissingBody) {
  expect_error(chat_error(""), 400, "Bad Request", "body",
               "1 validation error:\n  {'type': 'missing', 'loc': 'body', 'msg': 'Field required', 'input': 'None'}");
}

TEST(OpenaiRequest, JsonNullBodyIsAMissingBody) {
  expect_error(chat_error(" null "), 400, "Bad Request", "body",
               "1 validation error:\n  {'type': 'missing', 'loc': 'body', 'msg': 'Field required', 'input': 'None'}");
}

TEST(OpenaiRequest, BodyThatIsNotAnObjectIsRefused) {
  expect_error(chat_error("[1, 2]"), 400, "Bad Request", "body",
               "1 validation error:\n  {'type': 'model_attributes_type', 'loc': 'body', 'msg': 'Input should be a "
               "valid dictionary or object to extract fields from', 'input': '<list of 2 items>'}");
}

TEST(OpenaiRequest, BodyThatIsNotUtf8CannotBeParsed) {
  expect_error(chat_error("{\"a\": \"\xFF\"}"), 400, "Bad Request", std::nullopt, "There was an error parsing the body");
}

TEST(OpenaiRequest, MissingMessagesIsFieldRequired) {
  expect_error(chat_error(R"({"model": "tiny"})"), 400, "Bad Request", "body.messages",
               "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required', "
               "'input': '<dict of 1 items>'}");
}

TEST(OpenaiRequest, WrongFieldTypesAreAllReportedInDeclarationOrder) {
  expect_error(chat_error("{" + user_hi + R"(, "temperature": "hot", "n": "abc", "stream": [1]})"), 400,
               "Bad Request", "body.n",
               "3 validation errors:\n"
               "  {'type': 'int_parsing', 'loc': 'body.n', 'msg': 'Input should be a valid integer, unable to parse "
               "string as an integer', 'input': 'abc'}\n"
               "  {'type': 'bool_type', 'loc': 'body.stream', 'msg': 'Input should be a valid boolean', 'input': "
               "'<list of 1 items>'}\n"
               "  {'type': 'float_parsing', 'loc': 'body.temperature', 'msg': 'Input should be a valid number, "
               "unable to parse string as a number', 'input': 'hot'}");
}

TEST(OpenaiRequest, IntegerFieldRefusesAFraction) {
  expect_error(chat_error("{" + user_hi + R"(, "max_tokens": 2.5})"), 400, "Bad Request", "body.max_tokens",
               "1 validation error:\n  {'type': 'int_from_float', 'loc': 'body.max_tokens', 'msg': 'Input should be "
               "a valid integer, got a number with a fractional part', 'input': '2.5'}");
}

TEST(OpenaiRequest, LaxCoercionsAcceptWhatPydanticAccepts) {
  chat_request r = chat("{" + user_hi + R"(, "max_tokens": "7", "n": 2.0, "stream": "yes", "temperature": 1})");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(r.sampling.temperature, 1.0);
}

TEST(OpenaiRequest, NonNullableBooleanRefusesNull) {
  expect_error(chat_error("{" + user_hi + R"(, "ignore_eos": null})"), 400, "Bad Request", "body.ignore_eos",
               "1 validation error:\n  {'type': 'bool_type', 'loc': 'body.ignore_eos', 'msg': 'Input should be a "
               "valid boolean', 'input': 'None'}");
}

TEST(OpenaiRequest, StopOfTheWrongTypeFailsBothUnionMembers) {
  expect_error(chat_error("{" + user_hi + R"(, "stop": 5})"), 400, "Bad Request", "body.stop",
               "2 validation errors:\n"
               "  {'type': 'string_type', 'loc': 'body.stop', 'msg': 'Input should be a valid string', 'input': '5'}\n"
               "  {'type': 'list_type', 'loc': 'body.stop', 'msg': 'Input should be a valid list', 'input': '5'}");
}

// ---- vLLM's model validators ----

TEST(OpenaiRequest, StreamOptionsWithoutStreamIsRefused) {
  expect_error(chat_error("{" + user_hi + R"(, "stream_options": {"include_usage": true}})"), 400, "Bad Request",
               "stream_options",
               "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, Stream options can "
               "only be defined when `stream=True`. (parameter=stream_options)', 'input': '<dict of 2 items>', 'ctx': "
               "{'error': VLLMValidationError('Stream options can only be defined when `stream=True`.')}}");
}

TEST(OpenaiRequest, TopLogprobsWithoutLogprobsIsRefused) {
  expect_error(chat_error("{" + user_hi + R"(, "top_logprobs": 5})"), 400, "Bad Request", "top_logprobs",
               "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, when using "
               "`top_logprobs`, `logprobs` must be set to true. (parameter=top_logprobs)', 'input': '<dict of 2 "
               "items>', 'ctx': {'error': VLLMValidationError('when using `top_logprobs`, `logprobs` must be set to "
               "true.')}}");
}

TEST(OpenaiRequest, NegativeTopLogprobsNamesTheValue) {
  expect_error(chat_error("{" + user_hi + R"(, "logprobs": true, "top_logprobs": -3})"), 400, "Bad Request",
               "top_logprobs",
               "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, `top_logprobs` "
               "must be a positive value or -1. (parameter=top_logprobs, value=-3)', 'input': '<dict of 3 items>', "
               "'ctx': {'error': VLLMValidationError('`top_logprobs` must be a positive value or -1.')}}");
}

TEST(OpenaiRequest, PromptLogprobsWithStreamIsRefusedByBothRequestKinds) {
  const std::string message =
      "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, `prompt_logprobs` are "
      "not available when `stream=True`. (parameter=prompt_logprobs)', 'input': '<dict of 3 items>', 'ctx': "
      "{'error': VLLMValidationError('`prompt_logprobs` are not available when `stream=True`.')}}";
  expect_error(chat_error("{" + user_hi + R"(, "stream": true, "prompt_logprobs": 1})"), 400, "Bad Request",
               "prompt_logprobs", message);
  expect_error(completion_error(R"({"prompt": "hi", "stream": true, "prompt_logprobs": 1})"), 400, "Bad Request",
               "prompt_logprobs", message);
}

TEST(OpenaiRequest, NegativePromptLogprobsNamesTheValueInBothRequestKinds) {
  const std::string message =
      "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, `prompt_logprobs` must "
      "be a positive value or -1. (parameter=prompt_logprobs, value=-2)', 'input': '<dict of 2 items>', 'ctx': "
      "{'error': VLLMValidationError('`prompt_logprobs` must be a positive value or -1.')}}";
  expect_error(chat_error("{" + user_hi + R"(, "prompt_logprobs": -2})"), 400, "Bad Request", "prompt_logprobs",
               message);
  expect_error(completion_error(R"({"prompt": "hi", "prompt_logprobs": -2})"), 400, "Bad Request",
               "prompt_logprobs", message);
}

TEST(OpenaiRequest, TopLogprobsAsTextIsNotAnInteger) {
  expect_error(chat_error("{" + user_hi + R"(, "logprobs": true, "top_logprobs": "3"})"), 400, "Bad Request",
               "top_logprobs",
               "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, `top_logprobs` "
               "must be an integer. (parameter=top_logprobs, value=3)', 'input': '<dict of 3 items>', 'ctx': "
               "{'error': VLLMValidationError('`top_logprobs` must be an integer.')}}");
}

TEST(OpenaiRequest, ContinueFinalMessageWithGenerationPromptHasNoParameterSoParamIsTheBody) {
  expect_error(chat_error("{" + user_hi + R"(, "continue_final_message": true, "add_generation_prompt": true})"), 400,
               "Bad Request", "body",
               "1 validation error:\n  {'type': 'value_error', 'loc': 'body', 'msg': 'Value error, Cannot set both "
               "`continue_final_message` and `add_generation_prompt` to True.', 'input': '<dict of 3 items>', 'ctx': "
               "{'error': VLLMValidationError('Cannot set both `continue_final_message` and `add_generation_prompt` "
               "to True.')}}");
}

TEST(OpenaiRequest, ContinueFinalMessageAloneIsAccepted) {
  EXPECT_TRUE(chat("{" + user_hi + R"(, "continue_final_message": true})").continue_final_message);
}

TEST(OpenaiRequest, ToolChoiceWithoutToolsIsRefused) {
  auto e = chat_error("{" + user_hi + R"(, "tool_choice": "auto"})");
  EXPECT_EQ(e.param, "tool_choice");
  EXPECT_NE(e.message.find("Value error, When using `tool_choice`, `tools` must be set. (parameter=tool_choice)"),
            std::string::npos)
      << e.message;
}

TEST(OpenaiRequest, EmptyToolsArrayIsRefused) {
  auto e = chat_error("{" + user_hi + R"(, "tools": []})");
  EXPECT_EQ(e.param, "tools");
  EXPECT_NE(e.message.find("`tools` must not be an empty array. Either provide at least one tool or omit the field "
                           "entirely. (parameter=tools)"),
            std::string::npos)
      << e.message;
}

TEST(OpenaiRequest, UnknownToolChoiceStringIsRefused) {
  auto e = chat_error("{" + user_hi + R"(, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "always"})");
  EXPECT_EQ(e.param, "tool_choice");
  EXPECT_NE(e.message.find("'msg': 'Value error, Invalid value for `tool_choice`: always! Only named tools, \"none\", "
                           "\"auto\" or \"required\" are supported. (parameter=tool_choice)'"),
            std::string::npos)
      << e.message;
}

TEST(OpenaiRequest, NamedToolChoiceMustMatchATool) {
  auto e = chat_error("{" + user_hi +
                      R"(, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})");
  EXPECT_EQ(e.param, "tool_choice");
  EXPECT_NE(e.message.find("The tool specified in `tool_choice` does not match any of the specified `tools`"),
            std::string::npos);
}

TEST(OpenaiRequest, CacheSaltMustBeANonEmptyString) {
  auto e = chat_error("{" + user_hi + R"(, "cache_salt": ""})");
  EXPECT_EQ(e.param, "cache_salt");
  EXPECT_NE(e.message.find("Parameter 'cache_salt' must be a non-empty string if provided."), std::string::npos);
}

// ---- after the schema: model, serving refusals ----

TEST(OpenaiRequest, UnknownModelIsNotFound) {
  expect_error(chat_error(R"({"model": "gpt-4", )" + user_hi + "}"), 404, "NotFoundError", "model",
               "The model `gpt-4` does not exist.");
}

TEST(OpenaiRequest, AnyServedNameOrNoNameIsAccepted) {
  EXPECT_EQ(chat(R"({"model": "tiny-alias", )" + user_hi + "}").model, "tiny-alias");
  EXPECT_FALSE(chat("{" + user_hi + "}").model.has_value());
  EXPECT_EQ(response_model_name(tiny_server()), "tiny");
}

TEST(OpenaiRequest, EmptyMessagesAreRefused) {
  expect_error(chat_error(R"({"messages": []})"), 400, "BadRequestError", "messages", "[] is too short - 'messages'");
}

TEST(OpenaiRequest, ToolsWithoutAToolParserMeanAutoToolChoiceWhichIsRefused) {
  expect_error(chat_error("{" + user_hi + R"(, "tools": [{"type": "function", "function": {"name": "f"}}]})"), 400,
               "BadRequestError", std::nullopt,
               "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set");
}

TEST(OpenaiRequest, ChatTemplateInTheRequestIsUntrusted) {
  expect_error(chat_error("{" + user_hi + R"(, "chat_template": "{{ messages }}"})"), 400, "BadRequestError",
               std::nullopt,
               "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request "
               "with untrusted chat template.");
}

TEST(OpenaiRequest, ChatTemplateInTheRequestIsTakenWithTrustRequestChatTemplate) {
  openai_server_config s = tiny_server();
  s.trust_request_chat_template = true;
  auto own = parse_chat_request("{" + user_hi + R"(, "chat_template": "T{{ messages }}"})", s);
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own.value().chat_template, "T{{ messages }}");
  // chat_template_kwargs' template is the one transformers renders.
  auto kw = parse_chat_request("{" + user_hi + R"(, "chat_template": "A", "chat_template_kwargs": {"chat_template": "B"}})", s);
  ASSERT_TRUE(kw.ok());
  EXPECT_EQ(kw.value().chat_template, "B");
  expect_error(chat_error("{" + user_hi + R"(, "chat_template_kwargs": {"chat_template": "B"}})"), 400, "BadRequestError",
               std::nullopt,
               "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request "
               "with untrusted chat template.");
}

TEST(OpenaiRequest, ImagesAreRefusedByATextModel) {
  expect_error(chat_error(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})"),
               400, "BadRequestError", std::nullopt, "At most 0 image(s) may be provided in one prompt.");
}

TEST(OpenaiRequest, FeaturesTroupeLacksAreRefusedByName) {
  expect_error(chat_error("{" + user_hi + R"(, "use_beam_search": true})"), 400, "BadRequestError", "use_beam_search",
               "`use_beam_search` is not supported by this server.");
  expect_error(chat_error("{" + user_hi + R"(, "response_format": {"type": "json_object"}})"), 400, "BadRequestError",
               "response_format", "`response_format` is not supported by this server.");
  EXPECT_TRUE(parse_chat_request("{" + user_hi + R"(, "response_format": {"type": "text"}})", tiny_server()).ok());
}

// ---- field forms ----

TEST(OpenaiRequest, StopIsAStringOrAList) {
  EXPECT_EQ(chat("{" + user_hi + R"(, "stop": "END"})").sampling.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(chat("{" + user_hi + R"(, "stop": ["a", "b"]})").sampling.stop, (std::vector<std::string>{"a", "b"}));
}

TEST(OpenaiRequest, MessagesCarryEveryFieldTheTemplateNeeds) {
  chat_request r = chat(R"({"messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}], "name": "ann"},
      {"role": "assistant", "content": null, "reasoning_content": "think",
       "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
      {"role": "tool", "content": "42", "tool_call_id": "call_1"},
      {"role": "narrator", "content": "custom roles pass through"}]})");
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[1].content, (std::vector<std::string>{"Hello", "world"}));
  EXPECT_TRUE(r.messages[1].content_is_list);
  EXPECT_EQ(r.messages[1].name, "ann");
  EXPECT_FALSE(r.messages[2].has_content);
  EXPECT_EQ(r.messages[2].reasoning, "think");
  ASSERT_TRUE(r.messages[2].tool_calls.has_value());
  EXPECT_EQ((*r.messages[2].tool_calls)[0].arguments, "{\"x\": 1}");
  EXPECT_EQ(r.messages[3].tool_call_id, "call_1");
  EXPECT_EQ(r.messages[4].role, "narrator");

  auto rendered = render_messages_json(r.messages, content_format::string);
  ASSERT_TRUE(rendered.ok());
  EXPECT_EQ(rendered.value(),
            R"([{"role":"system","content":"be brief"},)"
            R"({"role":"user","content":"Hello\nworld","name":"ann"},)"
            R"({"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":{"x":1}}}],"reasoning":"think","reasoning_content":"think"},)"
            R"({"role":"tool","content":"42","tool_call_id":"call_1"},)"
            R"({"role":"narrator","content":"custom roles pass through"}])");
}

TEST(OpenaiRequest, OpenAiContentFormatKeepsTextParts) {
  chat_request r = chat(R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, "b"]}]})");
  auto rendered = render_messages_json(r.messages, content_format::openai);
  ASSERT_TRUE(rendered.ok());
  EXPECT_EQ(rendered.value(), R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}])");
}

TEST(OpenaiRequest, ToolCallArgumentsThatAreNotJsonFailWithPythonsMessage) {
  chat_request r = chat(R"({"messages": [{"role": "assistant",
      "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{x"}}]}]})");
  auto rendered = render_messages_json(r.messages, content_format::string);
  ASSERT_FALSE(rendered.ok());
  expect_error(rendered.error(), 400, "BadRequestError", std::nullopt,
               "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)");
}

TEST(OpenaiRequest, ToolsAreNormalizedAsVllmHandsThemToTheTemplate) {
  chat_request r = chat("{" + user_hi + R"(, "tool_choice": "none", "tools": [{"type": "function", "function":
      {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]})");
  EXPECT_EQ(r.tool_choice, tool_choice_mode::none);
  EXPECT_EQ(r.tools_json,
            R"([{"type":"function","function":{"name":"get_weather","description":null,)"
            R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
}

TEST(OpenaiRequest, ChatFieldsAreRead) {
  chat_request r = chat("{" + user_hi + R"(, "max_completion_tokens": 9, "max_tokens": 50, "logprobs": true,
      "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true}, "priority": -2, "user": "u",
      "seed": 42, "stop_token_ids": [5, 5, 7], "logit_bias": {"12": 0.5}, "chat_template_kwargs": {"enable_thinking": false},
      "add_generation_prompt": false, "skip_special_tokens": false, "include_stop_str_in_output": true,
      "ignore_eos": true, "min_tokens": 2, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.2})");
  EXPECT_EQ(requested_max_tokens(r), 9);
  EXPECT_EQ(requested_max_tokens_param(r), "max_completion_tokens");
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  ASSERT_TRUE(r.stream_options.has_value());
  EXPECT_TRUE(r.stream_options->include_usage);
  EXPECT_EQ(r.priority, -2);
  EXPECT_EQ(r.user, "u");
  EXPECT_EQ(r.chat_template_kwargs_json, R"({"enable_thinking":false})");
  EXPECT_FALSE(r.add_generation_prompt);

  openai_generation g = chat_generation("{" + user_hi + R"(, "max_completion_tokens": 9, "seed": 42,
      "stop_token_ids": [5, 5, 7], "logit_bias": {"12": 0.5, "13": 500}, "logprobs": true, "top_logprobs": 3,
      "skip_special_tokens": false, "include_stop_str_in_output": true, "ignore_eos": true, "min_tokens": 2,
      "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.2, "temperature": 0.7, "top_p": 0.9})");
  EXPECT_EQ(g.params.max_tokens, 9);
  EXPECT_EQ(g.params.seed, 42u);
  EXPECT_EQ(g.params.stop_token_ids, (std::vector<int32_t>{5, 7}));
  EXPECT_EQ(g.params.logit_bias, (std::vector<std::pair<int32_t, float>>{{12, 0.5f}, {13, 100.0f}}));
  EXPECT_EQ(g.num_logprobs, 3);
  EXPECT_FALSE(g.skip_special_tokens);
  EXPECT_TRUE(g.params.include_stop_str_in_output);
  EXPECT_TRUE(g.params.ignore_eos);
  EXPECT_EQ(g.params.min_tokens, 2);
  EXPECT_EQ(g.params.top_k, 5);
  EXPECT_FLOAT_EQ(g.params.min_p, 0.1f);
  EXPECT_FLOAT_EQ(g.params.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(g.params.temperature, 0.7f);
  EXPECT_FLOAT_EQ(g.params.top_p, 0.9f);
}

// ---- to_generation: vLLM's defaults and SamplingParams checks ----

TEST(OpenaiGeneration, ChatMaxTokensDefaultsToTheRestOfTheContext) {
  openai_generation g = chat_generation("{" + user_hi + "}", 28);
  EXPECT_EQ(g.params.max_tokens, 100);
  EXPECT_FLOAT_EQ(g.params.temperature, 1.0f);
  EXPECT_FLOAT_EQ(g.params.top_p, 1.0f);
  EXPECT_EQ(g.n, 1);
  EXPECT_FALSE(g.num_logprobs.has_value());
  EXPECT_FALSE(g.params.seed.has_value());
}

TEST(OpenaiGeneration, GenerationConfigDefaultsApplyUnlessTheRequestSetsTheField) {
  openai_server_config s = tiny_server();
  s.default_temperature = 0.6;
  s.default_top_p = 0.95;
  s.default_max_tokens = 20;
  auto g = to_generation(chat("{" + user_hi + R"(, "top_p": 0.5})"), 10, s);
  ASSERT_TRUE(g.ok());
  EXPECT_FLOAT_EQ(g.value().params.temperature, 0.6f);
  EXPECT_FLOAT_EQ(g.value().params.top_p, 0.5f);
  EXPECT_EQ(g.value().params.max_tokens, 20);
}

TEST(OpenaiGeneration, PromptFillingTheContextLeavesNoTokenToGenerate) {
  expect_error(chat_generation_error("{" + user_hi + "}", 128), 400, "BadRequestError", "max_tokens",
               "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)");
}

TEST(OpenaiGeneration, SamplingRangeErrorsUseVllmsMessages) {
  expect_error(chat_generation_error("{" + user_hi + R"(, "n": 0})"), 400, "BadRequestError", std::nullopt,
               "n must be at least 1, got 0.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "temperature": -0.5})"), 400, "BadRequestError",
               "temperature", "temperature must be non-negative, got -0.5. (parameter=temperature, value=-0.5)");
  expect_error(chat_generation_error("{" + user_hi + R"(, "temperature": 3})"), 400, "BadRequestError", "temperature",
               "temperature must be in [0, 2], got 3.0. (parameter=temperature, value=3.0)");
  expect_error(chat_generation_error("{" + user_hi + R"(, "temperature": NaN})"), 400, "BadRequestError",
               "temperature", "temperature must be a finite number, got nan. (parameter=temperature, value=nan)");
  expect_error(chat_generation_error("{" + user_hi + R"(, "top_p": 1.5})"), 400, "BadRequestError", "top_p",
               "top_p must be in (0, 1], got 1.5. (parameter=top_p, value=1.5)");
  expect_error(chat_generation_error("{" + user_hi + R"(, "top_p": 0})"), 400, "BadRequestError", "top_p",
               "top_p must be in (0, 1], got 0.0. (parameter=top_p, value=0.0)");
  expect_error(chat_generation_error("{" + user_hi + R"(, "presence_penalty": 2.1})"), 400, "BadRequestError",
               std::nullopt, "presence_penalty must be in [-2, 2], got 2.1.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "frequency_penalty": -2.1})"), 400, "BadRequestError",
               std::nullopt, "frequency_penalty must be in [-2, 2], got -2.1.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "repetition_penalty": 0})"), 400, "BadRequestError",
               std::nullopt, "repetition_penalty must be greater than zero, got 0.0.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "top_k": -2})"), 400, "BadRequestError", std::nullopt,
               "top_k must be 0 (disable), or at least 1, got -2.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "min_p": -0.1})"), 400, "BadRequestError", std::nullopt,
               "min_p must be in [0, 1], got -0.1.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "min_tokens": -1})"), 400, "BadRequestError", std::nullopt,
               "min_tokens must be greater than or equal to 0, got -1.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "min_tokens": 5, "max_tokens": 4})"), 400, "BadRequestError",
               std::nullopt, "min_tokens must be less than or equal to max_tokens=4, got 5.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "stop": ["done", ""]})"), 400, "BadRequestError",
               std::nullopt, "stop cannot contain an empty string.");
  expect_error(chat_generation_error("{" + user_hi + R"(, "max_completion_tokens": -1})"), 400, "BadRequestError",
               "max_tokens", "max_tokens must be at least 1, got -1. (parameter=max_tokens, value=-1)");
}

TEST(OpenaiGeneration, GreedySamplingTakesOneChoice) {
  expect_error(chat_generation_error("{" + user_hi + R"(, "temperature": 0, "n": 2})"), 400, "BadRequestError",
               std::nullopt, "n must be 1 when using greedy sampling, got 2.");
  openai_generation g = chat_generation("{" + user_hi + R"(, "temperature": 0, "top_k": 5})");
  EXPECT_EQ(g.params.top_k, 0);
  EXPECT_TRUE(g.params.greedy());
}

TEST(OpenaiGeneration, TinyTemperatureIsRaisedNotRefused) {
  EXPECT_FLOAT_EQ(chat_generation("{" + user_hi + R"(, "temperature": 0.001})").params.temperature, 0.01f);
}

TEST(OpenaiGeneration, TooManyLogprobsIsRefusedByTheEngineLimit) {
  expect_error(chat_generation_error("{" + user_hi + R"(, "logprobs": true, "top_logprobs": 21})"), 400,
               "BadRequestError", "logprobs",
               "Requested sample logprobs of 21, which is greater than max allowed: 20 (parameter=logprobs, value=21)");
  expect_error(chat_generation_error("{" + user_hi + R"(, "logprobs": true, "top_logprobs": -1})"), 400,
               "BadRequestError", "logprobs",
               "Requested sample logprobs of 1000, which is greater than max allowed: 20 (parameter=logprobs, "
               "value=1000)");
}

TEST(OpenaiGeneration, LogitBiasKeysMustBeTokenIds) {
  expect_error(chat_generation_error("{" + user_hi + R"(, "logit_bias": {"abc": 1.0, "7": 1, "it's": 2}})"), 400,
               "BadRequestError", "logit_bias",
               "logit_bias contains key(s) that cannot be converted to integer token IDs: ['abc', \"it's\"] "
               "(parameter=logit_bias, value=['abc', \"it's\"])");
}

TEST(OpenaiGeneration, LogitBiasOutsideTheVocabularyIsRefused) {
  expect_error(chat_generation_error("{" + user_hi + R"(, "logit_bias": {"5000": 1, " 6000 ": 2}})"), 400,
               "BadRequestError", std::nullopt,
               "token_id(s) [5000, 6000] in logit_bias contain out-of-vocab token ids. Vocabulary size: 1000");
}

TEST(OpenaiGeneration, SeedMinusOneMeansNoSeed) {
  EXPECT_FALSE(chat_generation("{" + user_hi + R"(, "seed": -1})").params.seed.has_value());
}

// ---- the context length ----

TEST(OpenaiContext, PromptLongerThanTheContextIsAtLeastOnePastIt) {
  expect_error(*check_context_length(130, std::nullopt, 128), 400, "BadRequestError", "input_tokens",
               "This model's maximum context length is 128 tokens. However, you requested 0 output tokens and your "
               "prompt contains at least 129 input tokens, for a total of at least 129 tokens. Please reduce the "
               "length of the input prompt or the number of requested output tokens. (parameter=input_tokens, "
               "value=129)");
}

TEST(OpenaiContext, PromptPlusMaxTokensMustFit) {
  EXPECT_FALSE(check_context_length(28, 100, 128).has_value());
  expect_error(*check_context_length(29, 100, 128), 400, "BadRequestError", "input_tokens",
               "This model's maximum context length is 128 tokens. However, you requested 100 output tokens and your "
               "prompt contains at least 29 input tokens, for a total of at least 129 tokens. Please reduce the "
               "length of the input prompt or the number of requested output tokens. (parameter=input_tokens, "
               "value=29)");
}

TEST(OpenaiContext, TokenIdPromptsAreCountedExactly) {
  expect_error(*check_context_length(100, 50, 128, prompt_form::token_ids), 400, "BadRequestError", "input_tokens",
               "This model's maximum context length is 128 tokens. However, you requested 50 output tokens and your "
               "prompt contains 100 input tokens, for a total of 150 tokens. Please reduce the length of the input "
               "prompt or the number of requested output tokens. (parameter=input_tokens, value=100)");
}

TEST(OpenaiContext, MaxTokensAboveTheContextIsRefusedFirst) {
  expect_error(*check_context_length(10, 200, 128, prompt_form::text, "max_completion_tokens"), 400,
               "BadRequestError", "max_completion_tokens",
               "max_completion_tokens=200 cannot be greater than max_model_len=max_total_tokens=128. Please request "
               "fewer output tokens. (parameter=max_completion_tokens, value=200)");
}

TEST(OpenaiContext, TooManyCharactersCannotFitBeforeTokenizing) {
  EXPECT_FALSE(check_prompt_characters(280, 10, 100, 128).has_value());
  expect_error(*check_prompt_characters(281, 10, 100, 128), 400, "BadRequestError", "input_text",
               "This model's maximum context length is 128 tokens. However, you requested 100 output tokens and your "
               "prompt contains 281 characters (more than 280 characters, which is the upper bound for 28 input "
               "tokens). Please reduce the length of the input prompt or the number of requested output tokens. "
               "(parameter=input_text, value=281)");
}

// ---- completions ----

TEST(OpenaiCompletion, PromptFormsGiveOneOrSeveralPrompts) {
  auto text = completion(R"({"prompt": "Once"})");
  ASSERT_EQ(text.prompts.size(), 1u);
  EXPECT_FALSE(text.prompts[0].is_tokens);
  EXPECT_EQ(text.prompts[0].text, "Once");

  auto texts = completion(R"({"prompt": ["a", "b"]})");
  ASSERT_EQ(texts.prompts.size(), 2u);
  EXPECT_EQ(texts.prompts[1].text, "b");

  auto ids = completion(R"({"prompt": [1, 2, 3]})");
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_tokens);
  EXPECT_EQ(ids.prompts[0].token_ids, (std::vector<int32_t>{1, 2, 3}));

  auto lists = completion(R"({"prompt": [[1, 2], [3]]})");
  ASSERT_EQ(lists.prompts.size(), 2u);
  EXPECT_EQ(lists.prompts[1].token_ids, std::vector<int32_t>{3});

  // Strict matches win over lax ones: ["1"] is a list of text, not of token ids.
  auto digits = completion(R"({"prompt": ["1"]})");
  ASSERT_EQ(digits.prompts.size(), 1u);
  EXPECT_FALSE(digits.prompts[0].is_tokens);
}

TEST(OpenaiCompletion, DefaultsAreVllms) {
  auto r = completion(R"({"prompt": "x", "max_tokens": null})");
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_EQ(r.n, 1);
  EXPECT_TRUE(r.add_special_tokens);
  auto g = to_generation(r, 5, tiny_server());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.value().params.max_tokens, 16);
}

TEST(OpenaiCompletion, MissingOrEmptyPromptIsRefused) {
  auto e = completion_error(R"({"prompt": ""})");
  EXPECT_EQ(e.param, "prompt");
  EXPECT_NE(e.message.find("Value error, Either prompt or prompt_embeds must be provided and non-empty. "
                           "(parameter=prompt)"),
            std::string::npos)
      << e.message;
}

TEST(OpenaiCompletion, PromptOfNoKnownFormFailsEveryUnionMember) {
  expect_error(completion_error(R"({"prompt": 5})"), 400, "Bad Request", "body.prompt",
               "4 validation errors:\n"
               "  {'type': 'list_type', 'loc': 'body.prompt', 'msg': 'Input should be a valid list', 'input': '5'}\n"
               "  {'type': 'list_type', 'loc': 'body.prompt', 'msg': 'Input should be a valid list', 'input': '5'}\n"
               "  {'type': 'string_type', 'loc': 'body.prompt', 'msg': 'Input should be a valid string', 'input': '5'}\n"
               "  {'type': 'list_type', 'loc': 'body.prompt', 'msg': 'Input should be a valid list', 'input': '5'}");
}

TEST(OpenaiCompletion, NegativeTokenIdsAreRefused) {
  expect_error(completion_error(R"({"prompt": [1, -2]})"), 400, "Bad Request", "body.prompt.1",
               "6 validation errors:\n"
               "  {'type': 'greater_than_equal', 'loc': 'body.prompt.1', 'msg': 'Input should be greater than or equal "
               "to 0', 'input': '-2', 'ctx': {'ge': 0}}\n"
               "  {'type': 'list_type', 'loc': 'body.prompt.0', 'msg': 'Input should be a valid list', 'input': '1'}\n"
               "  {'type': 'list_type', 'loc': 'body.prompt.1', 'msg': 'Input should be a valid list', 'input': '-2'}\n"
               "  {'type': 'string_type', 'loc': 'body.prompt', 'msg': 'Input should be a valid string', 'input': "
               "'<list of 2 items>'}\n"
               "  {'type': 'string_type', 'loc': 'body.prompt.0', 'msg': 'Input should be a valid string', 'input': "
               "'1'}\n"
               "  {'type': 'string_type', 'loc': 'body.prompt.1', 'msg': 'Input should be a valid string', 'input': "
               "'-2'}");
}

TEST(OpenaiCompletion, TokenIdsOutsideTheVocabularyAreRefused) {
  expect_error(completion_error(R"({"prompt": [1, 1000]})"), 400, "BadRequestError", std::nullopt,
               "Token id 1000 is out of vocabulary");
}

TEST(OpenaiCompletion, SuffixIsNotSupported) {
  expect_error(completion_error(R"({"prompt": "def f(", "suffix": "return x"})"), 400, "BadRequestError",
               std::nullopt, "suffix is not currently supported");
}

TEST(OpenaiCompletion, NegativeLogprobsIsRefused) {
  auto e = completion_error(R"({"prompt": "x", "logprobs": -2})");
  EXPECT_EQ(e.param, "logprobs");
  EXPECT_NE(e.message.find("Value error, `logprobs` must be a positive value or -1. (parameter=logprobs, value=-2)"),
            std::string::npos);
}

TEST(OpenaiCompletion, LogprobsAboveTheLimitIsRefused) {
  auto g = to_generation(completion(R"({"prompt": "x", "logprobs": 21})"), 5, tiny_server());
  ASSERT_FALSE(g.ok());
  expect_error(g.error(), 400, "BadRequestError", "logprobs",
               "Requested sample logprobs of 21, which is greater than max allowed: 20 (parameter=logprobs, value=21)");
}

TEST(OpenaiCompletion, EchoWithoutGenerationGeneratesOneHiddenToken) {
  auto g = to_generation(completion(R"({"prompt": "x", "echo": true, "max_tokens": 0})"), 5, tiny_server());
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g.value().echo_only);
  EXPECT_EQ(g.value().params.max_tokens, 1);
}

TEST(OpenaiCompletion, MaxTokensZeroWithoutEchoIsRefused) {
  auto g = to_generation(completion(R"({"prompt": "x", "max_tokens": 0})"), 5, tiny_server());
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().message, "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)");
}

TEST(OpenaiCompletion, AnEmptyTokenPromptIsRefused) {
  auto g = to_generation(completion(R"({"prompt": [[]]})"), 0, tiny_server());
  ASSERT_FALSE(g.ok());
  expect_error(g.error(), 400, "BadRequestError", std::nullopt, "The decoder prompt cannot be empty");
}

TEST(OpenaiCompletion, NIsNotNullable) {
  expect_error(completion_error(R"({"prompt": "x", "n": null})"), 400, "Bad Request", "body.n",
               "1 validation error:\n  {'type': 'int_type', 'loc': 'body.n', 'msg': 'Input should be a valid "
               "integer', 'input': 'None'}");
}

// ---- /tokenize and /detokenize ----

TEST(OpenaiTokenize, PromptOrMessages) {
  auto p = parse_tokenize_request(R"({"prompt": "hello", "return_token_strs": true})", tiny_server());
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p.value().is_chat);
  EXPECT_EQ(p.value().prompt, "hello");
  EXPECT_TRUE(p.value().add_special_tokens);
  EXPECT_TRUE(p.value().return_token_strs);

  auto m = parse_tokenize_request("{" + user_hi + "}", tiny_server());
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m.value().is_chat);
  EXPECT_FALSE(m.value().add_special_tokens);
  EXPECT_TRUE(m.value().add_generation_prompt);
  ASSERT_EQ(m.value().messages.size(), 1u);
}

TEST(OpenaiTokenize, NeitherPromptNorMessagesFailsBothUnionMembers) {
  auto r = parse_tokenize_request(R"({"model": "tiny"})", tiny_server());
  ASSERT_FALSE(r.ok());
  expect_error(r.error(), 400, "Bad Request", "body.TokenizeCompletionRequest.prompt",
               "2 validation errors:\n"
               "  {'type': 'missing', 'loc': 'body.TokenizeCompletionRequest.prompt', 'msg': 'Field required', "
               "'input': '<dict of 1 items>'}\n"
               "  {'type': 'missing', 'loc': 'body.TokenizeChatRequest.messages', 'msg': 'Field required', 'input': "
               "'<dict of 1 items>'}");
}

TEST(OpenaiTokenize, DetokenizeReadsTokens) {
  auto r = parse_detokenize_request(R"({"tokens": [1, 2, 3]})", tiny_server());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().tokens, (std::vector<int32_t>{1, 2, 3}));
  auto bad = parse_detokenize_request(R"({"model": "nope", "tokens": []})", tiny_server());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().status, 404);
}

// ---- robustness: whatever arrives, an answer and never an exception ----

TEST(OpenaiRequest, MangledBodiesNeverThrow) {
  const std::vector<std::string> seeds = {
      "{" + user_hi + R"(, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": 1}}}],
          "tool_choice": {"type": "function", "function": {"name": "f"}}, "logit_bias": {"1": 2}, "stop": ["x"],
          "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 2})",
      R"({"prompt": [[1, 2], [3]], "max_tokens": 5, "logprobs": 1, "echo": false, "stop": "s", "n": 2})",
      R"({"messages": [{"role": "assistant", "content": [{"type": "text", "text": "a"}],
          "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]})"};
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\",:0123456789-.eEtrufalsn \\u\xff\xc3";
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string body = seeds[static_cast<size_t>(i) % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      size_t pos = rng() % (body.size() + 1);
      switch (rng() % 3) {
        case 0: body.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        case 1: if (pos < body.size()) body.erase(pos, 1); break;
        default: if (pos < body.size()) body[pos] = alphabet[rng() % alphabet.size()];
      }
    }
    EXPECT_NO_THROW({
      auto c = parse_chat_request(body, tiny_server());
      if (c) {
        ++parsed;
        (void)render_messages_json(c.value().messages, content_format::string);
        (void)to_generation(c.value(), 10, tiny_server());
      }
      auto p = parse_completion_request(body, tiny_server());
      if (p) (void)to_generation(p.value(), 10, tiny_server());
      (void)parse_tokenize_request(body, tiny_server());
      (void)parse_detokenize_request(body, tiny_server());
    }) << body;
  }
  EXPECT_GT(parsed, 0);
}

TEST(OpenaiRequest, DeepNestingIsRefusedNotACrash) {
  std::string body = R"({"messages": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_error(chat_error(body), 400, "Bad Request", std::nullopt, "There was an error parsing the body");
}

// ---- Python's json.loads ----

python_json_error decode_error(std::string_view text) {
  auto r = parse_python_json(text);
  EXPECT_TRUE(r.error.has_value());
  return r.error.value_or(python_json_error{});
}

TEST(PythonJson, ErrorsMatchCpythonsScanner) {
  EXPECT_EQ(decode_error("").message, "Expecting value");
  EXPECT_EQ(decode_error(R"({"a" 1})").position, 5);
  EXPECT_EQ(decode_error(R"({"a" 1})").message, "Expecting ':' delimiter");
  EXPECT_EQ(decode_error("[1 2]").message, "Expecting ',' delimiter");
  EXPECT_EQ(decode_error("[1 2]").position, 3);
  EXPECT_EQ(decode_error("[1,]").message, "Expecting value");
  EXPECT_EQ(decode_error("[1,]").position, 3);
  EXPECT_EQ(decode_error("\"abc").message, "Unterminated string starting at");
  EXPECT_EQ(decode_error("\"abc").position, 0);
  EXPECT_EQ(decode_error("\"a\\qb\"").message, "Invalid \\escape");
  EXPECT_EQ(decode_error("\"a\\qb\"").position, 2);
  EXPECT_EQ(decode_error("\"a\nb\"").message, "Invalid control character at");
  EXPECT_EQ(decode_error("{} {}").message, "Extra data");
  EXPECT_EQ(decode_error("{} {}").position, 3);
  EXPECT_EQ(decode_error(R"({"a": tru})").position, 6);
  EXPECT_EQ(python_json_error_text("{\n\"a\" 1}", decode_error("{\n\"a\" 1}")),
            "Expecting ':' delimiter: line 2 column 5 (char 6)");
}

TEST(PythonJson, AcceptsWhatPythonAccepts) {
  auto r = parse_python_json(R"({"a": 1, "b": 2.50, "a": 3, "c": [NaN, -Infinity], "d": "\u00e9\ud83d\ude00"})");
  ASSERT_FALSE(r.error.has_value());
  EXPECT_EQ(r.value.begin().key(), "a");  // a repeated key keeps its first place
  EXPECT_EQ(r.value["a"], 3);
  EXPECT_TRUE(std::isnan(r.value["c"][0].get<double>()));
  EXPECT_EQ(r.value["d"], "\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_TRUE(r.value["b"].is_number_float());
}

TEST(PythonJson, ReprAndStrFollowPython) {
  auto v = parse_python_json(R"({"s": "it's", "n": null, "t": true, "f": 3.0, "l": [1, "x"]})").value;
  EXPECT_EQ(python_repr(v), "{'s': \"it's\", 'n': None, 't': True, 'f': 3.0, 'l': [1, 'x']}");
  EXPECT_EQ(python_str(v["s"]), "it's");
  EXPECT_FALSE(python_truthy(v["n"]));
  EXPECT_TRUE(python_truthy(v["l"]));
}

} // namespace
} // namespace troupe
