#pragma once
// Internal to the safetensors reader and writer (runtime/model/safetensors*.cpp); includes nlohmann-json, so no
// public header may include it.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::safetensors_detail {

// Suffixes that tell the user what to do, shared so the messages stay consistent.
inline constexpr std::string_view damaged = "; the file is damaged or not a safetensors file, download or convert it again";
inline constexpr std::string_view truncated = "; the file is truncated, download it again";

// `s` made safe for a one-line message: control bytes and bytes that are not UTF-8 escaped as \xNN, cut
// after `max_bytes` input bytes (never inside a character) with "..." appended. Names and paths come from
// files and may hold anything.
std::string printable(std::string_view s, std::size_t max_bytes = 200);

// "[a, b, c]", showing at most 16 dimensions.
std::string format_shape(std::span<const std::int64_t> shape);

struct parsed_json {
  nlohmann::json value;
  // Keys from the root down to the first key that an object repeats; empty when no key repeats.
  // (nlohmann keeps the last value of a repeated key; a repeated tensor name must not pass silently.)
  std::vector<std::string> repeated_key_path;
};

// Parses `text` as exactly one JSON value (trailing whitespace allowed); throws checkpoint_error
// "<where> is not valid JSON (<why>)<remedy>" on a syntax error or invalid UTF-8, and
// "<where> nests containers more than 16 deep<remedy>" before deep nesting can cost memory.
parsed_json parse_json_checked(std::string_view text, std::string_view where, std::string_view remedy);

// The weight_map of a model.safetensors.index.json whose text is `text`: tensor name -> shard file, relative
// to the index's folder and normalized. Throws checkpoint_error naming `index_path` when the text is not JSON,
// has no weight_map object, lists a tensor twice, or names a shard that is not a file inside the folder.
std::map<std::string, std::string> parse_weight_map(std::string_view text, const std::filesystem::path& index_path);

} // namespace troupe::safetensors_detail
