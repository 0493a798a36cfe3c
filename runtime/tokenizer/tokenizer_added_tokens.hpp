#pragma once
// Added tokens (special tokens such as <|im_start|>, and user-added ones): found in text before anything
// else, with HF's rules (leftmost-longest match, single_word, lstrip, rstrip). Internal to the tokenizer.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::tokenization {

struct added_token {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A part of a text: an added token's id, or -1 for plain text, over the bytes [begin, end).
struct text_part {
  int32_t id;
  std::size_t begin;
  std::size_t end;
};

// A set of added tokens to look for, each under the text it matches as (its content, or for normalized
// tokens the normalized content).
class added_token_matcher {
public:
  // Adds token, to be found as pattern. Empty patterns are ignored.
  void add(const added_token& token, std::string pattern);
  bool empty() const { return tokens_.empty(); }

  // text cut into parts as HF's AddedVocabulary::find_matches does; parts cover text in order, except
  // where lstrip/rstrip let a token swallow the whitespace beside it. Empty text yields no parts.
  std::vector<text_part> split(std::string_view text) const;

private:
  struct node {
    std::map<unsigned char, int32_t> children;
    int32_t token = -1; // index into tokens_ when a pattern ends here
  };
  // Length of the longest pattern starting at text[pos], with its token index; {0, -1} when none.
  std::pair<std::size_t, int32_t> longest_at(std::string_view text, std::size_t pos) const;

  std::vector<node> nodes_{node{}};
  std::vector<added_token> tokens_;
  bool first_bytes_[256] = {};
};

} // namespace troupe::tokenization
