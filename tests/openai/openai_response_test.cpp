// OpenAI response bodies and stream chunks, compared with the exact JSON vLLM sends; the Python
// number and string formats they rest on.

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <limits>

#include "runtime/engine/engine_core.hpp"
#include "runtime/openai/openai_error.hpp"
#include "runtime/openai/openai_response.hpp"
#include "runtime/openai/python_repr.hpp"

namespace troupe {
namespace {

const response_header chat_header{"chatcmpl-abc", 1700000000, "tiny"};
const response_header completion_header{"cmpl-abc", 1700000000, "tiny"};

TEST(OpenaiResponse, ChatCompletionBodyHasVllmsFields) {
  chat_choice c;
  c.content = "Hello!";
  c.finish_reason = "stop";
  EXPECT_EQ(chat_completion_body(chat_header, {&c, 1}, usage_info{5, 2, std::nullopt}),
            R"({"id":"chatcmpl-abc","object":"chat.completion","created":1700000000,"model":"tiny","choices":[)"
            R"({"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null,"annotations":null,)"
            R"("audio":null,"function_call":null,"tool_calls":[],"reasoning_content":null},"logprobs":null,)"
            R"("finish_reason":"stop","stop_reason":null,"token_ids":null}],"service_tier":null,)"
            R"("system_fingerprint":null,"usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2,)"
            R"("prompt_tokens_details":null},"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null})");
}

TEST(OpenaiResponse, SeveralChoicesWithStopReasonsAndCachedTokens) {
  chat_choice a;
  a.content = "x";
  a.finish_reason = "stop";
  a.stop_reason = std::string("END");
  chat_choice b;
  b.index = 1;
  b.content = "y";
  b.finish_reason = "stop";
  b.stop_reason = 7;
  chat_choice both[] = {a, b};
  std::string body = chat_completion_body(chat_header, both, usage_info{5, 2, 4});
  EXPECT_NE(body.find(R"("finish_reason":"stop","stop_reason":"END","token_ids":null},{"index":1,)"), std::string::npos);
  EXPECT_NE(body.find(R"("finish_reason":"stop","stop_reason":7,)"), std::string::npos);
  EXPECT_NE(body.find(R"("usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}})"),
            std::string::npos);
}

TEST(OpenaiResponse, ToolCallsAndReasoningFillTheMessageAsVllmsChatMessage) {
  chat_choice c;
  c.content = std::nullopt;
  c.reasoning = "Weather needs a tool.";
  c.tool_calls = {{"chatcmpl-tool-1", "get_weather", R"({"city": "Paris"})"}};
  c.finish_reason = "tool_calls";
  const std::string body = chat_completion_body(chat_header, {&c, 1}, usage_info{5, 2, std::nullopt});
  EXPECT_NE(body.find(R"("message":{"role":"assistant","content":null,"refusal":null,"annotations":null,"audio":null,)"
                      R"("function_call":null,"tool_calls":[{"id":"chatcmpl-tool-1","type":"function","function":)"
                      R"({"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}],)"
                      R"("reasoning_content":"Weather needs a tool."},"logprobs":null,"finish_reason":"tool_calls",)"),
            std::string::npos)
      << body;
}

TEST(OpenaiResponse, StreamedToolCallPiecesCarryOnlyWhatVllmSets) {
  chat_delta first;
  first.content = std::nullopt;
  first.tool_calls = {{0, "chatcmpl-tool-1", "get_weather", std::nullopt}};
  EXPECT_EQ(chat_chunk(chat_header, first),
            R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"tiny","choices":[)"
            R"({"index":0,"delta":{"tool_calls":[{"id":"chatcmpl-tool-1","type":"function","index":0,)"
            R"("function":{"name":"get_weather"}}]},"logprobs":null,"finish_reason":null}]})");
  chat_delta args;
  args.content = std::nullopt;
  args.tool_calls = {{0, "", std::nullopt, R"({"city": )"}};
  args.finish_reason = "tool_calls";
  EXPECT_NE(chat_chunk(chat_header, args).find(R"("delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]},)"
                                               R"("logprobs":null,"finish_reason":"tool_calls","stop_reason":null)"),
            std::string::npos);
  chat_delta thinking;
  thinking.content = std::nullopt;
  thinking.reasoning = "hmm";
  EXPECT_NE(chat_chunk(chat_header, thinking).find(R"("delta":{"reasoning_content":"hmm"})"), std::string::npos);
}

std::vector<token_logprobs> two_tokens() {
  return {token_logprobs{"Hi", -0.5, {{"Hi", -0.5}, {"Hey", -1.25}, {"Yo", -3.0}}},
          token_logprobs{"!", std::nullopt, {}}};
}

TEST(OpenaiResponse, ChatLogprobsListTheTopAlternativesAndTheBytes) {
  chat_choice c;
  c.content = "Hi!";
  c.finish_reason = "length";
  c.logprobs = two_tokens();
  c.top_logprobs = 2;
  std::string body = chat_completion_body(chat_header, {&c, 1}, usage_info{1, 2, std::nullopt});
  EXPECT_NE(body.find(R"("logprobs":{"content":[{"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[)"
                      R"({"token":"Hi","logprob":-0.5,"bytes":[72,105]},{"token":"Hey","logprob":-1.25,"bytes":[72,101,121]}]},)"
                      R"({"token":"!","logprob":-9999.0,"bytes":[33],"top_logprobs":[]}]},"finish_reason":"length")"),
            std::string::npos)
      << body;
}

TEST(OpenaiResponse, ChatStreamOpensWithTheRole) {
  chat_delta d;
  d.role = true;
  EXPECT_EQ(chat_chunk(chat_header, d),
            R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"tiny",)"
            R"("choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]})");
}

TEST(OpenaiResponse, ChatStreamDeltasThenAFinalChunkWithTheStopReason) {
  chat_delta d;
  d.content = "Hel";
  EXPECT_EQ(chat_chunk(chat_header, d),
            R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"tiny",)"
            R"("choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]})");
  chat_delta last;
  last.index = 1;
  last.content = "lo";
  last.finish_reason = "stop";
  last.stop_reason = std::string("END");
  EXPECT_EQ(chat_chunk(chat_header, last),
            R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"tiny",)"
            R"("choices":[{"index":1,"delta":{"content":"lo"},"logprobs":null,"finish_reason":"stop","stop_reason":"END"}]})");
  last.finish_reason = "length";
  last.stop_reason = std::monostate{};
  EXPECT_NE(chat_chunk(chat_header, last).find(R"("finish_reason":"length","stop_reason":null}]})"), std::string::npos);
}

TEST(OpenaiResponse, ChatStreamUsageChunkHasNoChoices) {
  EXPECT_EQ(chat_usage_chunk(chat_header, usage_info{5, 2, std::nullopt}),
            R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"tiny",)"
            R"("choices":[],"usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}})");
}

TEST(OpenaiResponse, ContinuousUsageRidesOnEveryChunk) {
  chat_delta d;
  d.role = true;
  usage_info u{5, 0, std::nullopt};
  EXPECT_EQ(chat_chunk(chat_header, d, &u),
            R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"tiny",)"
            R"("choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],)"
            R"("usage":{"prompt_tokens":5,"total_tokens":5,"completion_tokens":0}})");
}

TEST(OpenaiResponse, ChatStreamLogprobsOmitWhatVllmLeavesUnset) {
  std::vector<token_logprobs> tokens = two_tokens();
  chat_delta d;
  d.content = "Hi!";
  d.logprobs = &tokens;
  d.top_logprobs = 1;
  EXPECT_NE(chat_chunk(chat_header, d)
                .find(R"("logprobs":{"content":[{"token":"Hi","logprob":-0.5,"bytes":[72,105],"top_logprobs":[)"
                      R"({"token":"Hi","logprob":-0.5,"bytes":[72,105]}]},{"token":"!","bytes":[33]}]})"),
            std::string::npos);
}

TEST(OpenaiResponse, FloatsAreWrittenAsPythonWritesBodiesAndAsPydanticWritesChunks) {
  std::vector<token_logprobs> tokens = {token_logprobs{"a", -1e-05, {}}, token_logprobs{"b", -1.5e-07, {}},
                                        token_logprobs{"c", -std::numeric_limits<double>::infinity(), {}}};
  chat_choice c;
  c.logprobs = tokens;
  std::string body = chat_completion_body(chat_header, {&c, 1}, usage_info{});
  EXPECT_NE(body.find(R"("logprob":-1e-05,)"), std::string::npos);
  EXPECT_NE(body.find(R"("logprob":-1.5e-07,)"), std::string::npos);
  EXPECT_NE(body.find(R"("logprob":-9999.0,)"), std::string::npos);
  chat_delta d;
  d.logprobs = &tokens;
  std::string chunk = chat_chunk(chat_header, d);
  EXPECT_NE(chunk.find(R"("logprob":-0.00001,)"), std::string::npos);
  EXPECT_NE(chunk.find(R"("logprob":-1.5e-7,)"), std::string::npos);
  EXPECT_NE(chunk.find(R"("logprob":-9999.0,)"), std::string::npos);
}

TEST(OpenaiResponse, CompletionLogprobsOffsetTextAndMergeEqualAlternatives) {
  std::vector<token_logprobs> tokens = {
      token_logprobs{" Once", -0.25, {{" Once", -0.25}, {" Twice", -2.0}, {" Thrice", -4.0}}},
      token_logprobs{" upon", -0.125, {{" upon", -0.125}, {" upon", -3.0}}},
      token_logprobs{"\xC3\xA9", std::nullopt, {}}};
  completion_choice c;
  c.text = " Once upon\xC3\xA9";
  c.finish_reason = "length";
  c.logprobs = make_completion_logprobs(tokens, 1, 10);
  EXPECT_EQ(completion_body(completion_header, {&c, 1}, usage_info{3, 3, std::nullopt}),
            R"({"id":"cmpl-abc","object":"text_completion","created":1700000000,"model":"tiny","choices":[)"
            R"({"index":0,"text":" Once uponé","logprobs":{"text_offset":[10,15,20],"token_logprobs":[-0.25,-0.125,null],)"
            R"("tokens":[" Once"," upon","é"],"top_logprobs":[{" Once":-0.25," Twice":-2.0},{" upon":-3.0},null]},)"
            R"("finish_reason":"length","stop_reason":null,"token_ids":null,"prompt_logprobs":null,"prompt_token_ids":null}],)"
            R"("service_tier":null,"system_fingerprint":null,"usage":{"prompt_tokens":3,"total_tokens":6,)"
            R"("completion_tokens":3,"prompt_tokens_details":null},"kv_transfer_params":null})");
}

TEST(OpenaiResponse, CompletionChunksKeepEveryField) {
  completion_choice c;
  c.text = " Once";
  EXPECT_EQ(completion_chunk(completion_header, c),
            R"({"id":"cmpl-abc","object":"text_completion","created":1700000000,"model":"tiny","choices":[)"
            R"({"index":0,"text":" Once","logprobs":null,"finish_reason":null,"stop_reason":null,)"
            R"("prompt_token_ids":null,"token_ids":null}],"usage":null})");
  c.finish_reason = "stop";
  c.stop_reason = 2;
  usage_info u{3, 1, std::nullopt};
  EXPECT_NE(completion_chunk(completion_header, c, &u)
                .find(R"("finish_reason":"stop","stop_reason":2,"prompt_token_ids":null,"token_ids":null}],)"
                      R"("usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1,"prompt_tokens_details":null}})"),
            std::string::npos);
  EXPECT_EQ(completion_usage_chunk(completion_header, usage_info{3, 2, std::nullopt}),
            R"({"id":"cmpl-abc","object":"text_completion","created":1700000000,"model":"tiny","choices":[],)"
            R"("usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2}})");
}

TEST(OpenaiResponse, TextThatIsNotUtf8IsRepairedAndControlsEscaped) {
  chat_delta d;
  d.content = std::string("a\xFF" "b\"\\\n\x01", 7);
  EXPECT_NE(chat_chunk(chat_header, d).find("\"delta\":{\"content\":\"a\xEF\xBF\xBD" "b\\\"\\\\\\n\\u0001\"}"),
            std::string::npos);
}

TEST(OpenaiResponse, ServerSentEventFraming) {
  EXPECT_EQ(sse_event("{}"), "data: {}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  EXPECT_EQ(sse_error(bad_request("boom")),
            "data: {\"error\":{\"message\":\"boom\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}\n\n");
}

TEST(OpenaiResponse, ErrorBodyIsVllmsErrorResponse) {
  EXPECT_EQ(error_body(model_not_found("gpt-4")),
            R"({"error":{"message":"The model `gpt-4` does not exist.","type":"NotFoundError","param":"model","code":404}})");
  EXPECT_EQ(error_body(vllm_validation_error("top_p must be in (0, 1], got 0.0.", "top_p", "0.0")),
            R"j({"error":{"message":"top_p must be in (0, 1], got 0.0. (parameter=top_p, value=0.0)",)j"
            R"("type":"BadRequestError","param":"top_p","code":400}})");
}

TEST(OpenaiResponse, ModelsBody) {
  model_card m{"tiny", "/models/tiny", 1700000000, 128, "modelperm-xyz"};
  EXPECT_EQ(models_body({&m, 1}),
            R"({"object":"list","data":[{"id":"tiny","object":"model","created":1700000000,"owned_by":"troupe",)"
            R"("root":"/models/tiny","parent":null,"max_model_len":128,"permission":[{"id":"modelperm-xyz",)"
            R"("object":"model_permission","created":1700000000,"allow_create_engine":false,"allow_sampling":true,)"
            R"("allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,)"
            R"("organization":"*","group":null,"is_blocking":false}]}]})");
}

TEST(OpenaiResponse, TokenizeDetokenizeAndVersionBodies) {
  int32_t ids[] = {1, 2};
  EXPECT_EQ(tokenize_body(ids, 128), R"({"count":2,"max_model_len":128,"tokens":[1,2],"token_strs":null})");
  std::vector<std::string> strs = {"he", "llo"};
  EXPECT_EQ(tokenize_body(ids, 128, &strs), R"({"count":2,"max_model_len":128,"tokens":[1,2],"token_strs":["he","llo"]})");
  EXPECT_EQ(detokenize_body("hi"), R"({"prompt":"hi"})");
  EXPECT_EQ(version_body("0.1.0"), R"({"version":"0.1.0"})");
}

TEST(OpenaiResponse, StopReasonOfAnEngineOutput) {
  request_output out;
  EXPECT_TRUE(std::holds_alternative<std::monostate>(stop_reason_of(out)));
  out.stop_string = "END";
  EXPECT_EQ(std::get<std::string>(stop_reason_of(out)), "END");
  out.stop_string.clear();
  out.stop_token = 7;
  EXPECT_EQ(std::get<int32_t>(stop_reason_of(out)), 7);
}

TEST(OpenaiResponse, RandomIdsAreUuid4Hex) {
  std::string a = random_uuid_hex(), b = random_uuid_hex();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a[12], '4');
  EXPECT_NE(std::string("89ab").find(a[16]), std::string::npos);
  for (char c : a) EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c)));
  EXPECT_NE(a, b);
}

// ---- Python's formats ----

TEST(PythonRepr, FloatsPrintAsPythonRepr) {
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(3.0), "3.0");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e-05), "1e-05");
  EXPECT_EQ(python_float_repr(1.5e-07), "1.5e-07");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(123456.789), "123456.789");
  EXPECT_EQ(python_float_repr(std::nan("")), "nan");
  EXPECT_EQ(python_float_repr(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(python_float_repr(static_cast<double>(-0.1f)), "-0.10000000149011612");
}

TEST(PythonRepr, FloatsPrintAsPydanticJson) {
  EXPECT_EQ(pydantic_json_float(0.1), "0.1");
  EXPECT_EQ(pydantic_json_float(3.0), "3.0");
  EXPECT_EQ(pydantic_json_float(1e-05), "0.00001");
  EXPECT_EQ(pydantic_json_float(1e-06), "1e-6");
  EXPECT_EQ(pydantic_json_float(1.5e-07), "1.5e-7");
  EXPECT_EQ(pydantic_json_float(1e15), "1000000000000000.0");
  EXPECT_EQ(pydantic_json_float(1e16), "1e16");
}

TEST(PythonRepr, StringsPrintAsPythonRepr) {
  EXPECT_EQ(python_str_repr("abc"), "'abc'");
  EXPECT_EQ(python_str_repr("it's"), "\"it's\"");
  EXPECT_EQ(python_str_repr("say \"hi\""), "'say \"hi\"'");
  EXPECT_EQ(python_str_repr("it's \"x\""), "'it\\'s \"x\"'");
  EXPECT_EQ(python_str_repr("a\\b\n\t\x01\x7f"), "'a\\\\b\\n\\t\\x01\\x7f'");
  EXPECT_EQ(python_str_repr("\xC3\xA9\xC2\xA0\xE2\x80\x8B"), "'\xC3\xA9\\xa0\\u200b'");
  EXPECT_EQ(python_len("h\xC3\xA9llo\xF0\x9F\x98\x80"), 6);
}

TEST(SanitizeMessage, RemovesPathsAndAddresses) {
  EXPECT_EQ(sanitize_message("The model `/home/me/m.bin` does not exist."), "The model `<path>` does not exist.");
  EXPECT_EQ(sanitize_message("bad <_io.BytesIO object at 0x7a95e299e750>"), "bad <_io.BytesIO object>");
  EXPECT_EQ(sanitize_message("The model `meta-llama/Llama-3.1-8B` does not exist."),
            "The model `meta-llama/Llama-3.1-8B` does not exist.");
  EXPECT_EQ(sanitize_message("  spaced \n"), "spaced");
}

TEST(OpenaiResponse, AnOutputTheEngineEndedWithAnErrorFailsThe503IfAbortedElse500) {
  request_output out;
  out.finished = true;
  EXPECT_FALSE(engine_error(out).has_value());
  out.error = "step failed";
  const auto failed = engine_error(out);
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status, 500);
  EXPECT_EQ(failed->type, "InternalServerError");
  EXPECT_EQ(failed->message, "step failed");
  out.aborted = true;
  out.error = "The server shut down";
  const auto shut = engine_error(out);
  ASSERT_TRUE(shut.has_value());
  EXPECT_EQ(shut->status, 503);
  EXPECT_EQ(shut->type, "ServiceUnavailableError");
}

} // namespace
} // namespace troupe
