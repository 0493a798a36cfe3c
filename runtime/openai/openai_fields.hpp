#pragma once
// Internal to the OpenAI schema sources: reading decoded JSON fields with pydantic v2's lax rules
// (what FastAPI applies to vLLM's request models) and collecting errors the way pydantic reports them.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/openai/openai_error.hpp"
#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/python_json.hpp"

namespace troupe::openai_detail {

using loc_path = std::vector<std::string>;

struct checked_body {
  pjson value;
  std::optional<api_error> error;
};

loc_path operator+(loc_path loc, std::string_view segment);
loc_path operator+(loc_path loc, size_t index);

// vLLM's _summarize_error_input, as the Python str it returns: text cut at 200 characters,
// "<list of 3 items>" for containers, str(value) otherwise.
std::string summarize_input(const pjson& v);

// An error list being filled, as pydantic fills it while validating fields in definition order.
class issue_list {
public:
  void add(std::string type, loc_path loc, std::string msg, const pjson& input, std::string ctx = "");
  void add(validation_issue issue) { issues_.push_back(std::move(issue)); }
  bool empty() const { return issues_.empty(); }
  size_t size() const { return issues_.size(); }
  const std::vector<validation_issue>& all() const { return issues_; }
  void append(const issue_list& other);

private:
  std::vector<validation_issue> issues_;
};

// A VLLMValidationError raised by one of vLLM's model validators (mode="before"): pydantic reports it
// as a value_error at loc ("body",) whose input is the whole body.
validation_issue model_validator_error(std::string_view message, std::optional<std::string> parameter,
                                       std::optional<std::string> value_str, const pjson& body,
                                       loc_path loc = {"body"});

// pydantic's lax coercions of one value. On failure they record pydantic's error and return nullopt.
std::optional<int64_t> to_int(const pjson& v, const loc_path& loc, issue_list& issues);
std::optional<double> to_float(const pjson& v, const loc_path& loc, issue_list& issues);
std::optional<bool> to_bool(const pjson& v, const loc_path& loc, issue_list& issues);
std::optional<std::string> to_str(const pjson& v, const loc_path& loc, issue_list& issues);
bool is_list(const pjson& v, const loc_path& loc, issue_list& issues);
bool is_dict(const pjson& v, const loc_path& loc, issue_list& issues);
// A nested pydantic model (FastAPI validates with from_attributes=True).
bool is_model(const pjson& v, const loc_path& loc, issue_list& issues);

// Whether v would pass the strict (exact-type) check, as pydantic's smart unions try first.
bool strict_int(const pjson& v);

// The fields of one JSON object. Three kinds of fields, as vLLM declares them:
//   optional  ("x: int | None = d"):  absent or null -> nullopt
//   defaulted ("x: bool = False"):    absent -> default; null -> type error
//   required  ("x: str"):             absent -> "Field required"
class object_fields {
public:
  object_fields(const pjson& object, loc_path prefix, issue_list& issues)
      : object_(object), prefix_(std::move(prefix)), issues_(issues) {}

  const pjson* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  bool has_value(std::string_view key) const;  // present and not null
  loc_path loc(std::string_view key) const { return prefix_ + key; }
  issue_list& issues() const { return issues_; }
  const pjson& object() const { return object_; }

  std::optional<int64_t> opt_int(std::string_view key);
  std::optional<double> opt_float(std::string_view key);
  std::optional<bool> opt_bool(std::string_view key);
  std::optional<std::string> opt_str(std::string_view key);

  int64_t int_or(std::string_view key, int64_t fallback);
  double float_or(std::string_view key, double fallback);
  bool bool_or(std::string_view key, bool fallback);

  std::optional<std::string> required_str(std::string_view key);
  // The value of a required field, or nullptr after recording "Field required".
  const pjson* required(std::string_view key);

  // int with ge/le bounds (pydantic's greater_than_equal / less_than_equal errors).
  std::optional<int64_t> opt_int_bounded(std::string_view key, std::optional<int64_t> ge, std::optional<int64_t> le);

  // list[int] | None, list[str] | None.
  std::optional<std::vector<int64_t>> opt_int_list(std::string_view key);
  std::optional<std::vector<std::string>> opt_str_list(std::string_view key);

  // str | list[str] | None (vLLM's StopParam): a single string becomes a list of one. A list of more
  // than max_items is pydantic's too_long (Field(max_length=...)), refused before its items are read.
  std::optional<std::vector<std::string>> opt_str_or_str_list(std::string_view key,
                                                              std::optional<size_t> max_items = std::nullopt);

  // dict[str, float] | None in key order.
  std::optional<std::vector<std::pair<std::string, double>>> opt_str_float_dict(std::string_view key);

  // dict[str, Any] | None as compact JSON text.
  std::optional<std::string> opt_dict_json(std::string_view key);

private:
  const pjson& object_;
  loc_path prefix_;
  issue_list& issues_;
};

// The body as FastAPI hands it to the request model: bytes Python cannot decode give
// body_parse_error(); invalid JSON, an empty body, or a body that is not an object give pydantic's
// error (json_invalid, missing, model_attributes_type) as a validation error.
checked_body decode_body(std::string_view body);

// ---- shared by the request kinds (openai_chat_request.cpp) ----

const pjson* get(const pjson& obj, std::string_view key);
bool truthy_key(const pjson& obj, std::string_view key);  // Python's bool(data.get(key))
bool is_number_like(const pjson& v);                       // isinstance(v, (int, float))
double number_of(const pjson& v);

// A field troupe cannot honour yet: a 400 naming it, rather than silently ignoring it.
api_error unsupported_field(std::string_view field);

// vLLM's model validators both request kinds have (mode="before": they see the raw body).
std::optional<validation_issue> check_cache_salt(const pjson& data);
std::optional<validation_issue> check_stream_options(const pjson& data);
std::optional<validation_issue> check_response_format(const pjson& data);
std::optional<validation_issue> check_structured_outputs_count(const pjson& data, bool chat);
// prompt_logprobs' value (after both kinds have checked that it is a number): not with stream, >= 0 or -1.
std::optional<validation_issue> check_prompt_logprobs(const pjson& data);

// The first field found over its work bound (openai_server_config). It is answered after pydantic's
// field errors and the model check, as vLLM answers its own bounds; the field is not copied.
struct bound_violation {
  std::optional<api_error> first;
  void add(api_error e) {
    if (!first) first = std::move(e);
  }
};

// Sampling fields both request kinds declare, read in vLLM's declaration order, each checked against
// its bound before it is copied.
void parse_penalties_and_bias(object_fields& f, openai_sampling_fields& s, const openai_server_config& server,
                              bound_violation& bounds);
void parse_seed_and_stop(object_fields& f, openai_sampling_fields& s, const openai_server_config& server,
                         bound_violation& bounds);
void parse_extra_sampling(object_fields& f, openai_sampling_fields& s, const openai_server_config& server,
                          bound_violation& bounds);

// n against server.max_n_sequences, and n × num_prompts (one sequence each) against it too. raw: the
// value the body sent for n (for the message: 1e20 is reported as Python's int of it), or nullptr.
std::optional<api_error> check_num_sequences(const pjson* raw, int64_t n, int64_t num_prompts,
                                             const openai_server_config& server);

std::optional<troupe::stream_options> parse_stream_options(object_fields& f);

// The first field troupe refuses when set (beam search, prompt logprobs, ...).
std::optional<api_error> refuse_unsupported(const pjson& data, bool chat);

// The body's structured-output constraint (openai_structured.cpp): response_format json_object/json_schema,
// structured_outputs, guided_json/regex/choice/grammar; more than one is a 400, and so is a spec that
// server.compile_structured refuses (naming the field). Without compile_structured the field is refused as
// unsupported. Sets `out` only when the body asks for a constraint.
std::optional<api_error> parse_structured_output(const pjson& data, const openai_server_config& server,
                                                 std::optional<structured_output>& out);

// Compact JSON text of a decoded value (key order kept).
std::string dump_json(const pjson& v);

} // namespace troupe::openai_detail
