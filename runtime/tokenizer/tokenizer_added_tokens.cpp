#include "runtime/tokenizer/tokenizer_added_tokens.hpp"

#include <utf8proc.h>

#include <algorithm>

#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe::tokenization {
namespace {

// Rust regex's \w, which HF's single_word check uses: alphanumerics, marks, connector punctuation.
bool is_word_char(char32_t c) {
  if (utf8::is_alphanumeric(c) || c == '_') return true;
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_MN || category == UTF8PROC_CATEGORY_MC ||
         category == UTF8PROC_CATEGORY_ME || category == UTF8PROC_CATEGORY_PC;
}

std::size_t previous_char_start(std::string_view text, std::size_t end) {
  std::size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

bool ends_with_word(std::string_view text) {
  if (text.empty()) return false;
  char32_t c;
  utf8::decode_at(text, previous_char_start(text, text.size()), c);
  return is_word_char(c);
}

bool starts_with_word(std::string_view text) {
  if (text.empty()) return false;
  char32_t c;
  utf8::decode_at(text, 0, c);
  return is_word_char(c);
}

// Start of the whitespace run that ends text.
std::size_t trailing_space_start(std::string_view text) {
  std::size_t start = text.size();
  while (start > 0) {
    const std::size_t previous = previous_char_start(text, start);
    char32_t c;
    utf8::decode_at(text, previous, c);
    if (!utf8::is_whitespace(c)) break;
    start = previous;
  }
  return start;
}

// Length of the whitespace run that starts text.
std::size_t leading_space_length(std::string_view text) {
  std::size_t end = 0;
  while (end < text.size()) {
    char32_t c;
    const std::size_t length = utf8::decode_at(text, end, c);
    if (!utf8::is_whitespace(c)) break;
    end += length;
  }
  return end;
}

} // namespace

void added_token_matcher::add(const added_token& token, std::string pattern) {
  if (pattern.empty()) return;
  const auto index = static_cast<int32_t>(tokens_.size());
  tokens_.push_back(token);
  int32_t at = 0;
  for (const char c : pattern) {
    const auto byte = static_cast<unsigned char>(c);
    const auto it = nodes_[at].children.find(byte);
    if (it != nodes_[at].children.end()) {
      at = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes_.size());
      nodes_[at].children.emplace(byte, child);
      nodes_.emplace_back();
      at = child;
    }
  }
  // Two tokens with one pattern: the later one wins, as when HF rebuilds its automaton.
  nodes_[at].token = index;
  first_bytes_[static_cast<unsigned char>(pattern[0])] = true;
}

std::pair<std::size_t, int32_t> added_token_matcher::longest_at(std::string_view text, std::size_t pos) const {
  std::pair<std::size_t, int32_t> best{0, -1};
  int32_t at = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const auto it = nodes_[at].children.find(static_cast<unsigned char>(text[i]));
    if (it == nodes_[at].children.end()) break;
    at = it->second;
    if (nodes_[at].token >= 0) best = {i + 1 - pos, nodes_[at].token};
  }
  return best;
}

std::vector<text_part> added_token_matcher::split(std::string_view text) const {
  std::vector<text_part> parts;
  if (text.empty()) return parts;
  std::size_t start_offset = 0;
  std::size_t search = 0;
  while (search < text.size()) {
    // Leftmost-longest: the first position where any token matches, the longest token there.
    std::size_t start = search;
    std::pair<std::size_t, int32_t> found{0, -1};
    for (; start < text.size(); ++start) {
      if (!first_bytes_[static_cast<unsigned char>(text[start])]) continue;
      found = longest_at(text, start);
      if (found.second >= 0) break;
    }
    if (found.second < 0) break;
    std::size_t stop = start + found.first;
    // The automaton resumes after the raw match, whatever the strips below do.
    search = stop;
    const added_token& token = tokens_[found.second];
    if (token.single_word) {
      const bool space_before = start == 0 || !ends_with_word(text.substr(0, start));
      const bool space_after = stop == text.size() || !starts_with_word(text.substr(stop));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (token.rstrip) stop += leading_space_length(text.substr(stop));
    if (start_offset < start) parts.push_back({-1, start_offset, start});
    parts.push_back({token.id, start, stop});
    start_offset = stop;
  }
  if (start_offset < text.size()) parts.push_back({-1, start_offset, text.size()});
  return parts;
}

} // namespace troupe::tokenization
