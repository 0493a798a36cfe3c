// Bounds on the request fields that size a request's work: each limit passes exactly, one more is
// refused with a precise 400, and a field over its bound is refused before its entries are read.
// Also the server's --max-tokens-limit, judged on the max_tokens field the client sent.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/python_json.hpp"
#include "runtime/openai/python_repr.hpp"

namespace troupe {
namespace {

const std::string user_hi = R"("messages": [{"role": "user", "content": "hi"}])";

// Small bounds so the bodies stay readable; the defaults are vLLM's.
openai_server_config small_server() {
  openai_server_config s;
  s.served_model_names = {"tiny"};
  s.max_model_len = 128;
  s.vocab_size = 4;
  s.max_n_sequences = 4;
  s.max_stop_string_chars = 5;
  return s;
}

checked<chat_request> chat(const std::string& fields, const openai_server_config& server = small_server()) {
  return parse_chat_request("{" + user_hi + (fields.empty() ? "" : ", ") + fields + "}", server);
}

checked<completion_request> completion(const std::string& fields, const openai_server_config& server = small_server()) {
  return parse_completion_request(R"({"prompt": "hi", )" + fields + "}", server);
}

// The 400 a serving check gives, with its param.
template <class T>
void expect_refused(const checked<T>& r, std::optional<std::string> param, std::string_view message) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().status, 400);
  EXPECT_EQ(r.error().type, "BadRequestError");
  EXPECT_EQ(r.error().param, param);
  EXPECT_EQ(r.error().message, message);
}

template <class T>
void expect_ok(const checked<T>& r) {
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
}

std::string int_list(int count) {
  std::string out = "[";
  for (int i = 0; i < count; ++i) out += (i ? ", " : "") + std::to_string(i % 4);
  return out + "]";
}

// ---- n ----

TEST(RequestBounds, NAtTheLimitIsAcceptedAndOneMoreIsRefused) {
  expect_ok(chat(R"("n": 4)"));
  expect_refused(chat(R"("n": 5)"), "n", "n must be at most 4, got 5. Ask for fewer choices per prompt.");
  expect_ok(completion(R"("n": 4)"));
  expect_refused(completion(R"("n": 5)"), "n", "n must be at most 4, got 5. Ask for fewer choices per prompt.");
}

TEST(RequestBounds, NOfTenToTheTwentyIsRefusedNamingTheNumberSent) {
  // vLLM's default bound (VLLM_MAX_N_SEQUENCES); pydantic reads 1e20 as the int 10^20, past int64.
  openai_server_config server = small_server();
  server.max_n_sequences = openai_server_config{}.max_n_sequences;
  expect_refused(completion(R"("n": 1e20)", server), "n",
                 "n must be at most 16384, got 100000000000000000000. Ask for fewer choices per prompt.");
  expect_refused(chat(R"("n": 18446744073709551615)", server), "n",
                 "n must be at most 16384, got 18446744073709551615. Ask for fewer choices per prompt.");
}

TEST(RequestBounds, ACompletionStartsAtMostTheBoundOfSequencesOverAllItsPrompts) {
  expect_ok(parse_completion_request(R"({"prompt": ["a", "b"], "n": 2})", small_server()));
  expect_refused(parse_completion_request(R"({"prompt": ["a", "b", "c"], "n": 2})", small_server()), "n",
                 "n × the number of prompts must be at most 4, got 2 × 3 = 6. Send fewer prompts per request or a "
                 "smaller n.");
  expect_refused(parse_completion_request(R"({"prompt": [[1], [2], [3], [1], [2]]})", small_server()), "n",
                 "n × the number of prompts must be at most 4, got 1 × 5 = 5. Send fewer prompts per request or a "
                 "smaller n.");
}

TEST(RequestBounds, PythonReadsAnIntegralFloatWithAllItsDigits) {
  EXPECT_EQ(python_int_of_float(1e20), "100000000000000000000");
  EXPECT_EQ(python_int_of_float(1e23), "99999999999999991611392");
  EXPECT_EQ(python_int_of_float(std::ldexp(1.0, 63)), "9223372036854775808");
  EXPECT_EQ(python_int_of_float(-3.0), "-3");
  EXPECT_EQ(python_int_of_float(0.0), "0");
  EXPECT_EQ(python_int_of_float(123456789012.0), "123456789012");
}

// ---- stop strings ----

TEST(RequestBounds, FourStopStringsPassAndAFifthIsPydanticsTooLong) {
  expect_ok(chat(R"("stop": ["a", "b", "c", "d"])"));
  // vLLM's StopParam: str | Annotated[list[str], Field(max_length=VLLM_MAX_STOP_STRINGS)]. The list's
  // items are not read: a number among them is not reported.
  auto r = completion(R"("stop": ["a", "b", "c", "d", 5])");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "Bad Request");
  EXPECT_EQ(r.error().param, "body.stop");
  EXPECT_EQ(r.error().message,
            "2 validation errors:\n"
            "  {'type': 'string_type', 'loc': 'body.stop', 'msg': 'Input should be a valid string', 'input': '<list of "
            "5 items>'}\n"
            "  {'type': 'too_long', 'loc': 'body.stop', 'msg': 'List should have at most 4 items after validation, not "
            "5', 'input': '<list of 5 items>', 'ctx': {'field_type': 'List', 'max_length': 4, 'actual_length': 5}}");
}

TEST(RequestBounds, AStopStringAtTheLengthLimitPassesAndOneCharacterMoreIsRefused) {
  expect_ok(chat(R"("stop": ["a", "\u00e9\u00e9\u00e9\u00e9\u00e9"])"));  // 5 characters, 10 bytes
  expect_refused(chat(R"("stop": ["a", "abcdef"])"), "stop",
                 "stop strings must be at most 5 characters, got 6 (stop[1]). Use a shorter stop string.");
  expect_refused(completion(R"("stop": "abcdef")"), "stop",
                 "stop strings must be at most 5 characters, got 6 (stop[0]). Use a shorter stop string.");
}

// ---- token id lists and maps, bounded by the vocabulary ----

TEST(RequestBounds, StopTokenIdsUpToTheVocabularySizePassAndOneMoreIsRefused) {
  expect_ok(chat(R"("stop_token_ids": )" + int_list(4)));
  const std::string message =
      "stop_token_ids must have at most 4 entries (the vocabulary size), got 5. Send each token id once, and only "
      "ids below 4.";
  expect_refused(chat(R"("stop_token_ids": )" + int_list(5)), "stop_token_ids", message);
  expect_refused(completion(R"("stop_token_ids": )" + int_list(5)), "stop_token_ids", message);
}

TEST(RequestBounds, StopTokenIdsOverTheBoundAreRefusedBeforeTheyAreRead) {
  // Five entries that are not integers: the bound answers, not five pydantic errors.
  expect_refused(chat(R"("stop_token_ids": ["x", "x", "x", "x", "x"])"), "stop_token_ids",
                 "stop_token_ids must have at most 4 entries (the vocabulary size), got 5. Send each token id once, "
                 "and only ids below 4.");
}

TEST(RequestBounds, LogitBiasUpToTheVocabularySizePassesAndOneMoreIsRefused) {
  expect_ok(chat(R"("logit_bias": {"0": 1, "1": 1, "2": 1, "3": 1})"));
  const std::string message =
      "logit_bias must have at most 4 entries (the vocabulary size), got 5. Send each token id once, and only ids "
      "below 4.";
  expect_refused(chat(R"("logit_bias": {"0": 1, "1": 1, "2": 1, "3": 1, "4": 1})"), "logit_bias", message);
  expect_refused(completion(R"("logit_bias": {"0": 1, "1": 1, "2": 1, "3": 1, "4": 1})"), "logit_bias", message);
}

TEST(RequestBounds, LogitBiasOverTheBoundIsRefusedBeforeItsValuesAreRead) {
  expect_refused(chat(R"("logit_bias": {"0": "x", "1": "x", "2": "x", "3": "x", "4": "x"})"), "logit_bias",
                 "logit_bias must have at most 4 entries (the vocabulary size), got 5. Send each token id once, and "
                 "only ids below 4.");
}

TEST(RequestBounds, PydanticsFieldErrorsComeBeforeTheBounds) {
  auto r = chat(R"("n": 5, "temperature": "hot")");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().type, "Bad Request");
  EXPECT_EQ(r.error().param, "body.temperature");
}

TEST(RequestBounds, RepeatedTokenIdsKeepTheirFirstPlace) {
  openai_server_config server = small_server();
  server.vocab_size = 100;
  auto r = chat(R"("stop_token_ids": [7, 3, 7, 3, 9], "logit_bias": {"7": 1, "3": 2, "07": 5, "+3": -1})", server);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto g = to_generation(r.value(), 10, server);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g.value().params.stop_token_ids, (std::vector<int32_t>{7, 3, 9}));
  // A Python dict of the converted keys: first place, last value.
  EXPECT_EQ(g.value().params.logit_bias, (std::vector<std::pair<int32_t, float>>{{7, 5.0f}, {3, -1.0f}}));
}

TEST(RequestBounds, StopTokenIdsOutsideTheVocabularyAreRefusedAsVllmDoes) {
  auto r = chat(R"("stop_token_ids": [1, 4, -1])");
  ASSERT_TRUE(r.ok());
  expect_refused(to_generation(r.value(), 10, small_server()), std::nullopt,
                 "token_id(s) [4, -1] in stop_token_ids contain out-of-vocab token ids. Vocabulary size: 4");
}

TEST(RequestBounds, AJsonObjectWithManyRepeatedKeysKeepsPythonsOrderAndValues) {
  std::string body = "{";
  for (int round = 0; round < 3; ++round)
    for (int k = 0; k < 100; ++k) body += "\"k" + std::to_string(k) + "\": " + std::to_string(round * 1000 + k) + ", ";
  body += "\"last\": 0}";
  auto r = parse_python_json(body);
  ASSERT_FALSE(r.error.has_value());
  ASSERT_EQ(r.value.size(), 101u);
  auto it = r.value.begin();
  for (int k = 0; k < 100; ++k, ++it) {
    EXPECT_EQ(it.key(), "k" + std::to_string(k));
    EXPECT_EQ(*it, 2000 + k);
  }
  EXPECT_EQ(it.key(), "last");
}

// ---- logprobs (vLLM's --max-logprobs, 20) ----

TEST(RequestBounds, TwentyLogprobsPassAndTwentyOneAreRefused) {
  openai_server_config server = small_server();
  server.vocab_size = 100;
  auto ok = to_generation(chat(R"("logprobs": true, "top_logprobs": 20)", server).value(), 10, server);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok.value().num_logprobs, 20);
  EXPECT_TRUE(to_generation(completion(R"("logprobs": 20)", server).value(), 10, server).ok());
  expect_refused(to_generation(completion(R"("logprobs": 21)", server).value(), 10, server), "logprobs",
                 "Requested sample logprobs of 21, which is greater than max allowed: 20 (parameter=logprobs, "
                 "value=21)");
}

// ---- priority ----

TEST(RequestBounds, PriorityIsReadAsInt64AndNeverTruncated) {
  EXPECT_EQ(chat(R"("priority": 2147483648)").value().priority, int64_t{1} << 31);
  EXPECT_EQ(completion(R"("priority": -9223372036854775808)").value().priority, INT64_MIN);
  auto r = completion(R"("priority": 9223372036854775808)");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().param, "body.priority");
  EXPECT_EQ(r.error().message,
            "1 validation error:\n  {'type': 'less_than_equal', 'loc': 'body.priority', 'msg': 'Input should be less "
            "than or equal to 9223372036854775807', 'input': '9223372036854775808', 'ctx': {'le': "
            "9223372036854775807}}");
}

// ---- the prompt against the context, before tokenizing ----

TEST(RequestBounds, APromptWithMoreCharactersThanTheContextCouldHoldIsRefusedUntokenized) {
  // 128 tokens of context, 16 for the output, at most 4 characters per token: 448 characters may fit.
  EXPECT_FALSE(check_prompt_characters(448, 4, 16, 128).has_value());
  auto e = check_prompt_characters(449, 4, 16, 128);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "input_text");
  EXPECT_EQ(e->message,
            "This model's maximum context length is 128 tokens. However, you requested 16 output tokens and your "
            "prompt contains 449 characters (more than 448 characters, which is the upper bound for 112 input "
            "tokens). Please reduce the length of the input prompt or the number of requested output tokens. "
            "(parameter=input_text, value=449)");
}

// ---- --max-tokens-limit ----

TEST(MaxTokensLimit, AskingForTheLimitPassesAndOneMoreIsRefusedNamingTheField) {
  EXPECT_FALSE(check_max_tokens_limit(completion(R"("max_tokens": 8)").value(), 8).has_value());
  auto e = check_max_tokens_limit(completion(R"("max_tokens": 9)").value(), 8);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "max_tokens");
  EXPECT_EQ(e->message, "max_tokens must be at most 8 on this server, got 9. Request fewer output tokens.");
  e = check_max_tokens_limit(chat(R"("max_tokens": 1, "max_completion_tokens": 9)").value(), 8);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->param, "max_completion_tokens");
  EXPECT_EQ(e->message, "max_completion_tokens must be at most 8 on this server, got 9. Request fewer output tokens.");
  EXPECT_FALSE(check_max_tokens_limit(completion(R"("max_tokens": 9)").value(), 0).has_value());  // no limit
}

TEST(MaxTokensLimit, ANestedMaxTokensIsNotTheField) {
  const completion_request r = completion(R"("metadata": {"max_tokens": 100}, "user": "max_tokens")").value();
  EXPECT_FALSE(check_max_tokens_limit(r, 8).has_value());
  EXPECT_FALSE(check_max_tokens_limit(completion(R"("max_tokens": null)").value(), 8).has_value());
  // Asking nothing gets the limit.
  auto g = to_generation(r, 10, small_server());
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g.value().params.max_tokens, 16);
  apply_max_tokens_limit(g.value(), 8);
  EXPECT_EQ(g.value().params.max_tokens, 8);
}

TEST(MaxTokensLimit, AnEscapedKeyIsTheField) {
  auto e = check_max_tokens_limit(completion(R"("max\u005ftokens": 100)").value(), 8);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message, "max_tokens must be at most 8 on this server, got 100. Request fewer output tokens.");
}

} // namespace
} // namespace troupe
