#include "runtime/tools/python_dumps.hpp"

#include <cmath>

#include "runtime/openai/python_repr.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe {
namespace {

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    // Multi-byte UTF-8 passes through (ensure_ascii=False); only quotes, backslashes and controls escape.
    if (c < 0x20 || c == '"' || c == '\\')
      out += python_escape_char(c, true);
    else
      out += static_cast<char>(c);
  }
  out += '"';
}

void dump(std::string& out, const pjson& v) {
  switch (v.type()) {
    case pjson::value_t::null: out += "null"; return;
    case pjson::value_t::boolean: out += v.get<bool>() ? "true" : "false"; return;
    case pjson::value_t::number_integer: out += std::to_string(v.get<int64_t>()); return;
    case pjson::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); return;
    case pjson::value_t::number_float: out += python_float_text(v.get<double>()); return;
    case pjson::value_t::string: dump_string(out, v.get_ref<const std::string&>()); return;
    case pjson::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        dump(out, e);
      }
      out += ']';
      return;
    }
    case pjson::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        dump_string(out, k);
        out += ": ";
        dump(out, e);
      }
      out += '}';
      return;
    }
    default: out += "null"; return;
  }
}

} // namespace

std::string python_dumps(const pjson& v) {
  std::string out;
  dump(out, v);
  return out;
}

std::string python_escape_char(uint32_t cp, bool escaped) {
  if (escaped) {
    switch (cp) {
      case '"': return "\\\"";
      case '\\': return "\\\\";
      case '\n': return "\\n";
      case '\r': return "\\r";
      case '\t': return "\\t";
      case '\b': return "\\b";
      case '\f': return "\\f";
      default: break;
    }
    if (cp < 0x20) {
      static const char hex[] = "0123456789abcdef";
      return std::string("\\u00") + hex[cp >> 4] + hex[cp & 0xF];
    }
  }
  std::string out;
  utf8::append(out, static_cast<char32_t>(cp));
  return out;
}

std::string python_float_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return python_float_repr(v);
}

} // namespace troupe
