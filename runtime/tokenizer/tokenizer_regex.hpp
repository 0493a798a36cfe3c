#pragma once
// A compiled regular expression with the matching rules of Hugging Face tokenizers, which uses
// Oniguruma: PCRE2 in UTF + UCP mode, JIT-compiled, with \s and \S narrowed to Unicode White_Space
// (PCRE2 also counts U+180E), and Oniguruma's find_iter handling of empty matches.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe::tokenization {

class regex {
public:
  // Compiles pattern; throws user_error quoting the pattern and PCRE2's complaint when it is invalid.
  explicit regex(std::string_view pattern);
  ~regex();
  regex(regex&&) noexcept;
  regex& operator=(regex&&) noexcept;

  // All matches as byte ranges [first, second) in order, never overlapping; an empty match right after
  // the previous match is skipped, like the onig crate's find_iter.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const;

  // A pattern matching text literally (what HF builds from a {"String": ...} pattern).
  static std::string escape(std::string_view text);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// pattern with \s and \S rewritten to Unicode White_Space classes (exposed for tests).
std::string onig_compatible_pattern(std::string_view pattern);

} // namespace troupe::tokenization
