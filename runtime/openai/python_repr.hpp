#pragma once
// How Python and pydantic print values. vLLM's error messages and response bodies are made by Python
// (str(), repr(), json.dumps) and by pydantic-core (model_dump_json); reproducing them byte for byte
// needs their exact number and string formats.

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

// Python's repr(float): shortest round-trip digits, "1.0", "0.0001", "1e-05", "1e+16", "inf", "nan".
std::string python_float_repr(double v);

// Python's str(int(v)) of a finite integral float: every digit ("100000000000000000000" for 1e20),
// not the 17 significant ones a double prints. What pydantic's lax int makes of a JSON 1e20.
std::string python_int_of_float(double v);

// pydantic-core's JSON float (serde_json / ryu): "1.0", "0.00001", "1e-6", "1e16".
std::string pydantic_json_float(double v);

// Python's repr(str) of UTF-8 text: quoted with ' (or " when the text holds ' but no "), backslash
// escapes for quotes, \t \n \r, and \x.. \u.... \U........ for characters Python does not print.
std::string python_str_repr(std::string_view utf8);

// Number of Unicode characters (what Python's len(str) counts) in UTF-8 text; invalid bytes count
// one each per maximal subpart, as they would after decoding with errors="replace".
int64_t python_len(std::string_view utf8);

// The first n characters of UTF-8 text (Python's s[:n]).
std::string_view python_prefix(std::string_view utf8, int64_t n);

} // namespace troupe
