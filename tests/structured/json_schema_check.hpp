#pragma once
// A small JSON-schema validator for the keywords the converter supports, written apart from the converter
// so the random-walk tests check its outputs against the schema's meaning, not against itself.

#include <nlohmann/json.hpp>

#include <regex>
#include <string>

namespace troupe::structured::testing {

inline std::size_t codepoints(const std::string& s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// "" when value is valid under schema, else what is wrong.
inline std::string schema_violation(const nlohmann::json& value, const nlohmann::json& schema, const nlohmann::json& root) {
  using json = nlohmann::json;
  if (schema.is_boolean()) return schema.get<bool>() ? "" : "false schema";
  if (schema.contains("$ref")) return schema_violation(value, root.at(json::json_pointer(schema["$ref"].get<std::string>().substr(1))), root);
  if (schema.contains("const") && value != schema["const"]) return "not the const";
  if (schema.contains("enum")) {
    bool found = false;
    for (const auto& v : schema["enum"]) found |= v == value;
    if (!found) return "not in enum";
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!schema.contains(key)) continue;
    bool any = false;
    for (const auto& branch : schema[key]) any |= schema_violation(value, branch, root).empty();
    if (!any) return std::string("no ") + key + " branch";
  }
  if (schema.contains("allOf")) {
    for (const auto& branch : schema["allOf"]) if (auto why = schema_violation(value, branch, root); !why.empty()) return why;
  }
  if (schema.contains("type")) {
    const auto is = [&](const std::string& t) {
      if (t == "object") return value.is_object();
      if (t == "array") return value.is_array();
      if (t == "string") return value.is_string();
      if (t == "integer") return value.is_number_integer();
      if (t == "number") return value.is_number();
      if (t == "boolean") return value.is_boolean();
      if (t == "null") return value.is_null();
      return false;
    };
    bool ok = false;
    if (schema["type"].is_string()) ok = is(schema["type"]);
    else for (const auto& t : schema["type"]) ok |= is(t);
    if (!ok) return "wrong type";
  }
  if (value.is_object()) {
    if (schema.contains("required")) {
      for (const auto& name : schema["required"]) if (!value.contains(name.get<std::string>())) return "missing " + name.get<std::string>();
    }
    const json properties = schema.value("properties", json::object());
    for (const auto& [name, v] : value.items()) {
      if (properties.contains(name)) {
        if (auto why = schema_violation(v, properties[name], root); !why.empty()) return name + ": " + why;
      } else if (schema.contains("additionalProperties")) {
        if (auto why = schema_violation(v, schema["additionalProperties"], root); !why.empty()) return name + ": " + why;
      } else if (schema.contains("properties")) {
        return "extra property " + name;
      }
    }
  }
  if (value.is_array()) {
    const json prefix = schema.value("prefixItems", json::array());
    for (std::size_t i = 0; i < value.size(); ++i) {
      const json& sub = i < prefix.size() ? prefix[i] : schema.value("items", json(true));
      if (auto why = schema_violation(value[i], sub, root); !why.empty()) return "[" + std::to_string(i) + "]: " + why;
    }
    if (value.size() < schema.value("minItems", 0u)) return "too few items";
    if (schema.contains("maxItems") && value.size() > schema["maxItems"].get<std::size_t>()) return "too many items";
  }
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (codepoints(s) < schema.value("minLength", 0u)) return "too short";
    if (schema.contains("maxLength") && codepoints(s) > schema["maxLength"].get<std::size_t>()) return "too long";
    if (schema.contains("pattern") && !std::regex_match(s, std::regex(schema["pattern"].get<std::string>()))) return "pattern";
  }
  if (value.is_number()) {
    const double d = value.get<double>();
    if (schema.contains("minimum") && d < schema["minimum"].get<double>()) return "below minimum";
    if (schema.contains("maximum") && d > schema["maximum"].get<double>()) return "above maximum";
  }
  return "";
}

} // namespace troupe::structured::testing
