// Structured outputs in OpenAI request bodies: response_format (json_object, json_schema), vLLM's
// structured_outputs object and its older guided_json / guided_regex / guided_choice / guided_grammar
// fields, each turned into one structured_output and compiled at request time (openai_server_config::
// compile_structured) so a bad schema, regex or grammar is a 400 naming its field; and the constraint
// that tool_choice "required" or a named tool puts on the output (vLLM's _get_json_schema_from_tool).

#include <stdexcept>

#include "runtime/openai/openai_fields.hpp"
#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/python_repr.hpp"

namespace troupe {

using namespace openai_detail;

namespace {

// One constraint a body asked for, and the field it came from (for messages).
struct requested {
  std::string field;
  structured_output spec;
};

// A JSON schema sent as an object, or as a string holding one (guided_json, structured_outputs.json).
std::optional<std::string> schema_text(const pjson& v) {
  if (v.is_object()) return dump_json(v);
  if (v.is_string()) return v.get<std::string>();
  return std::nullopt;
}

// guided_choice / structured_outputs.choice: a list of strings, as the JSON array the grammar engine reads.
std::optional<std::string> choice_text(const pjson& v) {
  if (!v.is_array() || v.empty()) return std::nullopt;
  for (const pjson& c : v)
    if (!c.is_string()) return std::nullopt;
  return dump_json(v);
}

api_error wrong_type(std::string_view field, std::string_view expected) {
  return bad_request(std::string(field) + " must be " + std::string(expected) + ".", std::string(field));
}

// Reads every source of a constraint; the first malformed one is the answer.
std::optional<api_error> collect(const pjson& data, std::vector<requested>& found) {
  using kind = structured_output::kind;
  if (const pjson* rf = get(data, "response_format"); rf && rf->is_object()) {
    const pjson* type = get(*rf, "type");
    const std::string t = type && type->is_string() ? type->get<std::string>() : "";
    if (t == "json_object") {
      found.push_back({"response_format", {kind::json_object, ""}});
    } else if (t == "json_schema") {
      const pjson* js = get(*rf, "json_schema");
      const pjson* schema = js && js->is_object() ? get(*js, "schema") : nullptr;
      if (!schema || schema->is_null())
        return bad_request("response_format.json_schema.schema must be provided: the JSON schema the output follows.",
                           "response_format");
      auto text = schema_text(*schema);
      if (!text) return wrong_type("response_format.json_schema.schema", "a JSON schema object");
      found.push_back({"response_format", {kind::json_schema, *text}});
    } else if (t == "structural_tag") {
      return unsupported_field("response_format");
    } else if (t != "text") {
      return bad_request("response_format.type must be 'text', 'json_object' or 'json_schema', got " +
                             (type ? python_repr(*type) : std::string("nothing")) + ".",
                         "response_format");
    }
  }
  auto string_field = [&](const pjson& v, std::string field, kind k) -> std::optional<api_error> {
    if (!v.is_string()) return wrong_type(field, "a string");
    found.push_back({std::move(field), {k, v.get<std::string>()}});
    return std::nullopt;
  };
  auto json_field = [&](const pjson& v, std::string field) -> std::optional<api_error> {
    auto text = schema_text(v);
    if (!text) return wrong_type(field, "a JSON schema (an object, or a string holding one)");
    found.push_back({std::move(field), {kind::json_schema, *text}});
    return std::nullopt;
  };
  auto choice_field = [&](const pjson& v, std::string field) -> std::optional<api_error> {
    auto text = choice_text(v);
    if (!text) return wrong_type(field, "a non-empty list of strings");
    found.push_back({std::move(field), {kind::choice, *text}});
    return std::nullopt;
  };
  auto set = [&](const pjson& obj, std::string_view key) -> const pjson* {
    const pjson* v = get(obj, key);
    return v && !v->is_null() ? v : nullptr;
  };

  if (const pjson* so = set(data, "structured_outputs")) {
    if (!so->is_object()) return wrong_type("structured_outputs", "an object");
    if (const pjson* v = set(*so, "json"))
      if (auto e = json_field(*v, "structured_outputs.json")) return e;
    if (const pjson* v = set(*so, "regex"))
      if (auto e = string_field(*v, "structured_outputs.regex", kind::regex)) return e;
    if (const pjson* v = set(*so, "choice"))
      if (auto e = choice_field(*v, "structured_outputs.choice")) return e;
    if (const pjson* v = set(*so, "grammar"))
      if (auto e = string_field(*v, "structured_outputs.grammar", kind::grammar)) return e;
    if (const pjson* v = set(*so, "json_object"); v && python_truthy(*v))
      found.push_back({"structured_outputs.json_object", {kind::json_object, ""}});
    // xgrammar's knobs troupe's engine does not have: refused when set, not ignored.
    for (const char* knob : {"structural_tag", "whitespace_pattern", "disable_any_whitespace",
                             "disable_additional_properties"})
      if (const pjson* v = set(*so, knob); v && python_truthy(*v))
        return unsupported_field("structured_outputs." + std::string(knob));
  }
  if (const pjson* v = set(data, "guided_json"))
    if (auto e = json_field(*v, "guided_json")) return e;
  if (const pjson* v = set(data, "guided_regex"))
    if (auto e = string_field(*v, "guided_regex", kind::regex)) return e;
  if (const pjson* v = set(data, "guided_choice"))
    if (auto e = choice_field(*v, "guided_choice")) return e;
  if (const pjson* v = set(data, "guided_grammar"))
    if (auto e = string_field(*v, "guided_grammar", kind::grammar)) return e;
  if (const pjson* v = set(data, "guided_whitespace_pattern"); v && python_truthy(*v))
    return unsupported_field("guided_whitespace_pattern");
  return std::nullopt;
}

} // namespace

namespace openai_detail {

std::optional<api_error> parse_structured_output(const pjson& data, const openai_server_config& server,
                                                 std::optional<structured_output>& out) {
  std::vector<requested> found;
  if (auto e = collect(data, found)) return e;
  if (found.empty()) return std::nullopt;
  if (found.size() > 1) {
    std::string names;
    for (size_t i = 0; i < found.size(); ++i) names += (i ? ", " : "") + found[i].field;
    return bad_request("You can only use one kind of structured outputs constraint but multiple are specified: " +
                       names + ".");
  }
  requested& r = found.front();
  // The field's own name, the parent object's for its keys: what the client can find in its body.
  const std::string param = r.field.substr(0, r.field.find('.'));
  if (!server.compile_structured) return unsupported_field(param);
  try {
    server.compile_structured(r.spec);
  } catch (const std::invalid_argument& e) {
    const std::string why = e.what();
    return bad_request(why.rfind(r.field + ":", 0) == 0 ? why : r.field + ": " + why, param);
  }
  out = std::move(r.spec);
  return std::nullopt;
}

} // namespace openai_detail

checked<std::optional<structured_output>> tool_choice_structured_output(std::string_view tools_json,
                                                                         tool_choice_mode mode,
                                                                         std::string_view function_name) {
  if (mode != tool_choice_mode::required && mode != tool_choice_mode::function)
    return std::optional<structured_output>();
  pjson tools = pjson::parse(tools_json.empty() ? std::string_view("[]") : tools_json, nullptr, false);
  if (tools.is_discarded() || !tools.is_array()) return bad_request("tools must be a list of tools.", "tools");
  auto function_of = [](const pjson& tool) -> const pjson* {
    const pjson* f = get(tool, "function");
    return f && f->is_object() ? f : nullptr;
  };
  auto parameters_of = [](const pjson& f) -> pjson {
    const pjson* p = get(f, "parameters");
    // A tool without parameters is called with "{}", so its arguments are the empty object.
    if (!p || p->is_null() || (p->is_object() && p->empty())) return pjson{{"type", "object"}, {"properties", pjson::object()}};
    return *p;
  };

  if (mode == tool_choice_mode::function) {
    for (const pjson& tool : tools)
      if (const pjson* f = function_of(tool); f && get(*f, "name") && *get(*f, "name") == function_name)
        return std::optional<structured_output>(
            structured_output{structured_output::kind::json_schema, dump_json(parameters_of(*f))});
    return bad_request("Tool '" + std::string(function_name) + "' has not been passed in `tools`.", "tool_choice");
  }

  // required: a non-empty array of calls, each {"name": one tool's name, "parameters": that tool's schema};
  // every tool's $defs move to the top, where its $refs ("#/$defs/...") find them.
  pjson any_of = pjson::array();
  pjson defs = pjson::object();
  for (const pjson& tool : tools) {
    const pjson* f = function_of(tool);
    if (!f || !get(*f, "name")) continue;
    pjson parameters = parameters_of(*f);
    if (parameters.is_object() && parameters.contains("$defs")) {
      for (auto& [name, schema] : parameters["$defs"].items()) {
        if (defs.contains(name) && defs[name] != schema)
          return bad_request("Tool definition '" + name + "' has multiple schemas, which is not supported.", "tools");
        defs[name] = schema;
      }
      parameters.erase("$defs");
    }
    pjson props = pjson::object();
    props["name"] = pjson{{"type", "string"}, {"enum", pjson::array({*get(*f, "name")})}};
    props["parameters"] = std::move(parameters);
    pjson one = pjson::object();
    one["properties"] = std::move(props);
    one["required"] = pjson::array({"name", "parameters"});
    any_of.push_back(std::move(one));
  }
  pjson schema = pjson::object();
  schema["type"] = "array";
  schema["minItems"] = 1;
  schema["items"] = pjson{{"type", "object"}, {"anyOf", std::move(any_of)}};
  if (!defs.empty()) schema["$defs"] = std::move(defs);
  return std::optional<structured_output>(structured_output{structured_output::kind::json_schema, dump_json(schema)});
}

} // namespace troupe
