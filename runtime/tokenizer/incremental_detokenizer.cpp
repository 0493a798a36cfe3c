// Streaming detokenization: vLLM's prefix/read-offset scheme (also HF's DecodeStream). The window from
// prefix to read offset is text already shown; decoding it together with the new tokens and cutting off
// its text gives exactly what the new tokens add, with decoder effects that depend on neighbours (a
// SentencePiece space stripped from the first token, byte-fallback runs) the same as in a whole decode.

#include "runtime/tokenizer/tokenizer.hpp"

#include <algorithm>

namespace troupe {
namespace {

// How many prompt tokens the first window starts with (vLLM uses the same number).
constexpr std::size_t initial_window_tokens = 5;
// How far the window may reach back for a clean cut before it settles for where it is.
constexpr std::size_t max_window_walk_back = 64;

bool ends_with_replacement(std::string_view text) { return text.ends_with("\xEF\xBF\xBD"); }

} // namespace

incremental_detokenizer::incremental_detokenizer(const tokenizer& tok, std::span<const int32_t> prompt_ids,
                                                 bool skip_special_tokens)
    : tokenizer_(tok), skip_special_tokens_(skip_special_tokens) {
  std::size_t start = prompt_ids.size() > initial_window_tokens ? prompt_ids.size() - initial_window_tokens : 0;
  // The window must open where the prompt's own text can be cut: on a token that shows text (after
  // skipped special tokens a SentencePiece decoder would strip the first generated token's space as if
  // it began the text), and not inside a character (half a byte-fallback run decodes to U+FFFDs). Both
  // show as a window text that is not the tail of the whole prompt's text.
  if (start > 0) {
    const std::string whole = tok.decode(prompt_ids, skip_special_tokens);
    for (std::size_t steps = 0; start > 0 && steps < max_window_walk_back; ++steps, --start) {
      const std::string tail = tok.decode(prompt_ids.subspan(start), skip_special_tokens);
      if (!tail.empty() && whole.ends_with(tail)) break;
    }
  }
  window_.assign(prompt_ids.begin() + static_cast<std::ptrdiff_t>(start), prompt_ids.end());
  read_offset_ = window_.size();
  prefix_text_ = tok.decode(window_, skip_special_tokens);
}

std::string incremental_detokenizer::push(int32_t id) {
  window_.push_back(id);
  std::string text = tokenizer_.decode(window_, skip_special_tokens_);
  // Hold back while the new tokens add nothing or end inside a character (decode shows that as U+FFFD).
  if (text.size() <= prefix_text_.size() || ends_with_replacement(text)) return std::string();
  std::string delta;
  if (text.starts_with(prefix_text_)) {
    delta = text.substr(prefix_text_.size());
  } else {
    // The new tokens changed text already shown (an invalid byte-fallback run turns into U+FFFDs
    // retroactively). What was shown stays; show the new tokens' own text.
    const std::span<const int32_t> fresh(window_.begin() + static_cast<std::ptrdiff_t>(read_offset_), window_.end());
    delta = tokenizer_.decode(fresh, skip_special_tokens_);
  }
  // The tokens just shown become the window's prefix; they produced text, so the window opens on a
  // token that shows text.
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(read_offset_));
  read_offset_ = window_.size();
  prefix_text_ = tokenizer_.decode(window_, skip_special_tokens_);
  return delta;
}

std::string incremental_detokenizer::flush() {
  std::string text = tokenizer_.decode(window_, skip_special_tokens_);
  std::string delta;
  if (text.size() > prefix_text_.size()) {
    delta = text.starts_with(prefix_text_)
                ? text.substr(prefix_text_.size())
                : tokenizer_.decode(std::span<const int32_t>(window_).subspan(read_offset_), skip_special_tokens_);
  }
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(read_offset_));
  read_offset_ = window_.size();
  prefix_text_ = tokenizer_.decode(window_, skip_special_tokens_);
  return delta;
}

} // namespace troupe
