#include "runtime/openai/python_repr.hpp"

#include <charconv>
#include <cmath>
#include <vector>

#include <utf8proc.h>

#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe {

namespace {

// The shortest digits that round-trip v (no sign, no leading zeros) and the position of the decimal
// point relative to them: v = 0.d1d2d3... * 10^decimal_point.
struct shortest_digits {
  std::string digits;
  int decimal_point = 0;
};

shortest_digits shortest(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(v), std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // "1.5e+00"
  size_t e_pos = sci.find('e');
  shortest_digits out;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') out.digits += c;
  int exp = 0;
  std::string_view exp_text = sci.substr(e_pos + 1);
  if (exp_text.front() == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);
  out.decimal_point = exp + 1;
  return out;
}

// Digits laid out without an exponent: "123.45", "0.00123", "1200.0".
std::string fixed_layout(const shortest_digits& d) {
  std::string out;
  const int n = static_cast<int>(d.digits.size());
  if (d.decimal_point <= 0) {
    out = "0.";
    out.append(static_cast<size_t>(-d.decimal_point), '0');
    out += d.digits;
  } else if (d.decimal_point >= n) {
    out = d.digits;
    out.append(static_cast<size_t>(d.decimal_point - n), '0');
    out += ".0";
  } else {
    out = d.digits.substr(0, static_cast<size_t>(d.decimal_point));
    out += '.';
    out += d.digits.substr(static_cast<size_t>(d.decimal_point));
  }
  return out;
}

// "1.5" then the exponent as the caller wants it written.
std::string mantissa_layout(const shortest_digits& d) {
  std::string out(1, d.digits[0]);
  if (d.digits.size() > 1) {
    out += '.';
    out += d.digits.substr(1);
  }
  return out;
}

} // namespace

std::string python_int_of_float(double v) {
  const bool negative = v < 0;
  int exponent = 0;
  // v = mantissa * 2^exponent with an integer mantissa below 2^53.
  const double fraction = std::frexp(std::fabs(v), &exponent);
  auto mantissa = static_cast<uint64_t>(std::ldexp(fraction, 53));
  exponent -= 53;
  if (exponent < 0) {
    mantissa >>= -exponent;  // exact: the value is integral, so the bits shifted out are zero
    exponent = 0;
  }
  // Decimal limbs of 10^9, least significant first, doubled `exponent` times.
  std::vector<uint32_t> limbs;
  for (; mantissa > 0; mantissa /= 1000000000) limbs.push_back(static_cast<uint32_t>(mantissa % 1000000000));
  for (int i = 0; i < exponent; ++i) {
    uint32_t carry = 0;
    for (auto& limb : limbs) {
      const uint32_t doubled = limb * 2 + carry;
      carry = doubled >= 1000000000 ? 1 : 0;
      limb = doubled - carry * 1000000000;
    }
    if (carry) limbs.push_back(carry);
  }
  if (limbs.empty()) return "0";
  std::string out = negative ? "-" : "";
  out += std::to_string(limbs.back());
  for (size_t i = limbs.size() - 1; i-- > 0;) {
    const std::string part = std::to_string(limbs[i]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string sign = std::signbit(v) ? "-" : "";
  if (v == 0) return sign + "0.0";
  shortest_digits d = shortest(v);
  // Python (float_repr_style 'short') writes an exponent when decpt <= -4 or decpt > 16.
  if (d.decimal_point > -4 && d.decimal_point <= 16) return sign + fixed_layout(d);
  int exp = d.decimal_point - 1;
  std::string out = sign + mantissa_layout(d) + (exp < 0 ? "e-" : "e+");
  int mag = exp < 0 ? -exp : exp;
  if (mag < 10) out += '0';
  return out + std::to_string(mag);
}

std::string pydantic_json_float(double v) {
  // serde_json writes non-finite floats as null; vLLM never sends them (logprobs are clamped).
  if (!std::isfinite(v)) return "null";
  std::string sign = std::signbit(v) ? "-" : "";
  if (v == 0) return sign + "0.0";
  shortest_digits d = shortest(v);
  // ryu's format64: fixed when -5 < decpt <= 16, else d.ddde<exp> with no '+' and no padding.
  if (d.decimal_point > -5 && d.decimal_point <= 16) return sign + fixed_layout(d);
  return sign + mantissa_layout(d) + "e" + std::to_string(d.decimal_point - 1);
}

std::string python_str_repr(std::string_view utf8) {
  bool has_single = utf8.find('\'') != std::string_view::npos;
  bool has_double = utf8.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  static const char hex[] = "0123456789abcdef";
  auto escape_hex = [&](char32_t c, int width, char letter) {
    out += '\\';
    out += letter;
    for (int shift = (width - 1) * 4; shift >= 0; shift -= 4) out += hex[(c >> shift) & 0xF];
  };
  for (size_t pos = 0; pos < utf8.size();) {
    char32_t c = 0;
    size_t len = utf8::decode_at(utf8, pos, c);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      escape_hex(c, 2, 'x');
    } else if (c < 0x7F) {
      out += static_cast<char>(c);
    } else {
      // Python's str.isprintable(): not Other (Cc Cf Cs Co Cn) and not a separator other than ' '.
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      bool printable = !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                         cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
                         cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
      if (printable)
        utf8::append(out, c);
      else if (c < 0x100)
        escape_hex(c, 2, 'x');
      else if (c < 0x10000)
        escape_hex(c, 4, 'u');
      else
        escape_hex(c, 8, 'U');
    }
    pos += len;
  }
  out += quote;
  return out;
}

int64_t python_len(std::string_view utf8) {
  int64_t n = 0;
  for (size_t pos = 0; pos < utf8.size(); ++n) {
    char32_t c = 0;
    pos += utf8::decode_at(utf8, pos, c);
  }
  return n;
}

std::string_view python_prefix(std::string_view utf8, int64_t n) {
  size_t pos = 0;
  for (int64_t i = 0; i < n && pos < utf8.size(); ++i) {
    char32_t c = 0;
    pos += utf8::decode_at(utf8, pos, c);
  }
  return utf8.substr(0, pos);
}

} // namespace troupe
