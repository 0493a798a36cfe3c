#include "runtime/tools/qwen_xml_call.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "runtime/openai/python_repr.hpp"
#include "runtime/tools/python_dumps.hpp"

namespace troupe {
namespace {

constexpr std::string_view function_open = "<function=";
constexpr std::string_view function_close = "</function>";
constexpr std::string_view parameter_open = "<parameter=";
constexpr std::string_view parameter_close = "</parameter>";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string_view strip(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Python's int(text) for the forms a model writes: surrounding spaces, a sign, digits, underscores between
// digits. nullopt where int() would raise.
std::optional<pjson> python_int(std::string_view text) {
  std::string_view s = strip(text);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(s[i]))) {
      digits += s[i];
    } else if (s[i] == '_' && i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
               std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      continue;
    } else {
      return std::nullopt;
    }
  }
  if (digits.empty()) return std::nullopt;
  const size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  if (digits.size() > 18) return std::nullopt;  // beyond int64: kept as text (Python would keep every digit)
  const int64_t v = std::stoll(digits);
  return pjson(negative ? -v : v);
}

// Python's float(text), then an int when it is whole (vLLM: float_value - int(float_value) != 0).
std::optional<pjson> python_number(std::string_view text) {
  const std::string s(strip(text));
  if (s.empty()) return std::nullopt;
  std::string plain;
  for (char c : s)
    if (c != '_') plain += c;
  char* end = nullptr;
  const double v = std::strtod(plain.c_str(), &end);
  if (end != plain.c_str() + plain.size() || std::isnan(v) || std::isinf(v)) return std::nullopt;
  if (v == std::trunc(v) && std::fabs(v) < 9.2e18) return pjson(static_cast<int64_t>(v));
  return pjson(v);
}

// A little of ast.literal_eval: numbers, True, False, None; nullopt for the rest.
std::optional<pjson> literal_eval(std::string_view text) {
  const std::string_view s = strip(text);
  if (s == "True") return pjson(true);
  if (s == "False") return pjson(false);
  if (s == "None") return pjson(nullptr);
  const python_json_result r = parse_python_json(s);
  if (!r.error && r.value.is_number()) return r.value;
  return std::nullopt;
}

} // namespace

tool_schemas::tool_schemas(std::string_view tools_json) {
  if (tools_json.empty()) return;
  python_json_result r = parse_python_json(tools_json);
  if (!r.error) tools_ = std::move(r.value);
}

const pjson* tool_schemas::properties(std::string_view function) const {
  if (!tools_.is_array()) return nullptr;
  for (const auto& tool : tools_) {
    const auto f = tool.find("function");
    if (f == tool.end() || !f->is_object()) continue;
    const auto name = f->find("name");
    if (name == f->end() || !name->is_string() || name->get_ref<const std::string&>() != function) continue;
    const auto params = f->find("parameters");
    if (params == f->end() || !params->is_object()) return nullptr;
    const auto props = params->find("properties");
    return props != params->end() && props->is_object() ? &*props : nullptr;
  }
  return nullptr;
}

pjson convert_qwen_parameter(const std::string& value, const std::string& name, const pjson* properties) {
  if (lower(value) == "null") return nullptr;
  if (!properties) return value;
  const auto schema = properties->find(name);
  if (schema == properties->end()) return value;
  std::string type = "string";
  if (schema->is_object()) {
    const auto t = schema->find("type");
    if (t != schema->end()) type = lower(std::string(strip(t->is_string() ? t->get<std::string>() : t->dump())));
  }
  if (type == "string" || type == "str" || type == "text" || type == "varchar" || type == "char" || type == "enum")
    return value;
  if (type.starts_with("int") || type.starts_with("uint") || type.starts_with("long") || type.starts_with("short") ||
      type.starts_with("unsigned"))
    return python_int(value).value_or(pjson(value));
  if (type.starts_with("num") || type.starts_with("float")) return python_number(value).value_or(pjson(value));
  if (type == "boolean" || type == "bool" || type == "binary") return lower(value) == "true";
  if (type == "object" || type == "array" || type == "arr" || type.starts_with("dict") || type.starts_with("list")) {
    python_json_result r = parse_python_json(value);
    if (!r.error) return std::move(r.value);
  }
  return literal_eval(value).value_or(pjson(value));
}

void qwen_xml_call::advance(std::string_view body, bool final, const tool_schemas& schemas) {
  if (failed || closed) return;
  if (!has_name) {
    const size_t f = body.find(function_open);
    if (f == std::string_view::npos) {
      failed = final;
      return;
    }
    const size_t gt = body.find('>', f + function_open.size());
    if (gt == std::string_view::npos) {
      failed = final;  // vLLM's str.index(">") raises
      return;
    }
    name = std::string(body.substr(f + function_open.size(), gt - f - function_open.size()));
    has_name = true;
    pos_ = gt + 1;
  }
  for (;;) {
    if (!in_parameter_) {
      const size_t p = body.find(parameter_open, pos_);
      const size_t end = body.find(function_close, pos_);
      if (end != std::string_view::npos && (p == std::string_view::npos || end < p)) return close();
      if (p == std::string_view::npos) {
        if (final) close();
        return;
      }
      const size_t gt = body.find('>', p + parameter_open.size());
      if (gt == std::string_view::npos) {
        failed = final;
        return;
      }
      parameter_ = std::string(body.substr(p + parameter_open.size(), gt - p - parameter_open.size()));
      in_parameter_ = true;
      pos_ = gt + 1;
    }
    // The value ends at the first of </parameter>, <parameter=, </function>.
    size_t end = std::string_view::npos;
    size_t skip = 0;
    for (std::string_view marker : {parameter_close, parameter_open, function_close}) {
      const size_t at = body.find(marker, pos_);
      if (at < end) {
        end = at;
        skip = marker == parameter_close ? marker.size() : 0;
      }
    }
    if (end == std::string_view::npos) {
      if (!final) return;
      add_parameter(body.substr(pos_), schemas);
      pos_ = body.size();
      in_parameter_ = false;
      close();
      return;
    }
    add_parameter(body.substr(pos_, end - pos_), schemas);
    pos_ = end + skip;
    in_parameter_ = false;
  }
}

void qwen_xml_call::add_parameter(std::string_view value, const tool_schemas& schemas) {
  if (value.starts_with('\n')) value.remove_prefix(1);
  if (value.ends_with('\n')) value.remove_suffix(1);
  const pjson v = convert_qwen_parameter(std::string(value), parameter_, schemas.properties(name));
  arguments += num_parameters_++ == 0 ? "{" : ", ";
  arguments += python_dumps(pjson(parameter_));
  arguments += ": ";
  arguments += python_dumps(v);
}

void qwen_xml_call::close() {
  arguments += num_parameters_ == 0 ? "{}" : "}";
  closed = true;
}

} // namespace troupe
