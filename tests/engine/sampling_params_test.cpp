#include "runtime/engine/sampling_params.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

namespace troupe {
namespace {

constexpr int32_t vocab = 1000;

TEST(sampling_params, defaults_are_valid_and_match_vllm) {
  sampling_params p;
  EXPECT_EQ(p.validate(vocab), "");
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.top_p, 1.0f);
  EXPECT_EQ(p.top_k, 0);
  EXPECT_EQ(p.max_tokens, 16);
  EXPECT_FALSE(p.seed.has_value());
  EXPECT_FALSE(p.greedy());
}

TEST(sampling_params, temperature_zero_means_greedy) {
  sampling_params p;
  p.temperature = 0.0f;
  EXPECT_TRUE(p.greedy());
  EXPECT_EQ(p.validate(vocab), "");
  p.temperature = 1e-6f;  // below vLLM's epsilon
  EXPECT_TRUE(p.greedy());
  p.temperature = 1e-4f;
  EXPECT_FALSE(p.greedy());
}

TEST(sampling_params, top_k_minus_one_is_quietly_accepted_as_off) {
  sampling_params p;
  p.top_k = -1;
  EXPECT_EQ(p.validate(vocab), "");
}

struct bad_case {
  const char* name;
  std::function<void(sampling_params&)> set;
  const char* message;
};

TEST(sampling_params, each_bad_field_gets_vllms_message) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bad_case cases[] = {
      {"presence", [](auto& p) { p.presence_penalty = 2.5f; }, "presence_penalty must be in [-2, 2], got 2.5."},
      {"presence nan", [&](auto& p) { p.presence_penalty = nan; }, "presence_penalty must be in [-2, 2], got nan."},
      {"frequency", [](auto& p) { p.frequency_penalty = -3.0f; }, "frequency_penalty must be in [-2, 2], got -3.0."},
      {"repetition inf", [&](auto& p) { p.repetition_penalty = inf; },
       "repetition_penalty must be a finite number, got inf."},
      {"repetition zero", [](auto& p) { p.repetition_penalty = 0.0f; },
       "repetition_penalty must be greater than zero, got 0.0."},
      {"temperature nan", [&](auto& p) { p.temperature = nan; }, "temperature must be a finite number, got nan."},
      {"temperature negative", [](auto& p) { p.temperature = -1.0f; }, "temperature must be non-negative, got -1.0."},
      {"temperature high", [](auto& p) { p.temperature = 2.5f; }, "temperature must be in [0, 2], got 2.5."},
      {"top_p high", [](auto& p) { p.top_p = 1.5f; }, "top_p must be in (0, 1], got 1.5."},
      {"top_p zero", [](auto& p) { p.top_p = 0.0f; }, "top_p must be in (0, 1], got 0.0."},
      {"top_p tiny negative", [](auto& p) { p.top_p = -1e-5f; }, "top_p must be in (0, 1], got -1e-05."},
      {"top_k", [](auto& p) { p.top_k = -2; }, "top_k must be 0 (disable), or at least 1, got -2."},
      {"min_p", [](auto& p) { p.min_p = 1.1f; }, "min_p must be in [0, 1], got 1.1."},
      {"min_p negative", [](auto& p) { p.min_p = -0.1f; }, "min_p must be in [0, 1], got -0.1."},
      {"max_tokens", [](auto& p) { p.max_tokens = 0; }, "max_tokens must be at least 1, got 0."},
      {"min_tokens negative", [](auto& p) { p.min_tokens = -1; },
       "min_tokens must be greater than or equal to 0, got -1."},
      {"min_tokens above max", [](auto& p) { p.min_tokens = 20; },
       "min_tokens must be less than or equal to max_tokens=16, got 20."},
      {"empty stop", [](auto& p) { p.stop = {"a", ""}; }, "stop cannot contain an empty string."},
      {"logit_bias out of vocab", [](auto& p) { p.logit_bias = {{5, 1.0f}, {1000, 2.0f}, {-1, 0.5f}}; },
       "token_id(s) [1000, -1] in logit_bias contain out-of-vocab token ids. Vocabulary size: 1000"},
      {"stop_token_ids out of vocab", [](auto& p) { p.stop_token_ids = {999, 1000, -3}; },
       "token_id(s) [1000, -3] in stop_token_ids contain out-of-vocab token ids. Vocabulary size: 1000"},
  };
  for (const auto& c : cases) {
    sampling_params p;
    c.set(p);
    EXPECT_EQ(p.validate(vocab), c.message) << c.name;
  }
}

TEST(sampling_params, the_first_bad_field_in_vllms_order_is_reported) {
  sampling_params p;
  p.top_p = 2.0f;
  p.temperature = -1.0f;
  p.max_tokens = 0;
  EXPECT_EQ(p.validate(vocab), "temperature must be non-negative, got -1.0.");
}

TEST(sampling_params, numbers_in_messages_read_like_python_floats) {
  auto message_for_top_p = [](float v) {
    sampling_params p;
    p.top_p = v;
    return p.validate(vocab);
  };
  EXPECT_EQ(message_for_top_p(100.0f), "top_p must be in (0, 1], got 100.0.");
  EXPECT_EQ(message_for_top_p(1.25f), "top_p must be in (0, 1], got 1.25.");
  EXPECT_EQ(message_for_top_p(-0.0001f), "top_p must be in (0, 1], got -0.0001.");
  EXPECT_EQ(message_for_top_p(1e16f), "top_p must be in (0, 1], got 1e+16.");
  EXPECT_EQ(message_for_top_p(1.5e17f), "top_p must be in (0, 1], got 1.5e+17.");
  EXPECT_EQ(message_for_top_p(123456.5f), "top_p must be in (0, 1], got 123456.5.");
  EXPECT_EQ(message_for_top_p(-std::numeric_limits<float>::infinity()), "top_p must be in (0, 1], got -inf.");
}

} // namespace
} // namespace troupe
