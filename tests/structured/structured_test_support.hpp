#pragma once
// Helpers of the structured-output tests: whole-text matching against a front end's grammar, and small
// hand-made vocabularies.

#include "runtime/structured/grammar_automaton.hpp"
#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/structured/pushdown_parser.hpp"
#include "runtime/structured/token_vocabulary.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::structured::testing {

// True when g accepts exactly text.
inline bool matches(const grammar& g, std::string_view text) {
  const grammar_automaton a = compile_automaton(g, "test");
  pushdown_parser parser(a, 2000);
  parse_state state = parser.initial(), next;
  for (const char c : text) {
    if (!parser.advance(state, static_cast<uint8_t>(c), next)) return false;
    std::swap(state, next);
  }
  return state.complete;
}

// The message of the std::invalid_argument f throws; "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// A vocabulary of the given token texts; ids past them: the end ids, then the special ids.
inline std::shared_ptr<const token_vocabulary> toy_vocabulary(std::vector<std::string> texts, int num_end = 1,
                                                              int num_special = 0) {
  std::vector<uint8_t> special(texts.size() + num_end + num_special, 0);
  std::vector<int32_t> ends;
  const auto first_end = static_cast<int32_t>(texts.size());
  for (int i = 0; i < num_end; ++i) {
    ends.push_back(first_end + i);
    texts.push_back("<end" + std::to_string(i) + ">");
  }
  for (int i = 0; i < num_special; ++i) {
    special[texts.size()] = 1;
    texts.push_back("<special" + std::to_string(i) + ">");
  }
  return std::make_shared<const token_vocabulary>(std::move(texts), std::move(special), std::move(ends));
}

// Ids set in a mask.
inline std::vector<int32_t> allowed_ids(grammar_matcher& m) {
  std::vector<uint32_t> words(m.bitmask_words());
  m.fill_next_token_bitmask(words);
  std::vector<int32_t> ids;
  for (std::size_t i = 0; i < words.size() * 32; ++i) {
    if (words[i / 32] >> (i % 32) & 1) ids.push_back(static_cast<int32_t>(i));
  }
  return ids;
}

} // namespace troupe::structured::testing
