#include "runtime/engine/stop_checker.hpp"

#include <algorithm>

namespace troupe {

std::string_view to_string(finish_reason reason) {
  switch (reason) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::none: break;
  }
  return "";
}

stop_checker::stop_checker(const sampling_params& params, std::span<const int32_t> eos_token_ids,
                           int32_t num_prompt_tokens, int32_t max_model_len)
    : eos_token_ids_(eos_token_ids.begin(), eos_token_ids.end()),
      stop_token_ids_(params.stop_token_ids),
      stop_(params.stop),
      min_tokens_(params.min_tokens),
      max_tokens_(params.max_tokens),
      num_prompt_tokens_(num_prompt_tokens),
      max_model_len_(max_model_len),
      ignore_eos_(params.ignore_eos),
      include_stop_(params.include_stop_str_in_output) {}

size_t stop_checker::held_back(std::string_view text) const {
  if (include_stop_) return 0;
  size_t held = 0;
  for (const auto& s : stop_) {
    if (s.empty()) continue;  // validate() rejects these
    // Longest proper prefix of s that text ends with.
    for (size_t len = std::min(s.size() - 1, text.size()); len > held; --len) {
      if (text.ends_with(std::string_view(s).substr(0, len))) {
        held = len;
        break;
      }
    }
  }
  return held;
}

void stop_checker::find_stop_string(std::string_view text, size_t new_begin, stop_decision& d) const {
  size_t best_begin = 0, best_end = 0;
  const std::string* best = nullptr;
  for (const auto& s : stop_) {
    if (s.empty()) continue;  // validate() rejects these
    // A match must end in the new text; earlier text was searched before.
    size_t from = new_begin >= s.size() - 1 ? new_begin - (s.size() - 1) : 0;
    size_t pos = text.find(s, from);
    if (pos == std::string_view::npos) continue;
    size_t end = pos + s.size();
    if (best == nullptr || end < best_end || (end == best_end && pos < best_begin)) {
      best = &s;
      best_begin = pos;
      best_end = end;
    }
  }
  if (best != nullptr) {
    d.reason = finish_reason::stop;
    d.stop_string = *best;
    d.text_size = include_stop_ ? best_end : best_begin;
  }
}

stop_decision stop_checker::check_flushed(stop_decision d, std::string_view text) {
  const size_t new_begin = std::min(scanned_size_, text.size());
  scanned_size_ = text.size();
  d.text_size = text.size();
  if (d.reason == finish_reason::length && num_output_tokens_ > min_tokens_) {
    d.reason = finish_reason::none;
    find_stop_string(text, new_begin, d);
    if (d.reason == finish_reason::none) d.reason = finish_reason::length;
  }
  released_size_ = d.text_size;
  d.releasable_size = released_size_;
  return d;
}

stop_decision stop_checker::check(int32_t new_token, std::string_view text) {
  ++num_output_tokens_;
  const size_t new_begin = std::min(scanned_size_, text.size());
  scanned_size_ = text.size();
  const bool may_stop = num_output_tokens_ >= min_tokens_;
  auto contains = [](const std::vector<int32_t>& ids, int32_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  };

  stop_decision d;
  d.text_size = text.size();
  if (may_stop && !ignore_eos_ && contains(eos_token_ids_, new_token)) {
    d.reason = finish_reason::stop;
  } else if (may_stop && contains(stop_token_ids_, new_token)) {
    d.reason = finish_reason::stop;
    d.stop_token = new_token;
  }
  if (d.reason == finish_reason::stop && !include_stop_) d.text_size = new_begin;

  // vLLM searches stop strings only once more than min_tokens tokens are out.
  if (d.reason == finish_reason::none && num_output_tokens_ > min_tokens_) find_stop_string(text, new_begin, d);

  if (d.reason == finish_reason::none &&
      (num_output_tokens_ >= max_tokens_ ||
       static_cast<int64_t>(num_prompt_tokens_) + num_output_tokens_ >= max_model_len_)) {
    d.reason = finish_reason::length;
  }

  if (d.reason != finish_reason::none) {
    released_size_ = d.text_size;
  } else {
    // NOTE: released text never contains the start of a later stop-string match: any match ending
    // in later text begins in a suffix held back here.
    released_size_ = std::max(released_size_, text.size() - held_back(text));
  }
  d.releasable_size = released_size_;
  return d;
}

} // namespace troupe
