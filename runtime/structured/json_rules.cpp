// JSON text as grammar rules, and integer ranges as digit patterns.

#include "runtime/structured/json_rules.hpp"

#include <stdexcept>
#include <string>

namespace troupe::structured {

int32_t json_rules::cached(int32_t& slot, const char* name, int32_t (json_rules::*make)()) {
  if (slot < 0) {
    slot = g_.new_rule(name);
    g_.set_body(slot, (this->*make)());
  }
  return g_.ref(slot);
}

int32_t json_rules::ws() { return cached(ws_, "ws", &json_rules::make_ws); }
int32_t json_rules::string() { return cached(string_, "string", &json_rules::make_string); }
int32_t json_rules::string_char() { return cached(string_char_, "char", &json_rules::make_string_char); }
int32_t json_rules::number() { return cached(number_, "number", &json_rules::make_number); }
int32_t json_rules::integer() { return cached(integer_, "integer", &json_rules::make_integer); }
int32_t json_rules::value() { return cached(value_, "value", &json_rules::make_value); }
int32_t json_rules::object() { return cached(object_, "object", &json_rules::make_object); }

int32_t json_rules::make_ws() {
  byte_set blank;
  blank.set(' ').set('\t').set('\n');
  return g_.repeat(g_.bytes(blank), 0, max_json_whitespace);
}

int32_t json_rules::make_string_char() {
  const int32_t plain = g_.codepoints(normalize_ranges({{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}, true));
  const int32_t hex = g_.codepoints({{'0', '9'}, {'A', 'F'}, {'a', 'f'}});
  const int32_t escaped = g_.sequence({g_.literal("\\"), g_.choice({g_.codepoints({{'"', '"'}, {'/', '/'}, {'\\', '\\'}, {'b', 'b'}, {'f', 'f'}, {'n', 'n'}, {'r', 'r'}, {'t', 't'}}),
                                                                   g_.sequence({g_.literal("u"), g_.repeat(hex, 4, 4)})})});
  return g_.choice({plain, escaped});
}

int32_t json_rules::make_string() {
  return quoted(g_.repeat(string_char(), 0, unbounded));
}

int32_t json_rules::quoted(int32_t contents) { return g_.sequence({g_.literal("\""), contents, g_.literal("\"")}); }

int32_t json_rules::comma() { return g_.sequence({ws(), g_.literal(","), ws()}); }

int32_t json_rules::make_integer() {
  const int32_t digit = g_.byte_range('0', '9');
  const int32_t magnitude = g_.choice({g_.literal("0"), g_.sequence({g_.byte_range('1', '9'), g_.repeat(digit, 0, max_json_digits - 1)})});
  return g_.sequence({g_.optional(g_.literal("-")), magnitude});
}

int32_t json_rules::make_number() {
  const int32_t digit = g_.byte_range('0', '9');
  const int32_t fraction = g_.sequence({g_.literal("."), g_.repeat(digit, 1, max_json_digits)});
  byte_set e, sign;
  e.set('e').set('E');
  sign.set('+').set('-');
  const int32_t exponent = g_.sequence({g_.bytes(e), g_.optional(g_.bytes(sign)), g_.repeat(digit, 1, 3)});
  return g_.sequence({integer(), g_.optional(fraction), g_.optional(exponent)});
}

int32_t json_rules::make_object() {
  const int32_t member = g_.sequence({string(), ws(), g_.literal(":"), ws(), value()});
  const int32_t members = g_.sequence({member, g_.repeat(g_.sequence({comma(), member}), 0, unbounded), ws()});
  return g_.sequence({g_.literal("{"), ws(), g_.optional(members), g_.literal("}")});
}

int32_t json_rules::make_value() {
  const int32_t elements = g_.sequence({value(), g_.repeat(g_.sequence({comma(), value()}), 0, unbounded), ws()});
  const int32_t array = g_.sequence({g_.literal("["), ws(), g_.optional(elements), g_.literal("]")});
  return g_.choice({object(), array, string(), number(), g_.literal("true"), g_.literal("false"), g_.literal("null")});
}

namespace {

long long power10(int n) {
  long long p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

} // namespace

// Same-length decimal ranges, digit by digit: [lo, hi] with lo and hi of equal length.
static int32_t same_length(grammar& g, const std::string& lo, const std::string& hi) {
  const std::size_t n = lo.size();
  if (n == 1) return g.byte_range(static_cast<uint8_t>(lo[0]), static_cast<uint8_t>(hi[0]));
  if (lo[0] == hi[0]) return g.sequence({g.literal(lo.substr(0, 1)), same_length(g, lo.substr(1), hi.substr(1))});
  const std::string zeros(n - 1, '0'), nines(n - 1, '9');
  const int32_t any_rest = g.repeat(g.byte_range('0', '9'), static_cast<int32_t>(n - 1), static_cast<int32_t>(n - 1));
  std::vector<int32_t> parts;
  char mid_lo = lo[0], mid_hi = hi[0];
  if (lo.substr(1) != zeros) {
    parts.push_back(g.sequence({g.literal(lo.substr(0, 1)), same_length(g, lo.substr(1), nines)}));
    ++mid_lo;
  }
  if (hi.substr(1) != nines) {
    parts.push_back(g.sequence({g.literal(hi.substr(0, 1)), same_length(g, zeros, hi.substr(1))}));
    --mid_hi;
  }
  if (mid_lo <= mid_hi) parts.push_back(g.sequence({g.byte_range(static_cast<uint8_t>(mid_lo), static_cast<uint8_t>(mid_hi)), any_rest}));
  return g.choice(std::move(parts));
}

int32_t json_rules::nonnegative_range(long long lo, long long hi) {
  std::vector<int32_t> parts;
  for (int length = 1; length <= max_json_digits; ++length) {
    const long long first = length == 1 ? 0 : power10(length - 1), last = power10(length) - 1;
    const long long a = std::max(lo, first), b = std::min(hi, last);
    if (a > b) continue;
    parts.push_back(same_length(g_, std::to_string(a), std::to_string(b)));
  }
  return g_.choice(std::move(parts));
}

int32_t json_rules::integer_range(std::optional<long long> lo, std::optional<long long> hi) {
  if (!lo && !hi) return integer();
  const long long limit = power10(max_json_digits) - 1;
  const long long a = std::max(lo.value_or(-limit), -limit), b = std::min(hi.value_or(limit), limit);
  if (a > b) throw std::invalid_argument("no integer lies in [" + std::to_string(a) + ", " + std::to_string(b) + "]");
  std::vector<int32_t> parts;
  if (b >= 0) parts.push_back(nonnegative_range(std::max(a, 0LL), b));
  if (a < 0) parts.push_back(g_.sequence({g_.literal("-"), nonnegative_range(std::max(1LL, b < 0 ? -b : 1LL), -a)}));
  return g_.choice(std::move(parts));
}

} // namespace troupe::structured
