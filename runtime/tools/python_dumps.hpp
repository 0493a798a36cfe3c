#pragma once
// Python's json.dumps(value, ensure_ascii=False), the way vLLM's tool parsers print a call's arguments.

#include <cstdint>
#include <string>

#include "runtime/openai/python_json.hpp"

namespace troupe {

// json.dumps(v, ensure_ascii=False): ", " and ": " separators, keys in their order, floats as repr().
std::string python_dumps(const pjson& v);

// One character as UTF-8; escaped: as it appears inside a json.dumps string ("\"", "\\n", "\u001f").
std::string python_escape_char(uint32_t cp, bool escaped);

// A float as json.dumps prints it: repr(), with NaN, Infinity and -Infinity.
std::string python_float_text(double v);

} // namespace troupe
