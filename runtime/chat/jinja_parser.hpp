#pragma once
// Parses chat template source into a template_program, with jinja2's grammar and precedence.

#include "runtime/chat/jinja_ast.hpp"

#include <memory>
#include <string_view>

namespace troupe::jinja {

// The program of source. Throws syntax_error (with jinja2's message where it has one, and the line)
// on malformed templates, unknown tags, and filters or tests that do not exist.
std::shared_ptr<const template_program> parse_template(std::string_view source);

// Looks up every filter and test of program. Throws syntax_error for a name jinja2 does not know,
// except inside if statements and conditional expressions, where jinja2 lets it fail when it runs.
void resolve_filters_and_tests(template_program& program);

} // namespace troupe::jinja
