#pragma once
// JSON decoding exactly as Python's json.loads does it (CPython 3.12's C scanner), so request bodies
// are accepted and refused as vLLM accepts and refuses them, with the same error text and position:
// NaN, Infinity and -Infinity are numbers; a repeated key keeps its first place and its last value;
// errors name the first offending character by its index in characters, not bytes.
// Included only by the OpenAI schema sources (nlohmann-json stays out of widely included headers).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace troupe {

// Objects keep their keys in the order they came, as Python dicts do (a chat template that dumps a
// tool's parameters must see them in the order the client wrote them).
using pjson = nlohmann::ordered_json;

struct python_json_error {
  std::string message;  // Python's JSONDecodeError.msg, e.g. "Expecting ',' delimiter"
  int64_t position = 0; // JSONDecodeError.pos: index in characters
  bool unparsable = false; // not UTF-8, or nested too deep: Python fails with another exception
};

struct python_json_result {
  pjson value;
  std::optional<python_json_error> error;
};

// Decodes UTF-8 JSON text (a leading UTF-8 byte order mark is skipped, as json.loads(bytes) does).
python_json_result parse_python_json(std::string_view text);

// str(JSONDecodeError): "Expecting value: line 1 column 1 (char 0)".
std::string python_json_error_text(std::string_view text, const python_json_error& error);

// Python's truthiness of a decoded JSON value (None, False, 0, "", [], {} are false).
bool python_truthy(const pjson& v);

// Python's repr() of a decoded JSON value: None, True, 1.5, 'text', [1, 2], {'a': 1}.
std::string python_repr(const pjson& v);

// Python's str() of a decoded JSON value: text unquoted, everything else as repr().
std::string python_str(const pjson& v);

} // namespace troupe
