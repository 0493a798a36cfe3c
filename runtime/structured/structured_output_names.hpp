#pragma once
// The names of structured_output's kinds as the native client wire and messages spell them.

#include <optional>
#include <string_view>

#include "runtime/structured/grammar_matcher.hpp"

namespace troupe {

// "json_object", "json_schema", "regex", "choice" or "grammar".
std::string_view structured_kind_name(structured_output::kind k);
// The kind of that name; nullopt for any other string.
std::optional<structured_output::kind> structured_kind_named(std::string_view name);

} // namespace troupe
