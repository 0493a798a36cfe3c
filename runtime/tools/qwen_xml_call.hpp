#pragma once
// One Qwen3-Coder call, <function=NAME><parameter=P>value</parameter>…</function>, read as vLLM's
// Qwen3CoderToolParser reads it: a parameter's value ends at </parameter>, the next <parameter= or
// </function> (or the end of the text), loses one leading and one trailing newline, and is converted by
// the type the tool's JSON schema gives the parameter (an integer parameter "5" is 5; a string stays a
// string; "null" is null). The arguments grow one whole parameter at a time, as json.dumps prints the dict.

#include <string>
#include <string_view>

#include "runtime/openai/python_json.hpp"

namespace troupe {

// The request's tools, by function name: their parameters' "properties".
class tool_schemas {
public:
  explicit tool_schemas(std::string_view tools_json);
  // The properties object of the function's parameters; null when the function or its properties are unknown.
  const pjson* properties(std::string_view function) const;

private:
  pjson tools_;
};

// A parameter's text as vLLM's _convert_param_value makes it a value, by the schema's type.
pjson convert_qwen_parameter(const std::string& value, const std::string& name, const pjson* properties);

struct qwen_xml_call {
  std::string name;
  bool has_name = false;
  std::string arguments;  // json.dumps of the parameters read so far, "}" once the function closed
  bool closed = false;
  bool failed = false;

  // Reads body (the text after <tool_call>; each call passes the same text, longer) from where it
  // stopped. final: the body is complete.
  void advance(std::string_view body, bool final, const tool_schemas& schemas);

private:
  void add_parameter(std::string_view value, const tool_schemas& schemas);
  void close();
  size_t pos_ = 0;
  bool in_parameter_ = false;
  std::string parameter_;
  int num_parameters_ = 0;
};

} // namespace troupe
