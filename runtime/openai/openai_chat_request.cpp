// /v1/chat/completions and /tokenize bodies: vLLM's ChatCompletionRequest (chat_completion/protocol.py)
// and TokenizeChatRequest, their model validators, and the serving checks before the template renders.

#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/openai/openai_fields.hpp"
#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/python_repr.hpp"

namespace troupe {

using namespace openai_detail;

namespace openai_detail {

// A field troupe cannot honour yet: refused by name rather than ignored.
api_error unsupported_field(std::string_view field) {
  return bad_request("`" + std::string(field) + "` is not supported by this server.", std::string(field));
}

const pjson* get(const pjson& obj, std::string_view key) {
  auto it = obj.find(std::string(key));
  return it == obj.end() ? nullptr : &*it;
}

bool truthy_key(const pjson& obj, std::string_view key) {
  const pjson* v = get(obj, key);
  return v && python_truthy(*v);
}

bool is_number_like(const pjson& v) { return v.is_number() || v.is_boolean(); }

double number_of(const pjson& v) { return v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>(); }

// ---- model validators shared by chat and completions (generate/base/protocol.py) ----

std::optional<validation_issue> check_cache_salt(const pjson& data) {
  const pjson* salt = get(data, "cache_salt");
  if (!salt || salt->is_null()) return std::nullopt;
  if (!salt->is_string() || salt->get_ref<const std::string&>().empty())
    return model_validator_error("Parameter 'cache_salt' must be a non-empty string if provided.", "cache_salt",
                                 std::nullopt, data);
  const auto& s = salt->get_ref<const std::string&>();
  if (python_len(s) > 128 || s.find_first_of(std::string_view("@/\\\0", 4)) != std::string::npos)
    return model_validator_error(
        "Parameter 'cache_salt' must be at most 128 characters and must not contain '@', '/', '\\\\', or NUL.",
        "cache_salt", std::nullopt, data);
  return std::nullopt;
}

std::optional<validation_issue> check_stream_options(const pjson& data) {
  if (truthy_key(data, "stream_options") && !truthy_key(data, "stream"))
    return model_validator_error("Stream options can only be defined when `stream=True`.", "stream_options",
                                 std::nullopt, data);
  return std::nullopt;
}

std::optional<validation_issue> check_response_format(const pjson& data) {
  const pjson* rf = get(data, "response_format");
  if (!rf || rf->is_null() || !rf->is_object()) return std::nullopt;
  const pjson* type = get(*rf, "type");
  if (type && *type == "json_schema") {
    const pjson* schema = get(*rf, "json_schema");
    if (!schema || schema->is_null())
      return model_validator_error(
          "When response_format type is 'json_schema', the 'json_schema' field must be provided.", "response_format",
          std::nullopt, data);
  }
  return std::nullopt;
}

std::optional<validation_issue> check_structured_outputs_count(const pjson& data, bool chat) {
  const pjson* so = get(data, "structured_outputs");
  if (!so || so->is_null() || !so->is_object()) return std::nullopt;
  int count = 0;
  for (const char* k : {"json", "regex", "choice"}) {
    const pjson* v = get(*so, k);
    count += v && !v->is_null();
  }
  if (count > 1)
    return model_validator_error(
        "You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice').",
        chat ? std::nullopt : std::optional<std::string>("structured_outputs"), std::nullopt, data);
  if (chat && count > 0) {
    const pjson* tc = get(data, "tool_choice");
    bool plain = !tc || (*tc == "none" || *tc == "auto" || *tc == "required");
    if (!plain)
      return model_validator_error("You can only either use constraints for structured outputs or tools, not both.",
                                   std::nullopt, std::nullopt, data);
  }
  return std::nullopt;
}

std::optional<validation_issue> check_prompt_logprobs(const pjson& data) {
  if (const pjson* pl = get(data, "prompt_logprobs"); pl && !pl->is_null()) {
    double x = number_of(*pl);
    if (truthy_key(data, "stream") && (x > 0 || x == -1))
      return model_validator_error("`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs",
                                   std::nullopt, data);
    if (x < 0 && x != -1)
      return model_validator_error("`prompt_logprobs` must be a positive value or -1.", "prompt_logprobs",
                                   python_str(*pl), data);
  }
  return std::nullopt;
}

} // namespace openai_detail

namespace {

// logprob_token_ids, then `<field>` must be an integer, then the range checks (chat's version).
std::optional<validation_issue> check_chat_logprobs(const pjson& data) {
  const pjson* ids = get(data, "logprob_token_ids");
  if (ids && !ids->is_null() && ids->is_array()) {
    if (ids->empty())
      return model_validator_error("`logprob_token_ids` must not be an empty list.", "logprob_token_ids",
                                   std::nullopt, data);
    if (truthy_key(data, "use_beam_search"))
      return model_validator_error("`logprob_token_ids` is not supported with beam search.", "logprob_token_ids",
                                   std::nullopt, data);
    if (!truthy_key(data, "logprobs"))
      return model_validator_error("when using `logprob_token_ids`, `logprobs` must be set to true.",
                                   "logprob_token_ids", std::nullopt, data);
  }
  for (const char* field : {"prompt_logprobs", "top_logprobs"}) {
    const pjson* v = get(data, field);
    if (v && !v->is_null() && !is_number_like(*v))
      return model_validator_error("`" + std::string(field) + "` must be an integer.", field, python_str(*v), data);
  }
  if (auto e = check_prompt_logprobs(data)) return e;
  if (const pjson* tl = get(data, "top_logprobs"); tl && !tl->is_null()) {
    double x = number_of(*tl);
    if (x < 0 && x != -1)
      return model_validator_error("`top_logprobs` must be a positive value or -1.", "top_logprobs", python_str(*tl),
                                   data);
    if ((x == -1 || x > 0) && !truthy_key(data, "logprobs"))
      return model_validator_error("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs",
                                   std::nullopt, data);
  }
  return std::nullopt;
}

const char* const correct_tool_choice_usage = "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`";

// check_tool_usage. Also tells what tool_choice is after vLLM's defaulting ("auto" when tools are
// given and tool_choice is not).
std::optional<validation_issue> check_tool_usage(const pjson& data, pjson& effective_choice) {
  const pjson* tools = get(data, "tools");
  if (tools && tools->is_array() && tools->empty())
    return model_validator_error(
        "`tools` must not be an empty array. Either provide at least one tool or omit the field entirely.", "tools",
        std::nullopt, data);
  const pjson* given = get(data, "tool_choice");
  bool has_choice = given != nullptr;
  if (given) {
    effective_choice = *given;
  } else if (tools && python_truthy(*tools)) {
    effective_choice = "auto";
    has_choice = true;
  } else {
    effective_choice = "none";
  }
  if (has_choice && effective_choice == "none") return std::nullopt;
  if (!has_choice || effective_choice.is_null()) return std::nullopt;
  if (!tools || tools->is_null())
    return model_validator_error("When using `tool_choice`, `tools` must be set.", "tool_choice", std::nullopt, data);
  if (!(effective_choice == "auto" || effective_choice == "required") && !effective_choice.is_object())
    return model_validator_error("Invalid value for `tool_choice`: " + python_str(effective_choice) +
                                     "! Only named tools, \"none\", \"auto\" or \"required\" are supported.",
                                 "tool_choice", std::nullopt, data);
  if (!effective_choice.is_object()) return std::nullopt;
  const pjson* function = get(effective_choice, "function");
  if (!function || !function->is_object())
    return model_validator_error("Invalid value for `function`: `" + (function ? python_str(*function) : "None") +
                                     "` in `tool_choice`! " + correct_tool_choice_usage,
                                 "tool_choice.function", std::nullopt, data);
  const pjson* name = get(*function, "name");
  if (!name)
    return model_validator_error(std::string("Expected field `name` in `function` in `tool_choice`! ") +
                                     correct_tool_choice_usage,
                                 "tool_choice.function.name", std::nullopt, data);
  if (!name->is_string() || name->get_ref<const std::string&>().empty())
    return model_validator_error("Invalid `name` in `function`: `" + python_str(*name) + "` in `tool_choice`! " +
                                     correct_tool_choice_usage,
                                 "tool_choice.function.name", std::nullopt, data);
  bool found = false;
  if (tools->is_array()) {
    for (const auto& tool : *tools) {
      const pjson* f = tool.is_object() ? get(tool, "function") : nullptr;
      const pjson* n = f && f->is_object() ? get(*f, "name") : nullptr;
      if (n && *n == *name) {
        found = true;
        break;
      }
    }
  }
  if (!found)
    return model_validator_error("The tool specified in `tool_choice` does not match any of the specified `tools`",
                                 "tool_choice", std::nullopt, data);
  return std::nullopt;
}

std::optional<validation_issue> check_generation_prompt(const pjson& data, loc_path loc = {"body"}) {
  if (truthy_key(data, "continue_final_message") && truthy_key(data, "add_generation_prompt"))
    return model_validator_error("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                                 std::nullopt, std::nullopt, data, std::move(loc));
  return std::nullopt;
}

// ---- messages ----

// A content part vLLM would route to a multimodal processor, which a text model refuses.
std::optional<api_error> refuse_part(std::string_view type) {
  static constexpr std::pair<std::string_view, std::string_view> modalities[] = {
      {"image_url", "image"}, {"image_embeds", "image"}, {"image_pil", "image"}, {"audio_url", "audio"},
      {"input_audio", "audio"}, {"audio_embeds", "audio"}, {"video_url", "video"}};
  for (const auto& [part, modality] : modalities)
    if (type == part) return bad_request("At most 0 " + std::string(modality) + "(s) may be provided in one prompt.");
  return bad_request("Unknown part type: " + std::string(type));
}

void parse_content_parts(const pjson& parts, const loc_path& loc, chat_message& msg, issue_list& issues,
                         std::optional<api_error>& deferred) {
  msg.content_is_list = true;
  for (size_t j = 0; j < parts.size(); ++j) {
    const pjson& part = parts[j];
    if (part.is_string()) {
      msg.content.push_back(part.get<std::string>());
      continue;
    }
    if (!is_dict(part, loc + j, issues)) continue;
    object_fields f(part, loc + j, issues);
    std::string type;
    if (const pjson* t = f.find("type"); t && t->is_string()) {
      type = t->get<std::string>();
    } else {
      // vLLM infers a part's type from its keys when "type" is missing.
      for (const char* k : {"text", "image_url", "image_embeds", "image_pil", "audio_url", "input_audio",
                            "audio_embeds", "video_url", "refusal"})
        if (f.has(k)) {
          type = k;
          break;
        }
    }
    if (type == "text" || type == "input_text" || type == "output_text") {
      if (auto text = f.required_str("text")) msg.content.push_back(*text);
    } else if (type == "refusal") {
      if (auto text = f.required_str("refusal")) msg.content.push_back(*text);
    } else if (!deferred) {
      deferred = refuse_part(type.empty() ? python_str(part) : type);
    }
  }
}

std::vector<chat_tool_call> parse_tool_calls(const pjson& v, const loc_path& loc, issue_list& issues) {
  std::vector<chat_tool_call> out;
  if (!is_list(v, loc, issues)) return out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!is_dict(v[i], loc + i, issues)) continue;
    object_fields f(v[i], loc + i, issues);
    chat_tool_call call;
    call.id = f.required_str("id").value_or("");
    if (const pjson* type = f.required("type"); type && *type != "function")
      issues.add("literal_error", f.loc("type"), "Input should be 'function'", *type, "{'expected': \"'function'\"}");
    if (const pjson* fn = f.required("function"); fn && is_dict(*fn, f.loc("function"), issues)) {
      object_fields ff(*fn, f.loc("function"), issues);
      call.name = ff.required_str("name").value_or("");
      call.arguments = ff.required_str("arguments").value_or("");
    }
    out.push_back(std::move(call));
  }
  return out;
}

std::vector<chat_message> parse_messages(const pjson& v, const loc_path& loc, issue_list& issues,
                                         std::optional<api_error>& deferred) {
  std::vector<chat_message> out;
  if (!is_list(v, loc, issues)) return out;
  for (size_t i = 0; i < v.size(); ++i) {
    const pjson& item = v[i];
    if (!is_dict(item, loc + i, issues)) continue;
    object_fields f(item, loc + i, issues);
    chat_message msg;
    msg.role = f.required_str("role").value_or("");
    if (const pjson* content = f.find("content"); content && !content->is_null()) {
      msg.has_content = true;
      if (content->is_string()) {
        msg.content.push_back(content->get<std::string>());
      } else if (content->is_array()) {
        parse_content_parts(*content, f.loc("content"), msg, issues, deferred);
      } else {
        issues.add("string_type", f.loc("content") + "str", "Input should be a valid string", *content);
        issues.add("list_type", f.loc("content") + "list[union]", "Input should be a valid list", *content);
      }
    }
    msg.name = f.opt_str("name");
    msg.tool_call_id = f.opt_str("tool_call_id");
    if (const pjson* calls = f.find("tool_calls"); calls && !calls->is_null())
      msg.tool_calls = parse_tool_calls(*calls, f.loc("tool_calls"), issues);
    // _normalize_messages_before: "reasoning_content" is the old name of "reasoning".
    msg.reasoning = f.opt_str("reasoning");
    if (!msg.reasoning) msg.reasoning = f.opt_str("reasoning_content");
    out.push_back(std::move(msg));
  }
  return out;
}

// tools: list[ChatCompletionToolsParam], re-serialized as vLLM's model_dump() gives them to the template.
std::string parse_tools(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (!is_list(v, loc, issues)) return "";
  pjson out = pjson::array();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!is_model(v[i], loc + i, issues)) continue;
    object_fields f(v[i], loc + i, issues);
    if (const pjson* type = f.find("type"); type && *type != "function")
      issues.add("literal_error", f.loc("type"), "Input should be 'function'", *type, "{'expected': \"'function'\"}");
    const pjson* fn = f.required("function");
    if (!fn || !is_model(*fn, f.loc("function"), issues)) continue;
    object_fields ff(*fn, f.loc("function"), issues);
    pjson function = pjson::object();
    function["name"] = ff.required_str("name").value_or("");
    auto description = ff.opt_str("description");
    function["description"] = description ? pjson(*description) : pjson(nullptr);
    const pjson* parameters = ff.find("parameters");
    if (parameters && !parameters->is_null() && !is_dict(*parameters, ff.loc("parameters"), issues)) continue;
    function["parameters"] = parameters ? *parameters : pjson(nullptr);
    // vLLM's models allow extra keys and model_dump() keeps them after the declared fields, in the client's
    // order: a template that prints whole tools shows them ("strict", "return", ...).
    for (const auto& [key, value] : fn->items()) {
      if (key == "name" || key == "description" || key == "parameters") continue;
      if (key == "strict") {
        if (auto strict = ff.opt_bool("strict")) function["strict"] = *strict;
        continue;
      }
      function[key] = value;
    }
    pjson tool{{"type", "function"}, {"function", std::move(function)}};
    for (const auto& [key, value] : v[i].items())
      if (key != "type" && key != "function") tool[key] = value;
    out.push_back(std::move(tool));
  }
  return dump_json(out);
}

} // namespace

namespace openai_detail {

std::optional<troupe::stream_options> parse_stream_options(object_fields& f) {
  const pjson* v = f.find("stream_options");
  if (!v || v->is_null()) return std::nullopt;
  if (!is_model(*v, f.loc("stream_options"), f.issues())) return std::nullopt;
  object_fields so(*v, f.loc("stream_options"), f.issues());
  troupe::stream_options out;
  out.include_usage = so.opt_bool("include_usage").value_or(false);
  out.continuous_usage_stats = so.opt_bool("continuous_usage_stats").value_or(false);
  return out;
}

namespace {

// A list or object field with more entries than the vocabulary has tokens: every entry past that
// repeats a token or names one outside the vocabulary, and each entry costs work on every step.
std::optional<api_error> over_vocabulary(const pjson* v, std::string_view field, const openai_server_config& server) {
  if (!v || !(v->is_object() || v->is_array()) || v->size() <= static_cast<size_t>(std::max(server.vocab_size, 0)))
    return std::nullopt;
  const std::string vocab = std::to_string(server.vocab_size);
  return bad_request(std::string(field) + " must have at most " + vocab + " entries (the vocabulary size), got " +
                         std::to_string(v->size()) + ". Send each token id once, and only ids below " + vocab + ".",
                     std::string(field));
}

} // namespace

// The sampling fields both request kinds declare, in vLLM's field order where it matters for the
// order of errors (pydantic reports them in declaration order).
void parse_penalties_and_bias(object_fields& f, openai_sampling_fields& s, const openai_server_config& server,
                              bound_violation& bounds) {
  s.frequency_penalty = f.opt_float("frequency_penalty");
  if (auto e = over_vocabulary(f.find("logit_bias"), "logit_bias", server)) bounds.add(std::move(*e));
  else if (auto bias = f.opt_str_float_dict("logit_bias")) s.logit_bias = std::move(*bias);
}

void parse_seed_and_stop(object_fields& f, openai_sampling_fields& s, const openai_server_config& server,
                         bound_violation& bounds) {
  s.seed = f.opt_int_bounded("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  if (auto stop = f.opt_str_or_str_list("stop", static_cast<size_t>(std::max(server.max_stop_strings, 0))))
    s.stop = std::move(*stop);
  for (size_t i = 0; i < s.stop.size(); ++i) {
    const int64_t chars = python_len(s.stop[i]);
    if (chars > server.max_stop_string_chars)
      bounds.add(bad_request("stop strings must be at most " + std::to_string(server.max_stop_string_chars) +
                                 " characters, got " + std::to_string(chars) + " (stop[" + std::to_string(i) +
                                 "]). Use a shorter stop string.",
                             "stop"));
  }
}

void parse_extra_sampling(object_fields& f, openai_sampling_fields& s, const openai_server_config& server,
                          bound_violation& bounds) {
  s.top_k = f.opt_int("top_k");
  s.min_p = f.opt_float("min_p");
  s.repetition_penalty = f.opt_float("repetition_penalty");
  f.float_or("length_penalty", 1.0);
  if (auto e = over_vocabulary(f.find("stop_token_ids"), "stop_token_ids", server)) bounds.add(std::move(*e));
  else if (auto ids = f.opt_int_list("stop_token_ids")) s.stop_token_ids = std::move(*ids);
  s.include_stop_str_in_output = f.bool_or("include_stop_str_in_output", false);
  s.ignore_eos = f.bool_or("ignore_eos", false);
  s.min_tokens = f.int_or("min_tokens", 0);
  s.skip_special_tokens = f.bool_or("skip_special_tokens", true);
  s.spaces_between_special_tokens = f.bool_or("spaces_between_special_tokens", true);
}

// Fields troupe refuses when set (both request kinds).
std::optional<api_error> refuse_unsupported(const pjson& data, bool /*chat*/) {
  if (truthy_key(data, "use_beam_search")) return unsupported_field("use_beam_search");
  // response_format and structured_outputs: parse_structured_output.
  for (const char* field : {"prompt_logprobs", "logprob_token_ids", "allowed_token_ids",
                            "truncate_prompt_tokens", "thinking_token_budget", "repetition_detection",
                            "prompt_embeds"}) {
    const pjson* v = get(data, field);
    if (v && !v->is_null()) return unsupported_field(field);
  }
  if (const pjson* bad = get(data, "bad_words"); bad && python_truthy(*bad)) return unsupported_field("bad_words");
  if (truthy_key(data, "return_token_ids")) return unsupported_field("return_token_ids");
  if (truthy_key(data, "return_tokens_as_token_ids")) return unsupported_field("return_tokens_as_token_ids");
  return std::nullopt;
}

} // namespace openai_detail

namespace {

// vLLM's _validate_chat_template: a request's own template (chat_template, or chat_template_kwargs'
// chat_template, which transformers would take over it) needs --trust-request-chat-template. With it,
// the kwargs' template becomes the request's.
std::optional<api_error> check_request_chat_template(std::optional<std::string>& chat_template, const pjson* kwargs,
                                                     const openai_server_config& server) {
  const pjson* in_kwargs = kwargs && kwargs->is_object() ? get(*kwargs, "chat_template") : nullptr;
  if (in_kwargs && in_kwargs->is_null()) in_kwargs = nullptr;
  if (!chat_template && !in_kwargs) return std::nullopt;
  if (!server.trust_request_chat_template)
    return bad_request(
        "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with "
        "untrusted chat template.");
  if (in_kwargs) {
    if (!in_kwargs->is_string()) return bad_request("chat_template_kwargs.chat_template must be a string");
    chat_template = in_kwargs->get<std::string>();
  }
  return std::nullopt;
}

// tool_choice "required" or a named function: the output is constrained to the call's JSON, as vLLM does.
// The tool's schema replaces any response_format / guided_* constraint the request also carries (vLLM sets
// structured_outputs.json from the tools over them: a forced call leaves no other reply to constrain); those
// fields were still checked above, as vLLM checks them.
std::optional<api_error> constrain_to_tool_call(chat_request& r, const openai_server_config& server) {
  auto spec = tool_choice_structured_output(r.tools_json, r.tool_choice, r.tool_choice_function);
  if (!spec) return spec.error();
  std::optional<structured_output>& constraint = spec.value();
  try {
    server.compile_structured(*constraint);
  } catch (const std::invalid_argument& e) {
    return bad_request(std::string("tools: ") + e.what(), "tools");
  }
  r.sampling.structured = std::move(constraint);
  return std::nullopt;
}

} // namespace

checked<chat_request> parse_chat_request(std::string_view body, const openai_server_config& server) {
  checked_body decoded = decode_body(body);
  if (decoded.error) return *decoded.error;
  const pjson& data = decoded.value;

  // vLLM's model validators run before the fields are validated, last defined first; the first to
  // fail is the whole answer.
  pjson effective_choice;
  if (auto e = check_generation_prompt(data)) return validation_error({*e});
  if (auto e = check_tool_usage(data, effective_choice)) return validation_error({*e});
  if (auto e = check_structured_outputs_count(data, true)) return validation_error({*e});
  if (auto e = check_chat_logprobs(data)) return validation_error({*e});
  if (auto e = check_stream_options(data)) return validation_error({*e});
  if (auto e = check_response_format(data)) return validation_error({*e});
  if (auto e = check_cache_salt(data)) return validation_error({*e});

  issue_list issues;
  object_fields f(data, {"body"}, issues);
  chat_request r;
  std::optional<api_error> deferred;  // refused while rendering, after the model check
  bound_violation bounds;

  if (const pjson* messages = f.required("messages")) r.messages = parse_messages(*messages, f.loc("messages"), issues, deferred);
  r.model = f.opt_str("model");
  parse_penalties_and_bias(f, r.sampling, server, bounds);
  r.logprobs = f.opt_bool("logprobs").value_or(false);
  r.top_logprobs = f.opt_int("top_logprobs").value_or(0);
  r.max_tokens = f.opt_int("max_tokens");
  r.max_completion_tokens = f.opt_int("max_completion_tokens");
  r.n = f.opt_int("n");
  r.sampling.presence_penalty = f.opt_float("presence_penalty");
  if (const pjson* rf = f.find("response_format"); rf && !rf->is_null()) is_model(*rf, f.loc("response_format"), issues);
  parse_seed_and_stop(f, r.sampling, server, bounds);
  r.stream = f.opt_bool("stream").value_or(false);
  r.stream_options = parse_stream_options(f);
  r.sampling.temperature = f.opt_float("temperature");
  r.sampling.top_p = f.opt_float("top_p");
  if (const pjson* tools = f.find("tools"); tools && !tools->is_null())
    r.tools_json = parse_tools(*tools, f.loc("tools"), issues);
  if (effective_choice.is_string()) {
    const auto& c = effective_choice.get_ref<const std::string&>();
    r.tool_choice = c == "auto" ? tool_choice_mode::auto_ : c == "required" ? tool_choice_mode::required
                                                                             : tool_choice_mode::none;
  } else if (effective_choice.is_object()) {
    r.tool_choice = tool_choice_mode::function;
    r.tool_choice_function = effective_choice["function"]["name"].get<std::string>();
  }
  r.reasoning_effort = f.opt_str("reasoning_effort");
  r.include_reasoning = f.opt_bool("include_reasoning").value_or(true);
  r.parallel_tool_calls = f.opt_bool("parallel_tool_calls").value_or(true);
  r.user = f.opt_str("user");
  f.bool_or("use_beam_search", false);
  parse_extra_sampling(f, r.sampling, server, bounds);
  r.echo = f.bool_or("echo", false);
  r.add_generation_prompt = f.bool_or("add_generation_prompt", true);
  r.continue_final_message = f.bool_or("continue_final_message", false);
  r.add_special_tokens = f.bool_or("add_special_tokens", false);
  if (const pjson* docs = f.find("documents"); docs && !docs->is_null() && is_list(*docs, f.loc("documents"), issues))
    r.documents_json = dump_json(*docs);
  r.chat_template = f.opt_str("chat_template");
  if (auto kwargs = f.opt_dict_json("chat_template_kwargs")) r.chat_template_kwargs_json = *kwargs;
  r.priority = f.opt_int_bounded("priority", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())
                   .value_or(0);
  r.request_id = f.opt_str("request_id");
  r.cache_salt = f.opt_str("cache_salt");
  if (!issues.empty()) return validation_error(issues.all());

  if (auto e = check_model(r.model, server)) return *e;
  if (bounds.first) return *bounds.first;
  if (auto e = check_num_sequences(get(data, "n"), r.n.value_or(1), 1, server)) return *e;
  if (auto e = check_request_chat_template(r.chat_template, get(data, "chat_template_kwargs"), server)) return *e;
  if (r.tool_choice == tool_choice_mode::auto_ && !server.enable_auto_tool_choice)
    return bad_request("\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set");
  if (r.messages.empty()) return bad_request("[] is too short - 'messages'", "messages");
  if (deferred) return *deferred;
  const bool forced_call = r.tool_choice == tool_choice_mode::required || r.tool_choice == tool_choice_mode::function;
  if (forced_call && !server.compile_structured) return unsupported_field("tool_choice");
  if (auto e = refuse_unsupported(data, true)) return *e;
  if (auto e = parse_structured_output(data, server, r.sampling.structured)) return *e;
  if (forced_call)
    if (auto e = constrain_to_tool_call(r, server)) return *e;
  return r;
}

checked<std::string> render_messages_json(const std::vector<chat_message>& messages, content_format format) {
  pjson out = pjson::array();
  for (const auto& m : messages) {
    pjson msg = pjson::object();
    msg["role"] = m.role;
    if (format == content_format::openai) {
      pjson parts = pjson::array();
      for (const auto& text : m.content) parts.push_back(pjson{{"type", "text"}, {"text", text}});
      msg["content"] = std::move(parts);
    } else {
      std::string joined;
      for (size_t i = 0; i < m.content.size(); ++i) {
        if (i) joined += '\n';
        joined += m.content[i];
      }
      msg["content"] = std::move(joined);
    }
    if (m.role == "assistant") {
      if (m.tool_calls) {
        pjson calls = pjson::array();
        for (const auto& call : *m.tool_calls) {
          // Hugging Face templates expect the arguments as an object, so vLLM decodes them.
          pjson arguments = pjson::object();
          if (!call.arguments.empty()) {
            python_json_result parsed = parse_python_json(call.arguments);
            if (parsed.error) {
              if (parsed.error->unparsable) return bad_request("There was an error parsing the tool call arguments");
              return bad_request(python_json_error_text(call.arguments, *parsed.error));
            }
            arguments = std::move(parsed.value);
          }
          calls.push_back(pjson{{"id", call.id},
                                {"type", call.type},
                                {"function", pjson{{"name", call.name}, {"arguments", std::move(arguments)}}}});
        }
        msg["tool_calls"] = std::move(calls);
      }
      if (m.reasoning) {
        msg["reasoning"] = *m.reasoning;
        msg["reasoning_content"] = *m.reasoning;
      }
    } else if (m.role == "tool" && m.tool_call_id) {
      msg["tool_call_id"] = *m.tool_call_id;
    }
    if (m.name) msg["name"] = *m.name;
    out.push_back(std::move(msg));
  }
  return dump_json(out);
}

checked<tokenize_request> parse_tokenize_request(std::string_view body, const openai_server_config& server) {
  checked_body decoded = decode_body(body);
  if (decoded.error) return *decoded.error;
  const pjson& data = decoded.value;

  // vLLM's TokenizeRequest is a union: TokenizeCompletionRequest | TokenizeChatRequest. pydantic tries
  // both; when both fail it reports both branches' errors, each under its class name.
  issue_list completion_issues;
  tokenize_request completion;
  {
    object_fields f(data, {"body", "TokenizeCompletionRequest"}, completion_issues);
    completion.model = f.opt_str("model");
    completion.prompt = f.required_str("prompt").value_or("");
    completion.add_special_tokens = f.bool_or("add_special_tokens", true);
    completion.return_token_strs = f.opt_bool("return_token_strs").value_or(false);
  }
  issue_list chat_issues;
  tokenize_request chat;
  chat.is_chat = true;
  chat.add_special_tokens = false;
  std::optional<api_error> deferred;
  if (auto e = check_generation_prompt(data, {"body", "TokenizeChatRequest"})) {
    chat_issues.add(*e);
  } else {
    object_fields f(data, {"body", "TokenizeChatRequest"}, chat_issues);
    chat.model = f.opt_str("model");
    if (const pjson* messages = f.required("messages"))
      chat.messages = parse_messages(*messages, f.loc("messages"), chat_issues, deferred);
    chat.add_generation_prompt = f.bool_or("add_generation_prompt", true);
    chat.return_token_strs = f.opt_bool("return_token_strs").value_or(false);
    chat.continue_final_message = f.bool_or("continue_final_message", false);
    chat.add_special_tokens = f.bool_or("add_special_tokens", false);
    chat.chat_template = f.opt_str("chat_template");
    if (auto kwargs = f.opt_dict_json("chat_template_kwargs")) chat.chat_template_kwargs_json = *kwargs;
    if (const pjson* tools = f.find("tools"); tools && !tools->is_null())
      chat.tools_json = parse_tools(*tools, f.loc("tools"), chat_issues);
  }

  tokenize_request r;
  if (completion_issues.empty() && chat_issues.empty()) {
    // Both fit (a body with prompt and messages): pydantic's smart union keeps the one that sets more
    // of its own fields, the first on a tie.
    int completion_fields = 0, chat_fields = 0;
    for (const char* k : {"model", "prompt", "add_special_tokens", "return_token_strs"}) completion_fields += get(data, k) != nullptr;
    for (const char* k : {"model", "messages", "add_generation_prompt", "return_token_strs", "continue_final_message",
                          "add_special_tokens", "chat_template", "chat_template_kwargs", "mm_processor_kwargs", "tools"})
      chat_fields += get(data, k) != nullptr;
    r = chat_fields > completion_fields ? std::move(chat) : std::move(completion);
  } else if (completion_issues.empty()) {
    r = std::move(completion);
  } else if (chat_issues.empty()) {
    r = std::move(chat);
  } else {
    completion_issues.append(chat_issues);
    return validation_error(completion_issues.all());
  }
  if (auto e = check_model(r.model, server)) return *e;
  if (r.is_chat) {
    if (auto e = check_request_chat_template(r.chat_template, get(data, "chat_template_kwargs"), server)) return *e;
    if (deferred) return *deferred;
  }
  return r;
}

} // namespace troupe
