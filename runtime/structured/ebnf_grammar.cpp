// guided_grammar: EBNF as llama.cpp's GBNF and xgrammar accept it. A rule is `name ::= alternatives`; a rule
// ends where the next `name ::=` begins; `#` starts a comment to the end of the line.

#include "runtime/structured/grammar_front_ends.hpp"
#include "runtime/structured/grammar_limits.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

#include <stdexcept>
#include <string>

namespace troupe::structured {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

class ebnf_parser {
public:
  explicit ebnf_parser(std::string_view text) : t_(text) { g_.what = "guided_grammar"; }

  grammar parse() {
    skip_space(true);
    if (!more()) fail("the grammar is empty", pos_);
    while (more()) {
      const std::size_t at = pos_;
      const std::string name = read_name();
      if (name.empty()) fail("expected a rule name", at);
      skip_space(true);
      if (!t_.substr(pos_).starts_with("::=")) fail("expected '::=' after rule name '" + name + "'", pos_);
      pos_ += 3;
      const int32_t rule = g_.rule(name);
      if (g_.has_body(rule)) fail("rule '" + name + "' is defined twice", at);
      g_.set_body(rule, alternation(0));
      skip_space(true);
    }
    g_.root = g_.rule("root");
    if (!g_.has_body(g_.root)) throw std::invalid_argument("guided_grammar: the grammar has no rule named 'root'");
    for (int32_t r = 0; r < g_.num_rules(); ++r) {
      if (!g_.has_body(r))
        throw std::invalid_argument("guided_grammar: rule '" + g_.rule_name(r) + "' is used but not defined");
    }
    return std::move(g_);
  }

private:
  [[noreturn]] void fail(const std::string& message, std::size_t at) const {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < at && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    throw std::invalid_argument("guided_grammar: " + message + " at line " + std::to_string(line) + ", column " +
                                std::to_string(column));
  }
  bool more() const { return pos_ < t_.size(); }
  char peek() const { return t_[pos_]; }

  // Skips blanks and comments; newlines too when newlines is set.
  void skip_space(bool newlines) {
    while (more()) {
      const char c = peek();
      if (c == '#') {
        while (more() && peek() != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string read_name() {
    const std::size_t start = pos_;
    while (more() && is_name_char(peek())) ++pos_;
    return std::string(t_.substr(start, pos_ - start));
  }

  // True when a rule definition (`name ::=`) starts at pos_.
  bool at_definition() const {
    std::size_t i = pos_;
    while (i < t_.size() && is_name_char(t_[i])) ++i;
    if (i == pos_) return false;
    while (i < t_.size() && (t_[i] == ' ' || t_[i] == '\t' || t_[i] == '\r' || t_[i] == '\n')) ++i;
    return t_.substr(i).starts_with("::=");
  }

  int32_t alternation(int depth) {
    std::vector<int32_t> options{sequence(depth)};
    while (more() && peek() == '|') {
      ++pos_;
      options.push_back(sequence(depth));
    }
    return g_.choice(std::move(options));
  }

  int32_t sequence(int depth) {
    std::vector<int32_t> items;
    while (true) {
      skip_space(true);
      if (!more() || peek() == '|' || peek() == ')') break;
      if (depth == 0 && at_definition()) break;
      items.push_back(quantified(depth));
    }
    return g_.sequence(std::move(items));
  }

  int32_t quantified(int depth) {
    int32_t e = atom(depth);
    // Each quantifier wraps the last: "a"*** nests like parentheses do.
    for (int stacked = 1; more(); ++stacked) {
      const std::size_t at = pos_;
      if (stacked + depth > limits::max_nesting_depth && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{'))
        fail("quantifiers and parentheses nested deeper than " + std::to_string(limits::max_nesting_depth) + " (limit)", at);
      if (peek() == '*') {
        e = g_.repeat(e, 0, unbounded);
      } else if (peek() == '+') {
        e = g_.repeat(e, 1, unbounded);
      } else if (peek() == '?') {
        e = g_.repeat(e, 0, 1);
      } else if (peek() == '{') {
        ++pos_;
        skip_space(false);
        const int32_t min = number(at);
        int32_t max = min;
        skip_space(false);
        if (more() && peek() == ',') {
          ++pos_;
          skip_space(false);
          max = more() && peek() >= '0' && peek() <= '9' ? number(at) : unbounded;
          skip_space(false);
        }
        if (!more() || peek() != '}') fail("expected '}' to close the repetition", pos_);
        if (max != unbounded && max < min) fail("repetition has max < min", at);
        e = g_.repeat(e, min, max);
      } else {
        break;
      }
      ++pos_;
    }
    return e;
  }

  int32_t number(std::size_t at) {
    if (!more() || peek() < '0' || peek() > '9') fail("expected a number in the repetition", at);
    long long v = 0;
    while (more() && peek() >= '0' && peek() <= '9') v = std::min<long long>(v * 10 + (t_[pos_++] - '0'), 1 << 30);
    if (v > limits::max_repeat_count) fail("repetition count above " + std::to_string(limits::max_repeat_count) + " (limit)", at);
    return static_cast<int32_t>(v);
  }

  int32_t atom(int depth) {
    const std::size_t at = pos_;
    const char c = peek();
    if (c == '(') {
      if (depth >= limits::max_nesting_depth)
        fail("parentheses nested deeper than " + std::to_string(limits::max_nesting_depth) + " (limit)", at);
      ++pos_;
      skip_space(true);
      if (more() && peek() == '=') fail("lookahead assertions are not supported", at);
      const int32_t inner = alternation(depth + 1);
      skip_space(true);
      if (!more() || peek() != ')') fail("unbalanced parenthesis", at);
      ++pos_;
      return inner;
    }
    if (c == '"' || c == '\'') return string_literal(c);
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return g_.codepoints({{0, 0x10FFFF}});
    }
    if (is_name_char(c)) return g_.ref(g_.rule(read_name()));
    fail(std::string("unexpected '") + c + "'", at);
  }

  char32_t codepoint() {
    const auto b = static_cast<unsigned char>(t_[pos_]);
    const int length = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    if (b >= 0xF8 || length == 0 || pos_ + length > t_.size()) fail("invalid UTF-8", pos_);
    char32_t c = length == 1 ? b : b & (0x7F >> length);
    for (int k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(t_[pos_ + k]);
      if ((next & 0xC0) != 0x80) fail("invalid UTF-8", pos_);
      c = (c << 6) | (next & 0x3F);
    }
    if (c > 0x10FFFF) fail("invalid UTF-8", pos_);
    pos_ += length;
    return c;
  }

  char32_t hex(int n, std::size_t at) {
    char32_t v = 0;
    for (int i = 0; i < n; ++i) {
      if (!more()) fail("incomplete escape", at);
      const char h = peek();
      const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) fail("bad hex digit in escape", at);
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  // The character at pos_, an escape resolved (\n \t \r \\ \" \' \] \[ \- \xHH \uHHHH \UHHHHHHHH).
  char32_t character() {
    if (peek() != '\\') return codepoint();
    const std::size_t at = pos_;
    ++pos_;
    if (!more()) fail("incomplete escape", at);
    const char c = t_[pos_++];
    switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case '0': return 0;
    case 'x': return hex(2, at);
    case 'u': return hex(4, at);
    case 'U': return hex(8, at);
    case '\\': case '"': case '\'': case ']': case '[': case '-': case '^': case '/': return static_cast<char32_t>(c);
    default: fail(std::string("unknown escape '\\") + c + "'", at);
    }
  }

  int32_t string_literal(char quote) {
    const std::size_t at = pos_;
    ++pos_;
    std::string bytes;
    while (true) {
      if (!more() || peek() == '\n') fail("unterminated string", at);
      if (peek() == quote) break;
      // \xHH stands for one byte, so a grammar can spell bytes that are not UTF-8 on their own.
      if (peek() == '\\' && pos_ + 1 < t_.size() && t_[pos_ + 1] == 'x') {
        pos_ += 2;
        bytes += static_cast<char>(hex(2, at));
        continue;
      }
      utf8::append(bytes, character());
    }
    ++pos_;
    return g_.literal(bytes);
  }

  int32_t char_class() {
    const std::size_t at = pos_;
    ++pos_;
    bool negate = false;
    if (more() && peek() == '^') {
      negate = true;
      ++pos_;
    }
    codepoint_ranges ranges;
    while (true) {
      if (!more()) fail("unterminated character class", at);
      if (peek() == ']') break;
      const char32_t lo = character();
      if (pos_ + 1 < t_.size() && peek() == '-' && t_[pos_ + 1] != ']') {
        ++pos_;
        const char32_t hi = character();
        if (hi < lo) fail("range out of order in character class", at);
        ranges.emplace_back(lo, hi);
      } else {
        ranges.emplace_back(lo, lo);
      }
    }
    ++pos_;
    return g_.codepoints(normalize_ranges(std::move(ranges), negate));
  }

  std::string_view t_;
  std::size_t pos_ = 0;
  grammar g_;
};

} // namespace

grammar parse_ebnf(std::string_view text) { return ebnf_parser(text).parse(); }

} // namespace troupe::structured
