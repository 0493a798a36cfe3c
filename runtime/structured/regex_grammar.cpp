// guided_regex: the ECMAScript regex subset people write for structured outputs, parsed straight into the
// grammar's expressions. Backreferences, lookaround and word boundaries cannot be a context-free match
// over the output's bytes, so they are refused by name.

#include "runtime/structured/grammar_front_ends.hpp"
#include "runtime/structured/grammar_limits.hpp"

#include <stdexcept>
#include <string>

namespace troupe::structured {
namespace {

class regex_parser {
public:
  regex_parser(grammar& g, std::string_view pattern, const regex_options& options)
      : g_(g), p_(pattern), options_(options) {}

  int32_t parse() {
    const int32_t e = alternation(0);
    if (pos_ < p_.size()) fail("unbalanced parenthesis", pos_);
    return e;
  }

private:
  [[noreturn]] void fail(const std::string& message, std::size_t at) const {
    throw std::invalid_argument(std::string(options_.what) + ": " + message + " at offset " + std::to_string(at));
  }
  bool more() const { return pos_ < p_.size(); }
  char peek() const { return p_[pos_]; }

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
    while (more() && peek() != '|' && peek() != ')') {
      if (peek() == '^') {
        if (depth != 0 || !items.empty()) fail("anchor '^' is supported only at the start of the pattern", pos_);
        ++pos_;
        continue;
      }
      if (peek() == '$') {
        if (depth != 0 || (pos_ + 1 < p_.size() && p_[pos_ + 1] != '|'))
          fail("anchor '$' is supported only at the end of the pattern", pos_);
        ++pos_;
        continue;
      }
      items.push_back(quantified(depth));
    }
    return g_.sequence(std::move(items));
  }

  int32_t quantified(int depth) {
    const std::size_t atom_at = pos_;
    int32_t e = atom(depth);
    // Each quantifier wraps the last: a*** nests like groups do.
    for (int stacked = 1; more(); ++stacked) {
      int32_t min = 0, max = unbounded;
      const std::size_t at = pos_;
      if (peek() == '*') {
        ++pos_;
      } else if (peek() == '+') {
        min = 1;
        ++pos_;
      } else if (peek() == '?') {
        max = 1;
        ++pos_;
      } else if (peek() == '{' && counted(min, max)) {
      } else {
        break;
      }
      if (max != unbounded && max < min) fail("repetition {" + std::to_string(min) + "," + std::to_string(max) + "} has max < min", at);
      if (more() && peek() == '?') ++pos_;  // lazy: the same language
      if (more() && peek() == '+') fail("possessive quantifiers are not supported", pos_);
      if (stacked + depth > limits::max_nesting_depth)
        fail("quantifiers and groups nested deeper than " + std::to_string(limits::max_nesting_depth) + " (limit)", at);
      e = g_.repeat(e, min, max);
      (void)atom_at;
    }
    return e;
  }

  // {n}, {n,}, {n,m}; false (position unchanged) when the brace does not start one, as in ECMAScript.
  bool counted(int32_t& min, int32_t& max) {
    std::size_t i = pos_ + 1;
    const auto number = [&](int32_t& out) {
      const std::size_t start = i;
      long long v = 0;
      while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9') v = std::min<long long>(v * 10 + (p_[i++] - '0'), 1 << 30);
      out = static_cast<int32_t>(v);
      return i > start;
    };
    if (!number(min)) return false;
    if (i < p_.size() && p_[i] == '}') {
      max = min;
    } else if (i < p_.size() && p_[i] == ',') {
      ++i;
      if (!number(max)) max = unbounded;
      if (i >= p_.size() || p_[i] != '}') return false;
    } else {
      return false;
    }
    if (min > limits::max_repeat_count || max > limits::max_repeat_count)
      fail("repetition count above " + std::to_string(limits::max_repeat_count) + " (limit)", pos_);
    pos_ = i + 1;
    return true;
  }

  // The code point at pos_ (UTF-8), advancing.
  char32_t codepoint() {
    const auto b = static_cast<unsigned char>(p_[pos_]);
    int length = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    if (b >= 0xF8 || length == 0 || pos_ + length > p_.size()) fail("invalid UTF-8", pos_);
    char32_t c = length == 1 ? b : b & (0x7F >> length);
    for (int k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(p_[pos_ + k]);
      if ((next & 0xC0) != 0x80) fail("invalid UTF-8", pos_);
      c = (c << 6) | (next & 0x3F);
    }
    if (c > 0x10FFFF) fail("invalid UTF-8", pos_);
    pos_ += length;
    return c;
  }

  int32_t atom(int depth) {
    const std::size_t at = pos_;
    const char c = peek();
    if (c == '(') {
      if (depth >= limits::max_nesting_depth)
        fail("groups nested deeper than " + std::to_string(limits::max_nesting_depth) + " (limit)", at);
      ++pos_;
      if (p_.substr(pos_).starts_with("?:")) {
        pos_ += 2;
      } else if (p_.substr(pos_).starts_with("?=") || p_.substr(pos_).starts_with("?!")) {
        fail("lookahead is not supported", at);
      } else if (p_.substr(pos_).starts_with("?<=") || p_.substr(pos_).starts_with("?<!")) {
        fail("lookbehind is not supported", at);
      } else if (p_.substr(pos_).starts_with("?<") || p_.substr(pos_).starts_with("?P<")) {
        const std::size_t close = p_.find('>', pos_);
        if (close == std::string_view::npos) fail("unterminated group name", at);
        pos_ = close + 1;
      } else if (more() && peek() == '?') {
        fail("group flags are not supported", at);
      }
      const int32_t inner = alternation(depth + 1);
      if (!more() || peek() != ')') fail("unbalanced parenthesis", at);
      ++pos_;
      return inner;
    }
    if (c == ')') fail("unbalanced parenthesis", at);
    if (c == '*' || c == '+' || c == '?') fail("nothing to repeat", at);
    if (c == '[') return char_class();
    if (c == '.') {
      ++pos_;
      return chars({{0, 9}, {11, 12}, {14, 0x2027}, {0x202A, 0x10FFFF}});
    }
    if (c == '\\') return escape(false, nullptr);
    return chars({{codepoint(), 0}}, true);
  }

  // The expression of code point ranges; single: ranges[0].first alone. In a JSON string, '"', '\' and
  // control characters appear escaped, as JSON writes them.
  int32_t chars(codepoint_ranges ranges, bool single = false) {
    if (single) ranges = {{ranges[0].first, ranges[0].first}};
    ranges = normalize_ranges(std::move(ranges), false);
    if (!options_.json_string) return g_.codepoints(ranges);
    std::vector<int32_t> escaped;
    const auto contains = [&](char32_t c) {
      for (const auto& [lo, hi] : ranges) if (c >= lo && c <= hi) return true;
      return false;
    };
    static const char* hex = "0123456789abcdef";
    for (char32_t c = 0; c < 0x20; ++c) {
      if (!contains(c)) continue;
      std::string e = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                                                                                             : std::string("\\u00") + hex[c >> 4] + hex[c & 15];
      escaped.push_back(g_.literal(e));
    }
    if (contains('"')) escaped.push_back(g_.literal("\\\""));
    if (contains('\\')) escaped.push_back(g_.literal("\\\\"));
    codepoint_ranges plain = normalize_ranges({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}, true);
    codepoint_ranges kept;
    for (const auto& [lo, hi] : ranges) {
      for (const auto& [a, b] : plain) {
        const char32_t l = std::max(lo, a), h = std::min(hi, b);
        if (l <= h) kept.emplace_back(l, h);
      }
    }
    if (!kept.empty()) escaped.insert(escaped.begin(), g_.codepoints(kept));
    if (escaped.empty()) return g_.codepoints({});
    return g_.choice(std::move(escaped));
  }

  static void add_class(char c, codepoint_ranges& out) {
    switch (c) {
    case 'd': out.emplace_back('0', '9'); break;
    case 'w': out.insert(out.end(), {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}); break;
    case 's': out.insert(out.end(), {{'\t', '\r'}, {' ', ' '}}); break;
    }
  }

  // An escape at pos_ (the backslash). In a class (ranges != null) class escapes add to ranges and the
  // return value is the code point, or -1; outside, the expression.
  int32_t escape(bool in_class, codepoint_ranges* ranges, char32_t* single = nullptr) {
    const std::size_t at = pos_;
    ++pos_;
    if (!more()) fail("pattern ends with a backslash", at);
    const char c = peek();
    ++pos_;
    char32_t value = 0;
    switch (c) {
    case 'd': case 'w': case 's': case 'D': case 'W': case 'S': {
      codepoint_ranges set;
      add_class(static_cast<char>(c | 0x20), set);
      const bool negated = c >= 'A' && c <= 'Z';
      if (in_class) {
        if (negated) set = normalize_ranges(set, true);
        ranges->insert(ranges->end(), set.begin(), set.end());
        return -1;
      }
      return chars(normalize_ranges(set, negated));
    }
    case 'b': if (in_class) { value = '\b'; break; } fail("word boundary \\b is not supported", at);
    case 'B': fail("word boundary \\B is not supported", at);
    case 'n': value = '\n'; break;
    case 't': value = '\t'; break;
    case 'r': value = '\r'; break;
    case 'f': value = '\f'; break;
    case 'v': value = '\v'; break;
    case '0': value = 0; break;
    case 'x': value = hex_digits(2, at); break;
    case 'u':
      if (more() && peek() == '{') {
        ++pos_;
        const std::size_t close = p_.find('}', pos_);
        if (close == std::string_view::npos) fail("unterminated \\u{...}", at);
        value = static_cast<char32_t>(std::stoul(std::string(p_.substr(pos_, close - pos_)), nullptr, 16));
        pos_ = close + 1;
      } else {
        value = hex_digits(4, at);
      }
      break;
    case 'k': fail("backreference \\k is not supported", at);
    case 'p': case 'P': fail("Unicode property escapes \\p are not supported", at);
    default:
      if (c >= '1' && c <= '9') fail("backreference \\" + std::string(1, c) + " is not supported", at);
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) fail("escape \\" + std::string(1, c) + " is not supported", at);
      --pos_;
      value = codepoint();
    }
    if (in_class) {
      *single = value;
      return 0;
    }
    return chars({{value, value}});
  }

  char32_t hex_digits(int n, std::size_t at) {
    if (pos_ + n > p_.size()) fail("incomplete hex escape", at);
    char32_t v = 0;
    for (int i = 0; i < n; ++i) {
      const char h = p_[pos_ + i];
      const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) fail("bad hex escape", at);
      v = v * 16 + d;
    }
    pos_ += n;
    return v;
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
    bool first = true;
    while (true) {
      if (!more()) fail("unterminated character class", at);
      if (peek() == ']' && !first) break;
      first = false;
      // One member: a code point (maybe the start of a range) or a class escape.
      const auto member = [&](char32_t& out) {
        if (peek() == '\\') {
          char32_t single = 0;
          const int32_t r = escape(true, &ranges, &single);
          if (r < 0) return false;
          out = single;
          return true;
        }
        out = codepoint();
        return true;
      };
      char32_t lo = 0;
      if (!member(lo)) continue;
      if (pos_ + 1 < p_.size() && peek() == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        char32_t hi = 0;
        const std::size_t range_at = pos_;
        if (!member(hi)) fail("a class escape cannot end a range", range_at);
        if (hi < lo) fail("range out of order in character class", range_at);
        ranges.emplace_back(lo, hi);
      } else {
        ranges.emplace_back(lo, lo);
      }
    }
    ++pos_;
    return chars(normalize_ranges(std::move(ranges), negate));
  }

  grammar& g_;
  std::string_view p_;
  regex_options options_;
  std::size_t pos_ = 0;
};

} // namespace

int32_t add_regex(grammar& g, std::string_view pattern, const regex_options& options) {
  return regex_parser(g, pattern, options).parse();
}

grammar regex_grammar(std::string_view pattern) {
  grammar g;
  g.what = "guided_regex";
  g.root = g.rule("root");
  g.set_body(g.root, add_regex(g, pattern, {}));
  return g;
}

} // namespace troupe::structured
