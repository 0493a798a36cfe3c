#include "runtime/model/safetensors_detail.hpp"

#include "runtime/error.hpp"

#include <algorithm>
#include <set>

namespace troupe::safetensors_detail {

namespace {

// Length of the well-formed UTF-8 sequence at the start of `s`, or 0 when it is not one.
std::size_t utf8_sequence_length(std::string_view s) {
  const auto lead = static_cast<unsigned char>(s[0]);
  std::size_t n;
  std::uint32_t cp;
  if (lead < 0x80) return 1;
  if ((lead & 0xE0u) == 0xC0u) {
    n = 2, cp = lead & 0x1Fu;
  } else if ((lead & 0xF0u) == 0xE0u) {
    n = 3, cp = lead & 0x0Fu;
  } else if ((lead & 0xF8u) == 0xF0u) {
    n = 4, cp = lead & 0x07u;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (c & 0x3Fu);
  }
  constexpr std::uint32_t min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_for_length[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void append_escaped(std::string& out, unsigned char u) {
  constexpr char hex[] = "0123456789abcdef";
  out += "\\x";
  out += hex[u >> 4];
  out += hex[u & 0xF];
}

} // namespace

std::string printable(std::string_view s, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 3);
  std::size_t i = 0;
  while (i < s.size() && i < max_bytes) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    const auto u = static_cast<unsigned char>(s[i]);
    if (n == 0 || u < 0x20 || u == 0x7F) {
      append_escaped(out, u);  // control bytes would break the line; stray bytes would break UTF-8
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  if (i < s.size()) out += "...";
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
