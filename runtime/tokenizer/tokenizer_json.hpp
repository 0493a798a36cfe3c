#pragma once
// Reading tokenizer.json sections with errors a user can act on. Internal to the tokenizer's .cpp files
// (it pulls in the whole of nlohmann/json).

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "runtime/error.hpp"

namespace troupe::tokenization {

using json = nlohmann::json;

// section[key], which must exist; throws user_error "<where>: missing field '<key>'".
inline const json& required_field(const json& section, std::string_view key, std::string_view where) {
  if (!section.is_object()) throw user_error(std::string(where) + " must be a JSON object");
  const auto it = section.find(key);
  if (it == section.end()) throw user_error(std::string(where) + ": missing field '" + std::string(key) + "'");
  return *it;
}

// section[key] as a string; throws user_error when it is absent or not a string.
inline std::string required_string(const json& section, std::string_view key, std::string_view where) {
  const json& value = required_field(section, key, where);
  if (!value.is_string())
    throw user_error(std::string(where) + ": field '" + std::string(key) + "' must be a string");
  return value.get<std::string>();
}

// section[key] as a bool; fallback when absent or null; throws user_error for another type.
inline bool optional_bool(const json& section, std::string_view key, bool fallback, std::string_view where) {
  const auto it = section.find(key);
  if (it == section.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw user_error(std::string(where) + ": field '" + std::string(key) + "' must be true or false");
  return it->get<bool>();
}

// section[key] as a string; fallback when absent or null; throws user_error for another type.
inline std::string optional_string(const json& section, std::string_view key, std::string fallback,
                                   std::string_view where) {
  const auto it = section.find(key);
  if (it == section.end() || it->is_null()) return fallback;
  if (!it->is_string()) throw user_error(std::string(where) + ": field '" + std::string(key) + "' must be a string");
  return it->get<std::string>();
}

// The "type" of a section object.
inline std::string type_of(const json& section, std::string_view where) {
  return required_string(section, "type", where);
}

// The single code point of a one-character string (Metaspace's replacement, Strip's content).
char32_t single_char(const json& section, std::string_view key, std::string_view where);

class regex;

// Where Metaspace puts its replacement character in front of a piece.
enum class prepend_scheme { always, first, never };
// section's prepend_scheme, or its legacy add_prefix_space; throws user_error for an unknown scheme.
prepend_scheme parse_prepend_scheme(const json& section, std::string_view where);

// The regex of a {"String": s} or {"Regex": r} pattern object (Split, Replace).
regex make_pattern(const json& pattern, std::string_view where);

} // namespace troupe::tokenization
