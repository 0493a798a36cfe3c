#pragma once
// Splits a chat template into tokens the way jinja2's lexer does under transformers' settings
// (trim_blocks and lstrip_blocks on, keep_trailing_newline off): text between tags already has the
// whitespace control ({%- -%} {{- -}} {#- -#}, {%+ +%}) applied, comments and raw blocks are resolved.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::jinja {

enum class token_kind : uint8_t {
  text,           // literal template text
  variable_begin, // {{
  variable_end,   // }}
  block_begin,    // {%
  block_end,      // %}
  name,           // identifiers and keywords (if, in, not, true...)
  string,         // a string literal, escapes resolved
  integer,
  floating,
  op,             // + - * / // % ** ~ ( ) [ ] { } . , : | = == != < <= > >=
  eof,
};

struct token {
  token_kind kind = token_kind::eof;
  std::string text; // the name, operator, string value or template text
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// The tokens of source, ending with an eof token. Throws syntax_error with the line on an unclosed
// tag or comment, an unbalanced bracket or a character no token starts with.
std::vector<token> tokenize(std::string_view source);

} // namespace troupe::jinja
