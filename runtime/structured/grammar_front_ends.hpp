#pragma once
// The front ends of structured outputs: each turns a request's spec into a grammar (grammar_ir.hpp), or
// throws std::invalid_argument with a message naming the field and what is wrong.

#include "runtime/structured/grammar_ir.hpp"

#include <string_view>

namespace troupe::structured {

// guided_grammar: EBNF as GBNF/xgrammar write it (root ::= ..., | ( ) * + ? {m,n}, "strings", [classes]).
grammar parse_ebnf(std::string_view text);

// guided_regex: the whole output matches pattern (ECMAScript syntax, without backreferences or lookaround).
grammar regex_grammar(std::string_view pattern);

struct regex_options {
  std::string_view what = "guided_regex";  // names the source in messages
  bool json_string = false;  // inside a JSON string: '.' and negated classes leave out '"', '\' and controls
};
// Adds pattern's expression to g; returns its id.
int32_t add_regex(grammar& g, std::string_view pattern, const regex_options& options);

// guided_choice: a JSON array of strings; the output is exactly one of them.
grammar choice_grammar(std::string_view json_array);

// response_format json_schema / guided_json: JSON text valid under the schema.
grammar json_schema_grammar(std::string_view schema_text);

// response_format json_object: any JSON object.
grammar json_object_grammar();

} // namespace troupe::structured
