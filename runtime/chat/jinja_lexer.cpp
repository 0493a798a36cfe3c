// jinja2's lexer, by hand: the same rules in the same order, so whitespace control and line numbers
// come out as jinja2 makes them.

#include "runtime/chat/jinja_lexer.hpp"

#include "runtime/chat/jinja_text.hpp"
#include "runtime/chat/jinja_value.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace troupe::jinja {
namespace {

// jinja2 turns \r\n and \r into \n and drops one trailing newline (keep_trailing_newline=False).
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Python's str.isspace over a UTF-8 run (what the \s of jinja2's regexes matches).
bool all_whitespace(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!text::is_space(text::next_code_point(s, i))) return false;
  return true;
}

size_t skip_whitespace(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t next = pos;
    if (!text::is_space(text::next_code_point(s, next))) break;
    pos = next;
  }
  return pos;
}

std::string rstrip_whitespace(std::string_view s) { return text::strip(s, std::nullopt, false, true); }

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

bool starts_with(std::string_view s, size_t pos, std::string_view prefix) {
  return s.substr(pos, prefix.size()) == prefix;
}

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class lexer {
public:
  explicit lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<token> run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      if (tag == std::string::npos) {
        emit_text(std::string_view(src_).substr(pos), line_);
        line_ += count_newlines(std::string_view(src_).substr(pos));
        break;
      }
      pos = lex_tag(pos, tag);
    }
    push(token_kind::eof, "", line_);
    return std::move(tokens_);
  }

private:
  size_t find_tag(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string::npos; p = src_.find('{', p + 1)) {
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) return p;
    }
    return std::string::npos;
  }

  void push(token_kind kind, std::string text, int line) {
    token t;
    t.kind = kind;
    t.text = std::move(text);
    t.line = line;
    tokens_.push_back(std::move(t));
  }

  void emit_text(std::string_view text, int line) {
    if (!text.empty()) push(token_kind::text, std::string(text), line);
  }

  // The whitespace control applied to the text before a tag: '-' strips all trailing whitespace;
  // otherwise lstrip_blocks strips spaces between the start of the line and a block or comment tag.
  std::string strip_before(std::string_view text, char sign, bool block_like) const {
    if (sign == '-') return rstrip_whitespace(text);
    if (sign != '+' && block_like) {
      size_t line_start = text.rfind('\n');
      line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
      if ((line_start > 0 || line_starting_) && all_whitespace(text.substr(line_start)))
        return std::string(text.substr(0, line_start));
    }
    return std::string(text);
  }

  // Matches {%[-+]?\s*raw\s*(-%}\s*|%}) at pos; returns the end of the match or npos.
  size_t match_raw_begin(size_t pos) const {
    size_t p = pos + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_whitespace(src_, p);
    if (!starts_with(src_, p, "raw")) return std::string::npos;
    p = skip_whitespace(src_, p + 3);
    if (starts_with(src_, p, "-%}")) return skip_whitespace(src_, p + 3);
    if (starts_with(src_, p, "%}")) return p + 2;
    return std::string::npos;
  }

  size_t lex_tag(size_t pos, size_t tag) {
    char kind = src_[tag + 1];
    char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
    std::string_view before = std::string_view(src_).substr(pos, tag - pos);
    int text_line = line_;
    line_ += count_newlines(before);
    size_t raw_end = kind == '%' ? match_raw_begin(tag) : std::string::npos;
    emit_text(strip_before(before, sign, kind != '{'), text_line);
    if (raw_end != std::string::npos) return lex_raw(tag, raw_end);
    if (kind == '#') return lex_comment(tag, tag + 2 + (sign ? 1 : 0));
    return lex_expression_tag(tag, tag + 2 + (sign ? 1 : 0), kind == '%');
  }

  void consumed(size_t from, size_t to) {
    line_ += count_newlines(std::string_view(src_).substr(from, to - from));
    line_starting_ = to > from && src_[to - 1] == '\n';
  }

  size_t lex_comment(size_t tag, size_t body) {
    size_t close = src_.find("#}", body);
    if (close == std::string::npos) throw syntax_error("Missing end of comment tag", line_);
    size_t end = close + 2;
    if (close > body && src_[close - 1] == '-') {
      end = skip_whitespace(src_, end);
    } else if (!(close > body && src_[close - 1] == '+') && end < src_.size() && src_[end] == '\n') {
      ++end; // trim_blocks
    }
    consumed(tag, end);
    return end;
  }

  size_t lex_raw(size_t tag, size_t content) {
    // The first {%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?) after the raw tag.
    for (size_t p = src_.find("{%", content); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t q = p + 2;
      char sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q] : 0;
      if (sign) ++q;
      q = skip_whitespace(src_, q);
      if (!starts_with(src_, q, "endraw")) continue;
      q = skip_whitespace(src_, q + 6);
      size_t end;
      if (starts_with(src_, q, "+%}")) {
        end = q + 3;
      } else if (starts_with(src_, q, "-%}")) {
        end = skip_whitespace(src_, q + 3);
      } else if (starts_with(src_, q, "%}")) {
        end = q + 2 + (q + 2 < src_.size() && src_[q + 2] == '\n' ? 1 : 0);
      } else {
        continue;
      }
      consumed(tag, content);
      int text_line = line_;
      std::string_view body = std::string_view(src_).substr(content, p - content);
      line_ += count_newlines(body);
      emit_text(strip_before(body, sign, true), text_line);
      consumed(p, end);
      return end;
    }
    throw syntax_error("Missing end of raw directive", line_);
  }

  size_t lex_expression_tag(size_t tag, size_t pos, bool block) {
    consumed(tag, pos);
    push(block ? token_kind::block_begin : token_kind::variable_begin, block ? "{%" : "{{", line_);
    std::vector<char> balance;
    while (true) {
      if (balance.empty()) {
        size_t end = match_tag_end(pos, block);
        if (end != std::string::npos) {
          push(block ? token_kind::block_end : token_kind::variable_end, block ? "%}" : "}}", line_);
          consumed(pos, end);
          return end;
        }
      }
      if (pos >= src_.size()) {
        throw syntax_error(block ? "unexpected end of template, expected end of statement block ('%}')"
                                 : "unexpected end of template, expected end of print statement ('}}')",
                           line_);
      }
      size_t next = skip_whitespace(src_, pos);
      if (next != pos) {
        consumed(pos, next);
        pos = next;
        continue;
      }
      pos = lex_token(pos, balance);
      line_starting_ = false;
    }
  }

  size_t match_tag_end(size_t pos, bool block) const {
    if (block) {
      if (starts_with(src_, pos, "+%}")) return pos + 3;
      if (starts_with(src_, pos, "-%}")) return skip_whitespace(src_, pos + 3);
      if (starts_with(src_, pos, "%}")) return pos + 2 + (pos + 2 < src_.size() && src_[pos + 2] == '\n' ? 1 : 0);
    } else {
      if (starts_with(src_, pos, "-}}")) return skip_whitespace(src_, pos + 3);
      if (starts_with(src_, pos, "}}")) return pos + 2;
    }
    return std::string::npos;
  }

  size_t lex_token(size_t pos, std::vector<char>& balance) {
    char c = src_[pos];
    if (is_digit(c)) return lex_number(pos);
    if (is_name_start(c)) {
      size_t e = pos;
      while (e < src_.size() && is_name_char(src_[e])) ++e;
      push(token_kind::name, src_.substr(pos, e - pos), line_);
      return e;
    }
    if (c == '\'' || c == '"') return lex_string(pos);
    static constexpr std::array<std::string_view, 26> operators = {
        "//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]",
        "(",  ")",  "{",  "}",  "<",  ">",  "=", ".", ":", "|", ",", ";"};
    for (std::string_view op : operators) {
      if (!starts_with(src_, pos, op)) continue;
      if (op == "(" || op == "[" || op == "{") {
        balance.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
      } else if (op == ")" || op == "]" || op == "}") {
        if (balance.empty()) throw syntax_error("unexpected '" + std::string(op) + "'", line_);
        char expected = balance.back();
        balance.pop_back();
        if (expected != op[0])
          throw syntax_error("unexpected '" + std::string(op) + "', expected '" + std::string(1, expected) + "'",
                             line_);
      }
      push(token_kind::op, std::string(op), line_);
      return pos + op.size();
    }
    size_t cp_end = pos;
    text::next_code_point(src_, cp_end);
    throw syntax_error("unexpected char '" + src_.substr(pos, cp_end - pos) + "' at " +
                           std::to_string(text::code_point_count(std::string_view(src_).substr(0, pos))),
                       line_);
  }

  // Digits with '_' separators; returns the end and appends the digits without separators.
  size_t digits(size_t pos, std::string& out, bool (*ok)(char)) const {
    size_t p = pos;
    while (p < src_.size()) {
      if (ok(src_[p])) {
        out += src_[p++];
      } else if (src_[p] == '_' && p > pos && p + 1 < src_.size() && ok(src_[p + 1])) {
        ++p;
      } else {
        break;
      }
    }
    return p;
  }

  size_t lex_number(size_t pos) {
    token t;
    t.line = line_;
    auto dec = [](char ch) { return is_digit(ch); };
    if (src_[pos] == '0' && pos + 1 < src_.size() && std::strchr("xXoObB", src_[pos + 1]) != nullptr) {
      char base_char = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[pos + 1])));
      int base = base_char == 'x' ? 16 : base_char == 'o' ? 8 : 2;
      size_t p = pos + 2;
      std::string ds;
      while (p < src_.size() && (std::isxdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) {
        if (src_[p] != '_') ds += src_[p];
        ++p;
      }
      if (!ds.empty()) {
        t.kind = token_kind::integer;
        t.int_value = std::strtoll(ds.c_str(), nullptr, base);
        t.text = src_.substr(pos, p - pos);
        tokens_.push_back(std::move(t));
        return p;
      }
    }
    std::string num;
    size_t p = digits(pos, num, dec);
    bool is_float = false;
    // jinja2's float rule has (?<!\.): after a dot (x.0.1) digits are an index, never a float.
    bool after_dot = pos > 0 && src_[pos - 1] == '.';
    if (!after_dot && p + 1 < src_.size() && src_[p] == '.' && is_digit(src_[p + 1])) {
      num += '.';
      p = digits(p + 1, num, dec);
      is_float = true;
    }
    if (!after_dot && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      std::string exp = "e";
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) exp += src_[q++];
      if (q < src_.size() && is_digit(src_[q])) {
        p = digits(q, exp, dec);
        num += exp;
        is_float = true;
      }
    }
    t.text = src_.substr(pos, p - pos);
    if (is_float) {
      t.kind = token_kind::floating;
      t.float_value = std::strtod(num.c_str(), nullptr);
    } else {
      t.kind = token_kind::integer;
      t.int_value = std::strtoll(num.c_str(), nullptr, 10);
    }
    tokens_.push_back(std::move(t));
    return p;
  }

  // A string literal with Python's escapes (jinja2 decodes them with the unicode-escape codec).
  size_t lex_string(size_t pos) {
    char quote = src_[pos];
    int start_line = line_;
    std::string out;
    size_t p = pos + 1;
    while (true) {
      if (p >= src_.size()) throw syntax_error("unexpected end of string", start_line);
      char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) throw syntax_error("unexpected end of string", start_line);
      char e = src_[p + 1];
      p += 2;
      switch (e) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': case 'u': case 'U': {
        size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (p + n > src_.size()) throw syntax_error("truncated \\" + std::string(1, e) + " escape", start_line);
        uint32_t cp = 0;
        auto r = std::from_chars(src_.data() + p, src_.data() + p + n, cp, 16);
        if (r.ptr != src_.data() + p + n || cp > 0x10FFFF)
          throw syntax_error("invalid \\" + std::string(1, e) + " escape in a string", start_line);
        text::append_utf8(out, cp);
        p += n;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k)
            cp = cp * 8 + static_cast<uint32_t>(src_[p++] - '0');
          text::append_utf8(out, cp);
        } else {
          // Python keeps unknown escapes as written.
          out += '\\';
          out += e;
        }
      }
    }
    token t;
    t.kind = token_kind::string;
    t.text = std::move(out);
    t.line = start_line;
    tokens_.push_back(std::move(t));
    line_ += count_newlines(std::string_view(src_).substr(pos, p + 1 - pos));
    return p + 1;
  }

  std::string src_;
  std::vector<token> tokens_;
  int line_ = 1;
  bool line_starting_ = true;
};

} // namespace

std::vector<token> tokenize(std::string_view source) { return lexer(source).run(); }

} // namespace troupe::jinja
