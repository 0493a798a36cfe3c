// From a validated request to the engine's sampling parameters, as vLLM goes from it to SamplingParams:
// the renderer's context-length checks (renderers/params.py TokenizeParams), get_max_tokens,
// to_sampling_params / SamplingParams.from_optional + __post_init__ + _verify_args, then the engine's
// input processor checks (logprobs limit, logit_bias vocabulary, empty prompt).
//
// The checks run here on doubles, not by sampling_params::validate on floats: Python's floats are
// doubles, and the messages print them ("got 0.1." must not become "got 0.10000000149011612.").

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/python_repr.hpp"

namespace troupe {

namespace {

std::string int_str(int64_t v) { return std::to_string(v); }

int32_t clamp32(int64_t v) {
  return static_cast<int32_t>(
      std::clamp<int64_t>(v, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()));
}

// Python's int(str): surrounding whitespace, a sign, decimal digits with single '_' between them.
std::optional<int64_t> python_int(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.front() == '_' || s.back() == '_') return std::nullopt;
  int64_t v = 0;
  bool overflow = false;
  char previous = 0;
  for (char c : s) {
    if (c == '_') {
      if (previous == '_') return std::nullopt;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      if (v > (std::numeric_limits<int64_t>::max() - (c - '0')) / 10) overflow = true;
      else v = v * 10 + (c - '0');
    } else {
      return std::nullopt;
    }
    previous = c;
  }
  if (overflow) return negative ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  return negative ? -v : v;
}

struct resolved_sampling {
  double temperature, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty;
  int64_t top_k;
};

// Request value, then the model's generation_config default, then OpenAI's default.
resolved_sampling resolve(const openai_sampling_fields& s, const openai_server_config& server) {
  return {s.temperature.value_or(server.default_temperature.value_or(1.0)),
          s.top_p.value_or(server.default_top_p.value_or(1.0)),
          s.min_p.value_or(server.default_min_p.value_or(0.0)),
          s.repetition_penalty.value_or(server.default_repetition_penalty.value_or(1.0)),
          s.presence_penalty.value_or(0.0),
          s.frequency_penalty.value_or(0.0),
          s.top_k.value_or(server.default_top_k.value_or(0))};
}

// get_max_tokens: the smallest of the room left in the context, the request's max_tokens and the
// model's generation_config max_new_tokens.
int64_t max_tokens_for(std::optional<int64_t> requested, int64_t num_prompt_tokens,
                       const openai_server_config& server) {
  int64_t m = server.max_model_len - num_prompt_tokens;
  if (requested) m = std::min(m, *requested);
  if (server.default_max_tokens) m = std::min(m, *server.default_max_tokens);
  return m;
}

// SamplingParams.from_optional, __post_init__ and _verify_args, then the input processor's checks.
checked<openai_generation> build(const openai_sampling_fields& fields, int64_t n, int64_t max_tokens,
                                 bool want_logprobs, int64_t logprobs, int64_t num_prompt_tokens,
                                 const openai_server_config& server) {
  // from_optional converts logit_bias keys first.
  std::vector<std::pair<int32_t, float>> bias;
  std::unordered_map<int32_t, size_t> bias_index;  // token -> its place in bias (linear, not quadratic)
  bias.reserve(fields.logit_bias.size());
  bias_index.reserve(fields.logit_bias.size());
  std::vector<std::string> invalid_keys;
  for (const auto& [key, value] : fields.logit_bias) {
    auto id = python_int(key);
    if (!id) {
      invalid_keys.push_back(key);
      continue;
    }
    float clamped = static_cast<float>(std::min(100.0, std::max(-100.0, value)));
    int32_t token = clamp32(*id);
    auto [at, fresh] = bias_index.try_emplace(token, bias.size());
    if (fresh) bias.emplace_back(token, clamped);
    else bias[at->second].second = clamped;  // a Python dict keeps the first position and the last value
  }
  if (!invalid_keys.empty()) {
    std::string list = "[";
    for (size_t i = 0; i < invalid_keys.size(); ++i) list += (i ? ", " : "") + python_str_repr(invalid_keys[i]);
    list += "]";
    return vllm_validation_error("logit_bias contains key(s) that cannot be converted to integer token IDs: " + list,
                                 "logit_bias", list);
  }

  resolved_sampling s = resolve(fields, server);
  // __post_init__: a tiny positive temperature is raised to 0.01 (with a warning, not an error).
  if (s.temperature > 0 && s.temperature < min_positive_temperature) s.temperature = min_positive_temperature;

  // _verify_args, in its order. Comparisons are negated so NaN fails them, as in Python.
  if (n < 1) return bad_request("n must be at least 1, got " + int_str(n) + ".");
  if (!(s.presence_penalty >= -2.0 && s.presence_penalty <= 2.0))
    return bad_request("presence_penalty must be in [-2, 2], got " + python_float_repr(s.presence_penalty) + ".");
  if (!(s.frequency_penalty >= -2.0 && s.frequency_penalty <= 2.0))
    return bad_request("frequency_penalty must be in [-2, 2], got " + python_float_repr(s.frequency_penalty) + ".");
  if (!std::isfinite(s.repetition_penalty))
    return bad_request("repetition_penalty must be a finite number, got " + python_float_repr(s.repetition_penalty) +
                       ".");
  if (s.repetition_penalty <= 0.0)
    return bad_request("repetition_penalty must be greater than zero, got " +
                       python_float_repr(s.repetition_penalty) + ".");
  const std::string t = python_float_repr(s.temperature);
  if (!std::isfinite(s.temperature))
    return vllm_validation_error("temperature must be a finite number, got " + t + ".", "temperature", t);
  if (s.temperature < 0.0) return vllm_validation_error("temperature must be non-negative, got " + t + ".", "temperature", t);
  if (s.temperature > 2.0) return vllm_validation_error("temperature must be in [0, 2], got " + t + ".", "temperature", t);
  if (!(s.top_p > 0.0 && s.top_p <= 1.0)) {
    const std::string p = python_float_repr(s.top_p);
    return vllm_validation_error("top_p must be in (0, 1], got " + p + ".", "top_p", p);
  }
  if (s.top_k < -1) return bad_request("top_k must be 0 (disable), or at least 1, got " + int_str(s.top_k) + ".");
  if (!(s.min_p >= 0.0 && s.min_p <= 1.0))
    return bad_request("min_p must be in [0, 1], got " + python_float_repr(s.min_p) + ".");
  if (max_tokens < 1)
    return vllm_validation_error("max_tokens must be at least 1, got " + int_str(max_tokens) + ".", "max_tokens",
                                 int_str(max_tokens));
  if (fields.min_tokens < 0)
    return bad_request("min_tokens must be greater than or equal to 0, got " + int_str(fields.min_tokens) + ".");
  if (fields.min_tokens > max_tokens)
    return bad_request("min_tokens must be less than or equal to max_tokens=" + int_str(max_tokens) + ", got " +
                       int_str(fields.min_tokens) + ".");
  for (const auto& stop : fields.stop)
    if (stop.empty()) return bad_request("stop cannot contain an empty string.");
  bool greedy = s.temperature < greedy_temperature_epsilon;
  if (greedy && n > 1) return bad_request("n must be 1 when using greedy sampling, got " + int_str(n) + ".");

  // The engine's input processor: the logprobs limit, logit_bias ids, an empty prompt.
  // (A plain flag and count, not std::optional: GCC tests a disengaged optional's payload before its
  // flag, which is harmless but makes valgrind report the branch.)
  if (want_logprobs && logprobs != 0) {
    int64_t wanted = logprobs == -1 ? server.vocab_size : logprobs;
    int64_t allowed = server.max_logprobs == -1 ? server.vocab_size : server.max_logprobs;
    if (wanted > allowed)
      return vllm_validation_error("Requested sample logprobs of " + int_str(wanted) +
                                       ", which is greater than max allowed: " + int_str(allowed),
                                   "logprobs", int_str(wanted));
  }

  openai_generation g;
  sampling_params& p = g.params;
  p.temperature = static_cast<float>(s.temperature);
  // Greedy sampling ignores the filters; vLLM resets them so they read as off.
  p.top_p = greedy ? 1.0f : static_cast<float>(s.top_p);
  p.top_k = greedy ? 0 : clamp32(s.top_k);
  p.min_p = greedy ? 0.0f : static_cast<float>(s.min_p);
  p.repetition_penalty = static_cast<float>(s.repetition_penalty);
  p.presence_penalty = static_cast<float>(s.presence_penalty);
  p.frequency_penalty = static_cast<float>(s.frequency_penalty);
  if (fields.seed && *fields.seed != -1) p.seed = static_cast<uint64_t>(*fields.seed);
  p.max_tokens = clamp32(max_tokens);
  p.min_tokens = clamp32(fields.min_tokens);
  p.ignore_eos = fields.ignore_eos;
  p.stop = fields.stop;
  std::unordered_set<int32_t> seen;  // deduplicated in one pass (vLLM's dict.fromkeys), first occurrence kept
  seen.reserve(fields.stop_token_ids.size());
  for (int64_t id : fields.stop_token_ids) {
    int32_t id32 = clamp32(id);
    if (seen.insert(id32).second) p.stop_token_ids.push_back(id32);
  }
  p.include_stop_str_in_output = fields.include_stop_str_in_output;
  p.logit_bias = std::move(bias);
  p.structured = fields.structured;
  std::string vocab_error = p.validate(server.vocab_size);
  if (!vocab_error.empty()) return bad_request(vocab_error);
  if (num_prompt_tokens == 0) return bad_request("The decoder prompt cannot be empty");

  g.n = clamp32(n);
  if (want_logprobs) g.num_logprobs = clamp32(logprobs == -1 ? server.vocab_size : logprobs);
  g.skip_special_tokens = fields.skip_special_tokens;
  g.params.skip_special_tokens = fields.skip_special_tokens;
  g.spaces_between_special_tokens = fields.spaces_between_special_tokens;
  return g;
}

std::string context_message(int32_t max_model_len, int64_t max_tokens) {
  return "This model's maximum context length is " + int_str(max_model_len) + " tokens. However, you requested " +
         int_str(max_tokens) + " output tokens and your prompt contains ";
}

const char* const context_advice =
    ". Please reduce the length of the input prompt or the number of requested output tokens.";

std::optional<api_error> check_max_tokens_fit(int64_t m, int32_t max_model_len, std::string_view param) {
  if (m <= max_model_len) return std::nullopt;
  // TokenizeParams.__post_init__ (the "max_model_len=max_total_tokens=" is vLLM's own f-string).
  return vllm_validation_error(std::string(param) + "=" + int_str(m) +
                                   " cannot be greater than max_model_len=max_total_tokens=" + int_str(max_model_len) +
                                   ". Please request fewer output tokens.",
                               std::string(param), int_str(m));
}

} // namespace

std::optional<int64_t> requested_max_tokens(const chat_request& r) {
  return r.max_completion_tokens ? r.max_completion_tokens : r.max_tokens;
}

std::string_view requested_max_tokens_param(const chat_request& r) {
  return r.max_completion_tokens ? "max_completion_tokens" : "max_tokens";
}

std::optional<api_error> check_context_length(int64_t num_prompt_tokens, std::optional<int64_t> max_tokens,
                                              int32_t max_model_len, prompt_form form,
                                              std::string_view max_tokens_param) {
  const int64_t m = max_tokens.value_or(0);
  if (auto e = check_max_tokens_fit(m, max_model_len, max_tokens_param)) return e;
  const int64_t max_input = max_model_len - m;
  if (num_prompt_tokens <= max_input) return std::nullopt;
  // Text is tokenized with truncation at max_input + 1 tokens: vLLM knows only a lower bound.
  const bool lower_bound = form == prompt_form::text;
  const int64_t n = lower_bound ? max_input + 1 : num_prompt_tokens;
  const std::string at_least = lower_bound ? "at least " : "";
  return vllm_validation_error(context_message(max_model_len, m) + at_least + int_str(n) + " input tokens, for a total of " +
                                   at_least + int_str(n + m) + " tokens" + context_advice,
                               "input_tokens", int_str(n));
}

std::optional<api_error> check_prompt_characters(int64_t num_characters, int64_t max_chars_per_token,
                                                 std::optional<int64_t> max_tokens, int32_t max_model_len,
                                                 std::string_view max_tokens_param) {
  const int64_t m = max_tokens.value_or(0);
  if (auto e = check_max_tokens_fit(m, max_model_len, max_tokens_param)) return e;
  const int64_t max_input = max_model_len - m;
  const int64_t max_chars = max_input * max_chars_per_token;
  if (num_characters <= max_chars) return std::nullopt;
  return vllm_validation_error(context_message(max_model_len, m) + int_str(num_characters) + " characters (more than " +
                                   int_str(max_chars) + " characters, which is the upper bound for " +
                                   int_str(max_input) + " input tokens)" + context_advice,
                               "input_text", int_str(num_characters));
}

namespace {

std::optional<api_error> check_limit(std::optional<int64_t> requested, std::string_view param, int64_t limit) {
  if (limit <= 0 || !requested || *requested <= limit) return std::nullopt;
  return bad_request(std::string(param) + " must be at most " + int_str(limit) + " on this server, got " +
                         int_str(*requested) + ". Request fewer output tokens.",
                     std::string(param));
}

} // namespace

std::optional<api_error> check_max_tokens_limit(const chat_request& r, int64_t limit) {
  return check_limit(requested_max_tokens(r), requested_max_tokens_param(r), limit);
}

std::optional<api_error> check_max_tokens_limit(int64_t requested, int64_t limit) {
  return check_limit(requested, "max_tokens", limit);
}

std::optional<api_error> check_max_tokens_limit(const completion_request& r, int64_t limit) {
  return check_limit(r.max_tokens_sent ? std::optional<int64_t>(r.max_tokens) : std::nullopt, "max_tokens", limit);
}

void apply_max_tokens_limit(openai_generation& g, int64_t limit) {
  if (limit > 0 && g.params.max_tokens > limit) g.params.max_tokens = clamp32(limit);
}

checked<openai_generation> to_generation(const chat_request& r, int64_t num_prompt_tokens,
                                         const openai_server_config& server) {
  int64_t max_tokens = max_tokens_for(requested_max_tokens(r), num_prompt_tokens, server);
  return build(r.sampling, r.n.value_or(1), max_tokens, r.logprobs, r.top_logprobs, num_prompt_tokens, server);
}

checked<openai_generation> to_generation(const completion_request& r, int64_t num_prompt_tokens,
                                         const openai_server_config& server) {
  // echo with max_tokens 0 returns the prompt alone; the engine still generates one token.
  const bool echo_only = r.echo && r.max_tokens == 0;
  int64_t max_tokens = max_tokens_for(r.max_tokens, num_prompt_tokens, server);
  int64_t logprobs = 0;
  const bool want_logprobs = r.logprobs.has_value();
  if (want_logprobs) logprobs = *r.logprobs;
  auto g = build(r.sampling, r.n, echo_only ? 1 : max_tokens, want_logprobs, logprobs, num_prompt_tokens, server);
  if (g) g.value().echo_only = echo_only;
  return g;
}

} // namespace troupe
