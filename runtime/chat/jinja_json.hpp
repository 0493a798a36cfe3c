#pragma once
// Python's json.dumps over template values: what transformers' tojson filter prints.

#include "runtime/chat/jinja_value.hpp"

#include <optional>
#include <string>

namespace troupe::jinja {

struct json_options {
  bool ensure_ascii = false;
  std::optional<std::string> indent; // absent: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// json.dumps(v, ...) with Python's defaults for the separators (", " and ": ", or "," and ": " with an
// indent); throws template_error "Object of type X is not JSON serializable" for undefined, functions,
// namespaces and iterators.
std::string to_json(const value& v, const json_options& options);

// Template values from JSON text (objects keep their key order); throws template_error on bad JSON.
value parse_json(std::string_view json_text);

} // namespace troupe::jinja
