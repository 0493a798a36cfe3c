#include "runtime/tools/json_call_reader.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "runtime/tools/python_dumps.hpp"

namespace troupe {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// JSON's number grammar (Python's NUMBER_RE): -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?. is_int: no
// fraction or exponent.
bool valid_number(std::string_view s, bool& is_int) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size() || !is_digit(s[i])) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (i < s.size() && is_digit(s[i])) ++i;
  }
  is_int = true;
  if (i < s.size() && s[i] == '.') {
    is_int = false;
    ++i;
    if (i >= s.size() || !is_digit(s[i])) return false;
    while (i < s.size() && is_digit(s[i])) ++i;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    is_int = false;
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (i >= s.size() || !is_digit(s[i])) return false;
    while (i < s.size() && is_digit(s[i])) ++i;
  }
  return i == s.size();
}

} // namespace

json_call_reader::json_call_reader(bool in_array, std::vector<std::string> argument_keys)
    : in_array_(in_array), argument_keys_(std::move(argument_keys)) {}

size_t json_call_reader::feed(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (state_ == st::done || state_ == st::failed) return i;
    step(text[i]);
  }
  return text.size();
}

void json_call_reader::finish() {
  if (state_ == st::number) end_number();
}

void json_call_reader::emit(std::string_view s) {
  if (target_ == target::arguments && !calls_.empty()) calls_.back().arguments += s;
}

void json_call_reader::emit_char(uint32_t cp) {
  // The character itself, for the call's name or a key of the call object.
  std::string utf8 = python_escape_char(cp, false);
  if (string_is_key_ && at_call_level()) key_ += utf8;
  if (target_ == target::name && !string_is_key_) calls_.back().name += utf8;
  emit(python_escape_char(cp, true));
}

void json_call_reader::step(char c) {
  switch (state_) {
    case st::value:
      if (is_ws(c)) return;
      if (c == ']' && !stack_.empty() && !stack_.back().object && stack_.back().empty) {
        emit("]");
        stack_.pop_back();
        return end_value();
      }
      return begin_value(c);
    case st::key:
      if (is_ws(c)) return;
      if (c == '}' && stack_.back().empty) {
        emit("}");
        const bool call_object = at_call_level();
        stack_.pop_back();
        if (call_object) calls_.back().done = true;
        return end_value();
      }
      if (c != '"') return fail();
      stack_.back().empty = false;
      string_is_key_ = true;
      key_.clear();
      emit("\"");
      state_ = st::string;
      return;
    case st::colon:
      if (is_ws(c)) return;
      if (c != ':') return fail();
      emit(": ");
      state_ = st::value;
      return;
    case st::after_value: {
      if (is_ws(c)) return;
      frame& top = stack_.back();
      if (c == ',') {
        emit(", ");
        state_ = top.object ? st::key : st::value;
        return;
      }
      if (c != (top.object ? '}' : ']')) return fail();
      emit(top.object ? "}" : "]");
      const bool call_object = at_call_level();
      stack_.pop_back();
      if (call_object) calls_.back().done = true;
      return end_value();
    }
    case st::string:
      if (high_surrogate_ && c != '\\') {
        emit_char(0xFFFD);
        high_surrogate_ = 0;
      }
      if (c == '"') {
        emit("\"");
        if (string_is_key_) {
          string_is_key_ = false;
          if (at_call_level()) stack_.back().key = key_;
          state_ = st::colon;
          return;
        }
        return end_value();
      }
      if (c == '\\') {
        state_ = st::escape;
        return;
      }
      if (static_cast<unsigned char>(c) < 0x20) return fail();  // json.loads is strict about control characters
      {
        const std::string_view byte(&c, 1);
        if (string_is_key_ && at_call_level()) key_ += byte;
        if (target_ == target::name && !string_is_key_) calls_.back().name += byte;
        emit(byte);
      }
      return;
    case st::escape: {
      uint32_t cp = 0;
      switch (c) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          unicode_ = 0;
          unicode_digits_ = 0;
          state_ = st::unicode;
          return;
        default: return fail();
      }
      if (high_surrogate_) {
        emit_char(0xFFFD);
        high_surrogate_ = 0;
      }
      emit_char(cp);
      state_ = st::string;
      return;
    }
    case st::unicode: {
      int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (digit < 0) return fail();
      unicode_ = unicode_ * 16 + static_cast<uint32_t>(digit);
      if (++unicode_digits_ < 4) return;
      state_ = st::string;
      if (unicode_ >= 0xD800 && unicode_ <= 0xDBFF) {
        if (high_surrogate_) emit_char(0xFFFD);
        high_surrogate_ = unicode_;
        return;
      }
      if (unicode_ >= 0xDC00 && unicode_ <= 0xDFFF) {
        if (!high_surrogate_) return emit_char(0xFFFD);  // a lone low half: not UTF-8 text
        const uint32_t cp = 0x10000 + ((high_surrogate_ - 0xD800) << 10) + (unicode_ - 0xDC00);
        high_surrogate_ = 0;
        return emit_char(cp);
      }
      if (high_surrogate_) {
        emit_char(0xFFFD);
        high_surrogate_ = 0;
      }
      return emit_char(unicode_);
    }
    case st::number:
      if (is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        number_ += c;
        return;
      }
      if (c == 'I' && number_ == "-") {  // Python's -Infinity
        literal_ = "-Infinity";
        literal_pos_ = 2;
        state_ = st::literal;
        return;
      }
      end_number();
      if (state_ != st::failed) step(c);
      return;
    case st::literal:
      if (c != literal_[literal_pos_]) return fail();
      if (++literal_pos_ < literal_.size()) return;
      emit(literal_);
      return end_value();
    case st::done:
    case st::failed:
      return;
  }
}

void json_call_reader::begin_value(char c) {
  if (!stack_.empty()) stack_.back().empty = false;
  const bool call_object = in_array_ ? stack_.size() == 1 : stack_.empty();
  if (stack_.empty() && in_array_ && c != '[') return fail();
  if (call_object && c != '{') return fail();
  if (at_call_level()) {
    const std::string& key = stack_.back().key;
    if (key == "name") {
      if (c != '"' || calls_.back().has_name) return fail();
      target_ = target::name;
    } else if (std::find(argument_keys_.begin(), argument_keys_.end(), key) != argument_keys_.end()) {
      if (calls_.back().has_arguments) return fail();  // "arguments" and "parameters" both: vLLM refuses too
      calls_.back().has_arguments = true;
      target_ = target::arguments;
      arguments_depth_ = stack_.size();
    }
  }
  switch (c) {
    case '{':
      if (call_object) calls_.emplace_back();
      emit("{");
      stack_.push_back({true, true, {}});
      state_ = st::key;
      return;
    case '[':
      emit("[");
      stack_.push_back({false, true, {}});
      state_ = st::value;
      return;
    case '"':
      emit("\"");
      string_is_key_ = false;
      state_ = st::string;
      return;
    case 't': literal_ = "true"; break;
    case 'f': literal_ = "false"; break;
    case 'n': literal_ = "null"; break;
    case 'N': literal_ = "NaN"; break;
    case 'I': literal_ = "Infinity"; break;
    default:
      if (c == '-' || is_digit(c)) {
        number_.assign(1, c);
        state_ = st::number;
        return;
      }
      return fail();
  }
  literal_pos_ = 1;
  state_ = st::literal;
}

void json_call_reader::end_number() {
  bool is_int = false;
  if (!valid_number(number_, is_int)) return fail();
  if (is_int) {
    emit(number_ == "-0" ? "0" : number_);  // Python's int("-0") prints 0
  } else {
    emit(python_float_text(std::strtod(number_.c_str(), nullptr)));
  }
  end_value();
}

void json_call_reader::end_value() {
  if (target_ == target::arguments && stack_.size() == arguments_depth_) {
    calls_.back().arguments_done = true;
    target_ = target::none;
  } else if (target_ == target::name && stack_.size() == (in_array_ ? 2u : 1u)) {
    calls_.back().has_name = true;
    target_ = target::none;
  }
  state_ = stack_.empty() ? st::done : st::after_value;
}

} // namespace troupe
