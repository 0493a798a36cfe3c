#include "runtime/openai/python_json.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <vector>

#include "runtime/openai/python_repr.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe {

namespace {

// Python's utf-8 decoder with errors="surrogatepass": strict, except that encoded surrogates pass.
bool decode_utf8(std::string_view bytes, std::u32string& out) {
  out.reserve(bytes.size());
  size_t i = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  while (i < bytes.size()) {
    unsigned char c = b[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(len) > bytes.size()) return false;
    for (int k = 1; k < len; ++k) {
      if ((b[i + static_cast<size_t>(k)] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + static_cast<size_t>(k)] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF) return false;
    out.push_back(cp);
    i += static_cast<size_t>(len);
  }
  return true;
}

bool is_ws(char32_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

struct decode_failure {
  const char* message;
  int64_t position;
};

// The StopIteration the scanner raises when no value starts at a position.
struct no_value {
  int64_t position;
};

struct too_deep {};

class scanner {
public:
  explicit scanner(const std::u32string& s) : s_(s), n_(static_cast<int64_t>(s.size())) {}

  int64_t skip_ws(int64_t i) const {
    // Python's re.match at a position past the end matches empty at the end.
    if (i > n_) return n_;
    while (i < n_ && is_ws(s_[static_cast<size_t>(i)])) ++i;
    return i;
  }

  // char at i, or 0 (Python's s[i:i+1] == '') past the end.
  char32_t at(int64_t i) const { return i >= 0 && i < n_ ? s_[static_cast<size_t>(i)] : 0; }
  bool starts_with(int64_t i, std::u32string_view word) const {
    return i >= 0 && i + static_cast<int64_t>(word.size()) <= n_ &&
           std::u32string_view(s_).substr(static_cast<size_t>(i), word.size()) == word;
  }

  // scan_once: a value starting at i; returns its end. Throws no_value or decode_failure.
  int64_t scan_once(int64_t i, pjson& out) {
    if (i >= n_) throw no_value{i};
    char32_t c = s_[static_cast<size_t>(i)];
    if (c == '"') {
      std::string text;
      int64_t end = scan_string(i + 1, text);
      out = std::move(text);
      return end;
    }
    if (c == '{') return scan_object(i + 1, out);
    if (c == '[') return scan_array(i + 1, out);
    if (c == 'n' && starts_with(i, U"null")) {
      out = nullptr;
      return i + 4;
    }
    if (c == 't' && starts_with(i, U"true")) {
      out = true;
      return i + 4;
    }
    if (c == 'f' && starts_with(i, U"false")) {
      out = false;
      return i + 5;
    }
    if (int64_t end = scan_number(i, out); end >= 0) return end;
    if (c == 'N' && starts_with(i, U"NaN")) {
      out = std::numeric_limits<double>::quiet_NaN();
      return i + 3;
    }
    if (c == 'I' && starts_with(i, U"Infinity")) {
      out = std::numeric_limits<double>::infinity();
      return i + 8;
    }
    if (c == '-' && starts_with(i, U"-Infinity")) {
      out = -std::numeric_limits<double>::infinity();
      return i + 9;
    }
    throw no_value{i};
  }

private:
  static bool digit(char32_t c) { return c >= '0' && c <= '9'; }

  // -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)? at i; returns the end or -1 when no number starts there.
  int64_t scan_number(int64_t start, pjson& out) {
    int64_t i = start;
    if (at(i) == '-') ++i;
    if (at(i) >= '1' && at(i) <= '9') {
      while (digit(at(i))) ++i;
    } else if (at(i) == '0') {
      ++i;
    } else {
      return -1;
    }
    int64_t int_end = i;
    bool is_float = false;
    if (at(i) == '.' && digit(at(i + 1))) {
      i += 2;
      while (digit(at(i))) ++i;
      is_float = true;
    }
    if (at(i) == 'e' || at(i) == 'E') {
      int64_t e = i + 1;
      if (at(e) == '-' || at(e) == '+') ++e;
      if (digit(at(e))) {
        while (digit(at(e))) ++e;
        i = e;
        is_float = true;
      }
    }
    std::string text;
    for (int64_t k = start; k < i; ++k) text += static_cast<char>(s_[static_cast<size_t>(k)]);
    if (!is_float) {
      int64_t v = 0;
      auto r = std::from_chars(text.data(), text.data() + int_end - start, v);
      if (r.ec == std::errc()) {
        out = v;
        return i;
      }
      uint64_t u = 0;
      r = std::from_chars(text.data(), text.data() + int_end - start, u);
      if (r.ec == std::errc()) {
        out = u;
        return i;
      }
      // Python ints are unbounded; past 64 bits we keep the magnitude as a float.
    }
    double d = 0;
    auto r = std::from_chars(text.data(), text.data() + text.size(), d);
    if (r.ec == std::errc::result_out_of_range) {
      bool negative_exponent = text.find("e-") != std::string::npos || text.find("E-") != std::string::npos;
      d = negative_exponent ? 0.0 : std::numeric_limits<double>::infinity();
      if (text.front() == '-') d = -d;
    }
    out = d;
    return i;
  }

  static int hex_value(char32_t c) {
    if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
    return -1;
  }

  // scanstring (strict): end is just past the opening quote. Returns the index past the closing one.
  int64_t scan_string(int64_t end, std::string& out) {
    const int64_t begin = end - 1;
    while (true) {
      int64_t next = end;
      char32_t c = 0;
      for (; next < n_; ++next) {
        c = s_[static_cast<size_t>(next)];
        if (c == '"' || c == '\\') break;
        if (c <= 0x1F) throw decode_failure{"Invalid control character at", next};
        utf8::append(out, c);
      }
      if (next >= n_ || !(c == '"' || c == '\\')) throw decode_failure{"Unterminated string starting at", begin};
      ++next;
      if (c == '"') return next;
      if (next == n_) throw decode_failure{"Unterminated string starting at", begin};
      c = s_[static_cast<size_t>(next)];
      if (c != 'u') {
        end = next + 1;
        switch (c) {
          case '"': break;
          case '\\': break;
          case '/': break;
          case 'b': c = '\b'; break;
          case 'f': c = '\f'; break;
          case 'n': c = '\n'; break;
          case 'r': c = '\r'; break;
          case 't': c = '\t'; break;
          default: throw decode_failure{"Invalid \\escape", end - 2};
        }
        utf8::append(out, c);
        continue;
      }
      ++next;
      end = next + 4;
      if (end >= n_) throw decode_failure{"Invalid \\uXXXX escape", next - 1};
      char32_t cp = 0;
      for (; next < end; ++next) {
        int h = hex_value(s_[static_cast<size_t>(next)]);
        if (h < 0) throw decode_failure{"Invalid \\uXXXX escape", end - 5};
        cp = (cp << 4) | static_cast<char32_t>(h);
      }
      if (cp >= 0xD800 && cp <= 0xDBFF && end + 6 < n_ && at(next) == '\\' && at(next + 1) == 'u') {
        next += 2;
        int64_t end2 = end + 6;
        char32_t c2 = 0;
        for (; next < end2; ++next) {
          int h = hex_value(s_[static_cast<size_t>(next)]);
          if (h < 0) throw decode_failure{"Invalid \\uXXXX escape", end2 - 5};
          c2 = (c2 << 4) | static_cast<char32_t>(h);
        }
        if (c2 >= 0xDC00 && c2 <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (c2 - 0xDC00);
          end = end2;
        }
      }
      // A lone surrogate has no UTF-8 form: it becomes U+FFFD (utf8::append's rule).
      utf8::append(out, cp);
    }
  }

  // _parse_object_unicode: idx is just past '{'. Returns the index past '}'.
  int64_t scan_object(int64_t idx, pjson& out) {
    out = pjson::object();
    depth_guard guard(depth_);
    // NOTE: ordered_json finds a key by a linear search, so inserting key by key is quadratic (a
    // 200,000-key logit_bias took 21 s). Members are gathered here with a hash index instead and
    // appended once; a repeated key keeps its first place and takes the last value, as in Python.
    std::vector<std::pair<std::string, pjson>> members;
    std::unordered_map<std::string, size_t> index_of;
    idx = skip_ws(idx);
    if (at_end(idx) || at(idx) != '}') {
      while (true) {
        if (at_end(idx) || at(idx) != '"')
          throw decode_failure{"Expecting property name enclosed in double quotes", idx};
        std::string key;
        idx = scan_string(idx + 1, key);
        idx = skip_ws(idx);
        if (at_end(idx) || at(idx) != ':') throw decode_failure{"Expecting ':' delimiter", idx};
        idx = skip_ws(idx + 1);
        pjson value;
        idx = scan_once(idx, value);
        auto [at_key, fresh] = index_of.try_emplace(key, members.size());
        if (fresh) members.emplace_back(std::move(key), std::move(value));
        else members[at_key->second].second = std::move(value);
        idx = skip_ws(idx);
        if (!at_end(idx) && at(idx) == '}') break;
        if (at_end(idx) || at(idx) != ',') throw decode_failure{"Expecting ',' delimiter", idx};
        idx = skip_ws(idx + 1);
      }
    }
    // ordered_map is a vector of its members: appending through the vector skips its key search,
    // which the index above made unnecessary.
    auto& object = out.get_ref<pjson::object_t&>();
    auto& storage = static_cast<pjson::object_t::Container&>(object);
    storage.reserve(members.size());
    for (auto& [key, value] : members) storage.emplace_back(std::move(key), std::move(value));
    return idx + 1;
  }

  // _parse_array_unicode: idx is just past '['. Returns the index past ']'.
  int64_t scan_array(int64_t idx, pjson& out) {
    out = pjson::array();
    depth_guard guard(depth_);
    idx = skip_ws(idx);
    if (at_end(idx) || at(idx) != ']') {
      while (true) {
        pjson value;
        idx = scan_once(idx, value);
        out.push_back(std::move(value));
        idx = skip_ws(idx);
        if (!at_end(idx) && at(idx) == ']') break;
        if (at_end(idx) || at(idx) != ',') throw decode_failure{"Expecting ',' delimiter", idx};
        idx = skip_ws(idx + 1);
      }
    }
    return idx + 1;
  }

  bool at_end(int64_t i) const { return i >= n_; }

  // Python's recursion limit stops deep nesting with a RecursionError (not a JSONDecodeError).
  struct depth_guard {
    explicit depth_guard(int& depth) : depth_(depth) {
      if (++depth_ > max_depth) throw too_deep{};
    }
    ~depth_guard() { --depth_; }
    int& depth_;
  };
  static constexpr int max_depth = 1000;

  int depth_ = 0;
  const std::u32string& s_;
  int64_t n_;
};

} // namespace

python_json_result parse_python_json(std::string_view text) {
  python_json_result result;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::u32string s;
  if (!decode_utf8(text, s)) {
    result.error = python_json_error{"", 0, true};
    return result;
  }
  scanner sc(s);
  try {
    int64_t idx = sc.skip_ws(0);
    int64_t end = 0;
    try {
      end = sc.scan_once(idx, result.value);
    } catch (const no_value& e) {
      throw decode_failure{"Expecting value", e.position};
    }
    end = sc.skip_ws(end);
    if (end != static_cast<int64_t>(s.size())) throw decode_failure{"Extra data", end};
  } catch (const decode_failure& f) {
    result.value = nullptr;
    result.error = python_json_error{f.message, f.position, false};
  } catch (const too_deep&) {
    result.value = nullptr;
    result.error = python_json_error{"", 0, true};
  }
  return result;
}

std::string python_json_error_text(std::string_view text, const python_json_error& error) {
  // lineno = doc.count('\n', 0, pos) + 1; colno = pos - doc.rfind('\n', 0, pos)
  int64_t line = 1;
  int64_t last_newline = -1;
  int64_t index = 0;
  for (size_t pos = 0; pos < text.size() && index < error.position; ++index) {
    char32_t c = 0;
    pos += utf8::decode_at(text, pos, c);
    if (c == '\n') {
      ++line;
      last_newline = index;
    }
  }
  return error.message + ": line " + std::to_string(line) + " column " +
         std::to_string(error.position - last_newline) + " (char " + std::to_string(error.position) + ")";
}

bool python_truthy(const pjson& v) {
  switch (v.type()) {
    case pjson::value_t::null: return false;
    case pjson::value_t::boolean: return v.get<bool>();
    case pjson::value_t::number_integer: return v.get<int64_t>() != 0;
    case pjson::value_t::number_unsigned: return v.get<uint64_t>() != 0;
    case pjson::value_t::number_float: return v.get<double>() != 0.0;  // NaN is true in Python too
    case pjson::value_t::string: return !v.get_ref<const std::string&>().empty();
    case pjson::value_t::array:
    case pjson::value_t::object: return !v.empty();
    default: return true;
  }
}

std::string python_repr(const pjson& v) {
  switch (v.type()) {
    case pjson::value_t::null: return "None";
    case pjson::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case pjson::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case pjson::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case pjson::value_t::number_float: return python_float_repr(v.get<double>());
    case pjson::value_t::string: return python_str_repr(v.get_ref<const std::string&>());
    case pjson::value_t::array: {
      std::string out = "[";
      bool first = true;
      for (const auto& item : v) {
        if (!first) out += ", ";
        first = false;
        out += python_repr(item);
      }
      return out + "]";
    }
    case pjson::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += python_str_repr(key) + ": " + python_repr(item);
      }
      return out + "}";
    }
    default: return "None";
  }
}

std::string python_str(const pjson& v) {
  if (v.is_string()) return v.get<std::string>();
  return python_repr(v);
}

} // namespace troupe
