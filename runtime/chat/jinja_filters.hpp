#pragma once
// jinja2's filters ({{ x | trim }}) and tests ({% if x is defined %}), with transformers' tojson.

#include "runtime/chat/jinja_value.hpp"

#include <string_view>

namespace troupe::jinja {

struct filter_entry {
  std::string_view name;
  value (*apply)(interpreter& in, const value& subject, call_args& args);
};

struct test_entry {
  std::string_view name;
  bool (*apply)(interpreter& in, const value& subject, call_args& args);
};

// The filter or test called name; null when jinja2 has none (or troupe does not implement it).
const filter_entry* find_filter(std::string_view name);
const test_entry* find_test(std::string_view name);
// A filter jinja2 has that troupe does not implement (urlize, wordwrap...): reported as such.
bool is_unimplemented_filter(std::string_view name);

} // namespace troupe::jinja
