// Python str semantics over UTF-8: code point indexes, Unicode whitespace and case (utf8proc's tables).

#include "runtime/chat/jinja_text.hpp"

#include <utf8proc.h>

#include <algorithm>

namespace troupe::jinja::text {

char32_t next_code_point(std::string_view s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (len <= 1 || i + len > s.size()) {
    ++i;
    return b;
  }
  char32_t cp = b & (0xFF >> (len + 1));
  for (int k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) {
      ++i;
      return b;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  i += len;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(next_code_point(s, i));
  return out;
}

std::string from_code_points(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end && i < cps.size(); ++i) append_utf8(out, cps[i]);
  return out;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) next_code_point(s, i);
  return n;
}

size_t byte_offset(std::string_view s, size_t cp_index) {
  size_t i = 0;
  for (size_t k = 0; k < cp_index && i < s.size(); ++k) next_code_point(s, i);
  return i;
}

namespace {

utf8proc_category_t category(char32_t cp) {
  return cp > 0x10FFFF ? UTF8PROC_CATEGORY_CN : utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

} // namespace

bool is_space(char32_t cp) {
  switch (cp) {
  case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E: case 0x1F:
  case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
  case 0x3000:
    return true;
  default:
    return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_printable(char32_t cp) {
  if (cp == ' ') return true;
  switch (category(cp)) {
  case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
  case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
    return false;
  default:
    return true;
  }
}

bool is_alpha(char32_t cp) {
  switch (category(cp)) {
  case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
    return true;
  default:
    return false;
  }
}

bool is_digit(char32_t cp) {
  auto c = category(cp);
  // Superscript digits are digits to Python but category No.
  return c == UTF8PROC_CATEGORY_ND || cp == 0xB2 || cp == 0xB3 || cp == 0xB9 || (cp >= 0x2070 && cp <= 0x2079);
}

bool is_numeric(char32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool is_lower(char32_t cp) { return category(cp) == UTF8PROC_CATEGORY_LL; }
bool is_upper(char32_t cp) { return category(cp) == UTF8PROC_CATEGORY_LU; }
bool is_cased(char32_t cp) {
  auto c = category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}
char32_t to_lower(char32_t cp) { return cp > 0x10FFFF ? cp : static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))); }
char32_t to_upper(char32_t cp) { return cp > 0x10FFFF ? cp : static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp))); }
char32_t to_title(char32_t cp) { return cp > 0x10FFFF ? cp : static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(cp))); }

bool is_line_break(char32_t cp) {
  switch (cp) {
  case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E: case 0x85: case 0x2028: case 0x2029:
    return true;
  default:
    return false;
  }
}

namespace {

// The unconditional multi-character mappings of Unicode's SpecialCasing.txt that Python applies and
// utf8proc's one-to-one tables lack (the Greek iota-subscript forms are left out).
struct special_case {
  char32_t cp;
  const char* upper;
  const char* title;
};
constexpr special_case special_cases[] = {
    {0x00DF, "SS", "Ss"},
    {0x0149, "\u02BCN", "\u02BCN"},
    {0x01F0, "J\u030C", "J\u030C"},
    {0x0390, "\u0399\u0308\u0301", "\u0399\u0308\u0301"},
    {0x03B0, "\u03A5\u0308\u0301", "\u03A5\u0308\u0301"},
    {0x0587, "\u0535\u0552", "\u0535\u0582"},
    {0x1E96, "H\u0331", "H\u0331"},
    {0x1E97, "T\u0308", "T\u0308"},
    {0x1E98, "W\u030A", "W\u030A"},
    {0x1E99, "Y\u030A", "Y\u030A"},
    {0x1E9A, "A\u02BE", "A\u02BE"},
    {0xFB00, "FF", "Ff"},
    {0xFB01, "FI", "Fi"},
    {0xFB02, "FL", "Fl"},
    {0xFB03, "FFI", "Ffi"},
    {0xFB04, "FFL", "Ffl"},
    {0xFB05, "ST", "St"},
    {0xFB06, "ST", "St"},
    {0xFB13, "\u0544\u0546", "\u0544\u0576"},
    {0xFB14, "\u0544\u0535", "\u0544\u0565"},
    {0xFB15, "\u0544\u053B", "\u0544\u056B"},
    {0xFB16, "\u054E\u0546", "\u054E\u0576"},
    {0xFB17, "\u0544\u053D", "\u0544\u056D"},
};

const special_case* find_special(char32_t cp) {
  for (const auto& s : special_cases)
    if (s.cp == cp) return &s;
  return nullptr;
}

template <typename F>
std::string map_code_points(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) f(out, next_code_point(s, i));
  return out;
}

} // namespace

void append_upper(std::string& out, char32_t cp) {
  if (const special_case* s = find_special(cp)) {
    out += s->upper;
  } else {
    append_utf8(out, to_upper(cp));
  }
}

void append_title(std::string& out, char32_t cp) {
  if (const special_case* s = find_special(cp)) {
    out += s->title;
  } else {
    append_utf8(out, to_title(cp));
  }
}

void append_lower(std::string& out, char32_t cp) {
  if (cp == 0x0130) {
    out += "i\u0307"; // İ lowers to i + combining dot above
  } else {
    append_utf8(out, to_lower(cp));
  }
}

std::string lower(std::string_view s) { return map_code_points(s, append_lower); }
std::string upper(std::string_view s) { return map_code_points(s, append_upper); }
std::string swapcase(std::string_view s) {
  return map_code_points(s, [](std::string& out, char32_t c) {
    if (is_upper(c)) {
      append_lower(out, c);
    } else if (is_lower(c)) {
      append_upper(out, c);
    } else {
      append_utf8(out, c);
    }
  });
}

std::string title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_code_point(s, i);
    if (previous_cased) {
      append_lower(out, c);
    } else {
      append_title(out, c);
    }
    previous_cased = is_cased(c);
  }
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_code_point(s, i);
    if (first) {
      append_title(out, c);
    } else {
      append_lower(out, c);
    }
    first = false;
  }
  return out;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  auto cps = code_points(s);
  std::vector<char32_t> set;
  if (chars) set = code_points(*chars);
  auto strippable = [&](char32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strippable(cps[b])) ++b;
  if (right)
    while (e > b && strippable(cps[e - 1])) --e;
  return from_code_points(cps, b, e);
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  auto cps = code_points(s);
  size_t i = 0, n = cps.size();
  while (i < n) {
    while (i < n && is_space(cps[i])) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t e = n;
      while (e > i && is_space(cps[e - 1])) --e;
      out.push_back(from_code_points(cps, i, e));
      break;
    }
    size_t b = i;
    while (i < n && !is_space(cps[i])) ++i;
    out.push_back(from_code_points(cps, b, i));
  }
  return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
    }
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  auto cps = code_points(s);
  size_t i = cps.size();
  while (i > 0) {
    while (i > 0 && is_space(cps[i - 1])) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t b = 0;
      while (b < i && is_space(cps[b])) ++b;
      out.push_back(from_code_points(cps, b, i));
      break;
    }
    size_t e = i;
    while (i > 0 && !is_space(cps[i - 1])) --i;
    out.push_back(from_code_points(cps, i, e));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  std::vector<std::string> out;
  auto cps = code_points(s);
  size_t b = 0, i = 0, n = cps.size();
  while (i < n) {
    if (!is_line_break(cps[i])) {
      ++i;
      continue;
    }
    size_t eol = i + ((cps[i] == '\r' && i + 1 < n && cps[i + 1] == '\n') ? 2 : 1);
    out.push_back(from_code_points(cps, b, keepends ? eol : i));
    b = i = eol;
  }
  if (b < n) out.push_back(from_code_points(cps, b, n));
  return out;
}

std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement around every code point.
    int64_t done = 0;
    size_t i = 0;
    while (true) {
      if (count < 0 || done < count) {
        out += replacement;
        ++done;
      }
      if (i >= s.size()) break;
      size_t b = i;
      next_code_point(s, i);
      out += s.substr(b, i - b);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(old, pos);
    if (hit == std::string_view::npos) break;
    out += s.substr(pos, hit - pos);
    out += replacement;
    pos = hit + old.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

namespace {

// Python's slice.indices for a forward range: clamps start/end to [0, n].
size_t clamp_index(std::optional<int64_t> v, size_t n, size_t dflt) {
  if (!v) return dflt;
  int64_t x = *v;
  if (x < 0) x += static_cast<int64_t>(n);
  return static_cast<size_t>(std::clamp<int64_t>(x, 0, static_cast<int64_t>(n)));
}

} // namespace

int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end,
             bool reverse) {
  auto cps = code_points(s);
  auto needle = code_points(sub);
  size_t n = cps.size();
  size_t b = clamp_index(start, n, 0), e = clamp_index(end, n, n);
  if (e < b || e - b < needle.size()) return -1;
  auto matches = [&](size_t at) { return std::equal(needle.begin(), needle.end(), cps.begin() + at); };
  if (reverse) {
    for (size_t at = e - needle.size() + 1; at-- > b;)
      if (matches(at)) return static_cast<int64_t>(at);
  } else {
    for (size_t at = b; at + needle.size() <= e; ++at)
      if (matches(at)) return static_cast<int64_t>(at);
  }
  return -1;
}

int64_t count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(code_point_count(s)) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) ++n;
  return n;
}

bool all_of(std::string_view s, bool (*pred)(char32_t)) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!pred(next_code_point(s, i))) return false;
  return true;
}

bool is_lower_str(std::string_view s) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_code_point(s, i);
    if (is_upper(c) || category(c) == UTF8PROC_CATEGORY_LT) return false;
    cased = cased || is_lower(c);
  }
  return cased;
}

bool is_upper_str(std::string_view s) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_code_point(s, i);
    if (is_lower(c) || category(c) == UTF8PROC_CATEGORY_LT) return false;
    cased = cased || is_upper(c);
  }
  return cased;
}

std::string pad(std::string_view s, int64_t width, char32_t fill, int align) {
  int64_t n = static_cast<int64_t>(code_point_count(s));
  if (width <= n) return std::string(s);
  int64_t total = width - n, left = 0;
  if (align > 0) left = total;
  // str.center puts the odd extra space on the right unless both the padding and the width are odd.
  if (align == 0) left = total / 2 + (total & width & 1);
  std::string out;
  for (int64_t k = 0; k < left; ++k) append_utf8(out, fill);
  out += s;
  for (int64_t k = left; k < total; ++k) append_utf8(out, fill);
  return out;
}

std::string expandtabs(std::string_view s, int64_t tabsize) {
  std::string out;
  int64_t column = 0;
  for (size_t i = 0; i < s.size();) {
    char32_t c = next_code_point(s, i);
    if (c == '\t') {
      if (tabsize > 0) {
        int64_t spaces = tabsize - column % tabsize;
        out.append(static_cast<size_t>(spaces), ' ');
        column += spaces;
      }
    } else {
      append_utf8(out, c);
      column = (c == '\n' || c == '\r') ? 0 : column + 1;
    }
  }
  return out;
}

std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop, int64_t step) {
  auto cps = code_points(s);
  int64_t n = static_cast<int64_t>(cps.size());
  auto adjust = [&](std::optional<int64_t> v, int64_t dflt, int64_t lo, int64_t hi) {
    if (!v) return dflt;
    int64_t x = *v < 0 ? *v + n : *v;
    return std::clamp(x, lo, hi);
  };
  std::string out;
  if (step > 0) {
    int64_t b = adjust(start, 0, 0, n), e = adjust(stop, n, 0, n);
    for (int64_t i = b; i < e; i += step) append_utf8(out, cps[static_cast<size_t>(i)]);
  } else {
    int64_t b = adjust(start, n - 1, -1, n - 1), e = adjust(stop, -1, -1, n - 1);
    for (int64_t i = b; i > e; i += step) append_utf8(out, cps[static_cast<size_t>(i)]);
  }
  return out;
}

} // namespace troupe::jinja::text
