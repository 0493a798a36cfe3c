#pragma once
// Per-request sampling parameters, with vLLM's names, defaults and validation messages.
// The OpenAI schema layer fills this struct; the sampler and the stop checker read it.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/structured/grammar_matcher.hpp"

namespace troupe {

// Below this temperature a request samples greedily (vLLM's _SAMPLING_EPS).
inline constexpr float greedy_temperature_epsilon = 1e-5f;
// A positive temperature below this is raised to it, as vLLM does, so logits / T stays finite.
inline constexpr float min_positive_temperature = 1e-2f;
// logit_bias values are clamped to [-max_logit_bias, max_logit_bias], as vLLM does.
inline constexpr float max_logit_bias = 100.0f;

struct sampling_params {
  float temperature = 1.0f;  // 0 => greedy
  float top_p = 1.0f;        // 1 => off
  int32_t top_k = 0;         // 0 or -1 => off
  float min_p = 0.0f;        // 0 => off
  float repetition_penalty = 1.0f;  // over prompt + output tokens; 1 => off
  float presence_penalty = 0.0f;    // over output tokens only
  float frequency_penalty = 0.0f;   // over output tokens only
  std::optional<uint64_t> seed;     // empty: the engine draws one per request
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;  // EOS and stop_token_ids are masked (and cannot stop) until this many tokens
  bool ignore_eos = false;
  // The output text leaves out special tokens (vLLM's skip_special_tokens). Read by the scheduler's
  // detokenizer only: step plans do not carry it (step_plan_codec.cpp), shards never detokenize.
  bool skip_special_tokens = true;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;
  // (token id, bias) pairs added to the logits; ids are unique (they come from a JSON object).
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Log-probabilities to return with each sampled token: the token's own and this many alternatives
  // (vLLM's logprobs; from the raw model output, before penalties and temperature). Empty: none.
  std::optional<int32_t> logprobs;
  // Constrained decoding (structured outputs): every sampled token keeps the output inside this spec.
  // Empty: unconstrained. The gateway has compiled it once, so the engine never meets a bad spec.
  std::optional<structured_output> structured;

  bool operator==(const sampling_params&) const = default;

  // Checks every field the way vLLM's SamplingParams._verify_args (then the engine's out-of-vocab
  // logit_bias and stop_token_ids checks) does, in the same order. Returns "" when valid, else vLLM's message for the
  // first bad field, e.g. "top_p must be in (0, 1], got 1.5.".
  std::string validate(int32_t vocab_size) const;

  // True when the request takes the argmax (temperature below greedy_temperature_epsilon).
  bool greedy() const;
};

} // namespace troupe
