#pragma once
// The pieces of JSON text every JSON front end uses, as rules of one grammar: bounded whitespace, strings,
// numbers, integers in a range, and any JSON value.

#include "runtime/structured/grammar_ir.hpp"

#include <optional>

namespace troupe::structured {

// Whitespace between JSON tokens is at most this many bytes of space, tab and newline, so a model cannot
// wander in whitespace forever; enough for pretty-printed output a few levels deep.
inline constexpr int32_t max_json_whitespace = 16;
// Digits of an integer part, a fraction and an exponent: bounded for the same reason.
inline constexpr int32_t max_json_digits = 16;

class json_rules {
public:
  explicit json_rules(grammar& g) : g_(g) {}
  int32_t ws();            // [ \t\n]{0,max_json_whitespace}
  int32_t string();        // "..." with JSON escapes, any length
  int32_t string_char();   // one character of a string's contents (plain or escaped)
  int32_t number();        // -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
  int32_t integer();       // -?(0|[1-9]\d*)
  int32_t value();         // any JSON value
  int32_t object();        // any JSON object
  // Integers in [lo, hi] (nullopt: unbounded on that side) in JSON's spelling; throws std::invalid_argument
  // when the range is empty.
  int32_t integer_range(std::optional<long long> lo, std::optional<long long> hi);
  // "..." around contents.
  int32_t quoted(int32_t contents);
  // items separated by ws "," ws.
  int32_t comma();

private:
  int32_t cached(int32_t& slot, const char* name, int32_t (json_rules::*make)());
  int32_t make_ws();
  int32_t make_string();
  int32_t make_string_char();
  int32_t make_number();
  int32_t make_integer();
  int32_t make_value();
  int32_t make_object();
  int32_t nonnegative_range(long long lo, long long hi);
  grammar& g_;
  int32_t ws_ = -1, string_ = -1, string_char_ = -1, number_ = -1, integer_ = -1, value_ = -1, object_ = -1;
};

} // namespace troupe::structured
