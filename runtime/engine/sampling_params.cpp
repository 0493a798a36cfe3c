#include "runtime/engine/sampling_params.hpp"

#include <charconv>
#include <cmath>
#include <ranges>
#include <string_view>

namespace troupe {

namespace {

// Formats v the way Python's repr(float) does, so messages read exactly like vLLM's ("got -1.0.",
// "got 1e-05.", "got inf."). The digits are the shortest that round-trip the float, which are the
// digits the user wrote in the JSON body.
std::string python_float(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // "-1.5e+00"
  std::string out;
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits += c;
  int exp = 0;
  std::string_view exp_text = sci.substr(e_pos + 1);
  if (exp_text.front() == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);

  // Python switches to exponent notation outside [1e-4, 1e16).
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += exp < 0 ? "e-" : "e+";
    int mag = exp < 0 ? -exp : exp;
    if (mag < 10) out += '0';
    out += std::to_string(mag);
    return out;
  }
  if (exp < 0) {
    out += "0.";
    out.append(static_cast<size_t>(-exp - 1), '0');
    out += digits;
    return out;
  }
  size_t int_len = static_cast<size_t>(exp) + 1;
  if (digits.size() <= int_len) {
    out += digits;
    out.append(int_len - digits.size(), '0');
    out += ".0";
  } else {
    out += digits.substr(0, int_len);
    out += '.';
    out += digits.substr(int_len);
  }
  return out;
}

} // namespace

std::string sampling_params::validate(int32_t vocab_size) const {
  // Comparisons are written as !(in range) so that NaN fails them, as it does in Python.
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    return "presence_penalty must be in [-2, 2], got " + python_float(presence_penalty) + ".";
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return "frequency_penalty must be in [-2, 2], got " + python_float(frequency_penalty) + ".";
  if (!std::isfinite(repetition_penalty))
    return "repetition_penalty must be a finite number, got " + python_float(repetition_penalty) + ".";
  if (repetition_penalty <= 0.0f)
    return "repetition_penalty must be greater than zero, got " + python_float(repetition_penalty) + ".";
  if (!std::isfinite(temperature))
    return "temperature must be a finite number, got " + python_float(temperature) + ".";
  if (temperature < 0.0f)
    return "temperature must be non-negative, got " + python_float(temperature) + ".";
  if (temperature > 2.0f)
    return "temperature must be in [0, 2], got " + python_float(temperature) + ".";
  if (!(top_p > 0.0f && top_p <= 1.0f))
    return "top_p must be in (0, 1], got " + python_float(top_p) + ".";
  // vLLM quietly accepts -1 as "off", but prefers 0.
  if (top_k < -1)
    return "top_k must be 0 (disable), or at least 1, got " + std::to_string(top_k) + ".";
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    return "min_p must be in [0, 1], got " + python_float(min_p) + ".";
  if (max_tokens < 1)
    return "max_tokens must be at least 1, got " + std::to_string(max_tokens) + ".";
  if (min_tokens < 0)
    return "min_tokens must be greater than or equal to 0, got " + std::to_string(min_tokens) + ".";
  if (min_tokens > max_tokens)
    return "min_tokens must be less than or equal to max_tokens=" + std::to_string(max_tokens) +
           ", got " + std::to_string(min_tokens) + ".";
  for (const auto& s : stop)
    if (s.empty()) return "stop cannot contain an empty string.";

  // vLLM's _validate_logit_bias, then its _validate_stop_token_ids.
  auto out_of_vocab = [&](auto&& ids, std::string_view field) -> std::string {
    std::string bad_ids;
    for (int32_t id : ids) {
      if (id >= 0 && id < vocab_size) continue;
      if (!bad_ids.empty()) bad_ids += ", ";
      bad_ids += std::to_string(id);
    }
    if (bad_ids.empty()) return {};
    return "token_id(s) [" + bad_ids + "] in " + std::string(field) +
           " contain out-of-vocab token ids. Vocabulary size: " + std::to_string(vocab_size);
  };
  if (std::string e = out_of_vocab(logit_bias | std::views::keys, "logit_bias"); !e.empty()) return e;
  return out_of_vocab(stop_token_ids, "stop_token_ids");
}

bool sampling_params::greedy() const { return temperature < greedy_temperature_epsilon; }

} // namespace troupe
