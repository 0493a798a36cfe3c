// json.dumps as Python writes it (float repr, escapes, separators, indent), and JSON text to values.

#include "runtime/chat/jinja_json.hpp"

#include "runtime/chat/jinja_text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace troupe::jinja {
namespace {

void write_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = text::next_code_point(s, i);
    switch (c) {
    case '"': out += "\\\""; continue;
    case '\\': out += "\\\\"; continue;
    case '\n': out += "\\n"; continue;
    case '\r': out += "\\r"; continue;
    case '\t': out += "\\t"; continue;
    case '\b': out += "\\b"; continue;
    case '\f': out += "\\f"; continue;
    default: break;
    }
    if (c < 0x20) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else if (ensure_ascii && c > 0x7E) {
      if (c >= 0x10000) {
        char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      out.append(s, start, i - start);
    }
  }
  out += '"';
}

std::string float_json(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return float_repr(d);
}

std::string key_string(const value& k) {
  switch (k.kind()) {
  case value_kind::string: return k.as_string();
  case value_kind::boolean: return k.as_bool() ? "true" : "false";
  case value_kind::none: return "null";
  case value_kind::integer: return std::to_string(k.as_int());
  case value_kind::floating: return float_json(k.as_float());
  default: throw template_error("keys must be str, int, float, bool or None, not " + type_name(k));
  }
}

class writer {
public:
  explicit writer(const json_options& o) : o_(o) {}

  void write(std::string& out, const value& v, int level) {
    switch (v.kind()) {
    case value_kind::none: out += "null"; return;
    case value_kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case value_kind::integer: out += std::to_string(v.as_int()); return;
    case value_kind::floating: out += float_json(v.as_float()); return;
    case value_kind::string: write_string(out, v.as_string(), o_.ensure_ascii); return;
    case value_kind::list:
      if (v.as_list().flavor == seq_flavor::list || v.as_list().flavor == seq_flavor::tuple) {
        write_array(out, v.as_list().items, level);
        return;
      }
      break;
    case value_kind::dict: write_object(out, v.as_dict(), level); return;
    default: break;
    }
    throw template_error("Object of type " + type_name(v) + " is not JSON serializable");
  }

private:
  void newline(std::string& out, int level) {
    out += '\n';
    for (int k = 0; k < level; ++k) out += *o_.indent;
  }

  void write_array(std::string& out, const std::vector<value>& items, int level) {
    if (items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += o_.item_separator;
      if (o_.indent) newline(out, level + 1);
      write(out, items[i], level + 1);
    }
    if (o_.indent) newline(out, level);
    out += ']';
  }

  void write_object(std::string& out, const dict_object& d, int level) {
    if (d.entries.empty()) {
      out += "{}";
      return;
    }
    std::vector<const std::pair<value, value>*> entries;
    for (const auto& e : d.entries) entries.push_back(&e);
    if (o_.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) {
        if (!a->first.is_string() || !b->first.is_string()) return key_string(a->first) < key_string(b->first);
        return a->first.as_string() < b->first.as_string();
      });
    }
    out += '{';
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i) out += o_.item_separator;
      if (o_.indent) newline(out, level + 1);
      write_string(out, key_string(entries[i]->first), o_.ensure_ascii);
      out += o_.key_separator;
      write(out, entries[i]->second, level + 1);
    }
    if (o_.indent) newline(out, level);
    out += '}';
  }

  const json_options& o_;
};

value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
  case nlohmann::ordered_json::value_t::null: return value(nullptr);
  case nlohmann::ordered_json::value_t::boolean: return value(j.get<bool>());
  case nlohmann::ordered_json::value_t::number_integer: return value(j.get<int64_t>());
  case nlohmann::ordered_json::value_t::number_unsigned: {
    auto u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return value(static_cast<double>(u));
    return value(static_cast<int64_t>(u));
  }
  case nlohmann::ordered_json::value_t::number_float: return value(j.get<double>());
  case nlohmann::ordered_json::value_t::string: return value(j.get<std::string>());
  case nlohmann::ordered_json::value_t::array: {
    std::vector<value> items;
    items.reserve(j.size());
    for (const auto& x : j) items.push_back(from_json(x));
    return value::list(std::move(items));
  }
  case nlohmann::ordered_json::value_t::object: {
    value d = value::dict();
    for (auto it = j.begin(); it != j.end(); ++it) d.as_dict().entries.emplace_back(value(it.key()), from_json(it.value()));
    return d;
  }
  default: return value(nullptr);
  }
}

} // namespace

std::string to_json(const value& v, const json_options& options) {
  std::string out;
  writer(options).write(out, v, 0);
  return out;
}

value parse_json(std::string_view json_text) {
  try {
    return from_json(nlohmann::ordered_json::parse(json_text));
  } catch (const nlohmann::json::exception& e) {
    throw template_error(e.what());
  }
}

} // namespace troupe::jinja
