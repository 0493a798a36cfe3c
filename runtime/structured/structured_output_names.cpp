#include "runtime/structured/structured_output_names.hpp"

#include <array>
#include <utility>

namespace troupe {
namespace {

constexpr std::array<std::pair<structured_output::kind, std::string_view>, 5> names = {{
    {structured_output::kind::json_object, "json_object"},
    {structured_output::kind::json_schema, "json_schema"},
    {structured_output::kind::regex, "regex"},
    {structured_output::kind::choice, "choice"},
    {structured_output::kind::grammar, "grammar"},
}};

} // namespace

std::string_view structured_kind_name(structured_output::kind k) {
  for (const auto& [kind, name] : names)
    if (kind == k) return name;
  return "unknown";
}

std::optional<structured_output::kind> structured_kind_named(std::string_view name) {
  for (const auto& [kind, n] : names)
    if (n == name) return kind;
  return std::nullopt;
}

} // namespace troupe
