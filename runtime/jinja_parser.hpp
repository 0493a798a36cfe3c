#pragma once
// Parses chat template source into a template_program, with jinja2's grammar and precedence.

#include "runtime/jinja_ast.hpp"

#include <memory>
#include <string_view>

namespace troupe::jinja {

// The program of source. Throws syntax_error (with jinja2's message where it has one, and the line)
// on malformed templates, unknown tags, and filters or tests that do not exist.
std::shared_ptr<const template_program> parse_template(std::string_view source);

} // namespace troupe::jinja
