#include "runtime/safetensors_detail.hpp"

#include "runtime/error.hpp"

#include <set>

namespace troupe::safetensors_detail {

std::string printable(std::string_view s, std::size_t max_bytes) {
  bool cut = false;
  if (s.size() > max_bytes) {
    std::size_t end = max_bytes;
    // Back off continuation bytes (10xxxxxx) so a multi-byte character is not split.
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0u) == 0x80u) --end;
    s = s.substr(0, end);
    cut = true;
  }
  std::string out;
  out.reserve(s.size() + 3);
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0xF];
    } else {
      out += c;
    }
  }
  if (cut) out += "...";
  return out;
}

std::string format_shape(std::span<const std::int64_t> shape) {
  constexpr std::size_t shown = 16;
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size() && i < shown; ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() > shown) out += ", ... (" + std::to_string(shape.size()) + " dimensions)";
  return out + "]";
}

namespace {

constexpr int max_depth = 16;

// Thrown from the parser callback to stop parsing at once; never leaves parse_json_checked.
struct too_deep {};

struct container {
  bool is_object;
  std::set<std::string, std::less<>> keys;
  std::string last_key;
};

} // namespace

parsed_json parse_json_checked(std::string_view text, std::string_view where, std::string_view remedy) {
  parsed_json result;
  std::vector<container> open;
  auto on_event = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using ev = nlohmann::json::parse_event_t;
    switch (event) {
    case ev::object_start:
    case ev::array_start:
      if (open.size() >= max_depth) throw too_deep{};
      open.push_back({event == ev::object_start, {}, {}});
      break;
    case ev::object_end:
    case ev::array_end:
      if (!open.empty()) open.pop_back();
      break;
    case ev::key: {
      auto& frame = open.back();
      const auto& key = parsed.get_ref<const std::string&>();
      if (!frame.keys.insert(key).second && result.repeated_key_path.empty()) {
        for (const auto& c : open) {
          if (c.is_object && &c != &frame) result.repeated_key_path.push_back(c.last_key);
        }
        result.repeated_key_path.push_back(key);
      }
      frame.last_key = key;
      break;
    }
    case ev::value:
      break;
    }
    return true;  // keep everything
  };
  try {
    result.value = nlohmann::json::parse(text.begin(), text.end(), on_event);
  } catch (const too_deep&) {
    throw checkpoint_error(std::string(where) + " nests containers more than " + std::to_string(max_depth) +
                           " deep" + std::string(remedy));
  } catch (const nlohmann::json::exception& e) {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag; keep "parse error at line 1, column 9: ...".
    std::string_view why = e.what();
    if (const auto tag_end = why.find("] "); why.starts_with("[json.exception.") && tag_end != why.npos) {
      why.remove_prefix(tag_end + 2);
    }
    throw checkpoint_error(std::string(where) + " is not valid JSON (" + printable(why, 300) + ")" +
                           std::string(remedy));
  }
  return result;
}

} // namespace troupe::safetensors_detail
