// /v1/completions and /detokenize bodies: vLLM's CompletionRequest (completion/protocol.py), its model
// validators, the prompt union, and the serving checks before tokenization.

#include <algorithm>
#include <limits>

#include "runtime/openai/openai_fields.hpp"
#include "runtime/openai/openai_request.hpp"

namespace troupe {

using namespace openai_detail;

namespace {

// check_logprobs, the completions version (logprobs is an int here).
std::optional<validation_issue> check_completion_logprobs(const pjson& data) {
  const pjson* ids = get(data, "logprob_token_ids");
  if (ids && !ids->is_null() && ids->is_array()) {
    if (ids->empty())
      return model_validator_error("`logprob_token_ids` must not be an empty list.", "logprob_token_ids",
                                   std::nullopt, data);
    if (truthy_key(data, "use_beam_search"))
      return model_validator_error("`logprob_token_ids` is not supported with beam search.", "logprob_token_ids",
                                   std::nullopt, data);
    const pjson* max_tokens = get(data, "max_tokens");
    if (truthy_key(data, "echo") && max_tokens && is_number_like(*max_tokens) && number_of(*max_tokens) == 0)
      return model_validator_error(
          "`logprob_token_ids` is not supported when `echo=True` and `max_tokens=0` because no output tokens are "
          "generated.",
          "logprob_token_ids", std::nullopt, data);
    const pjson* logprobs = get(data, "logprobs");
    if (!logprobs || logprobs->is_null())
      return model_validator_error("when using `logprob_token_ids`, `logprobs` must be set.", "logprob_token_ids",
                                   std::nullopt, data);
  }
  for (const char* field : {"prompt_logprobs", "logprobs"}) {
    const pjson* v = get(data, field);
    if (v && !v->is_null() && !is_number_like(*v))
      return model_validator_error("`" + std::string(field) + "` must be an integer.", field, python_str(*v), data);
  }
  if (auto e = check_prompt_logprobs(data)) return e;
  if (const pjson* lp = get(data, "logprobs"); lp && !lp->is_null()) {
    double x = number_of(*lp);
    if (x < 0 && x != -1)
      return model_validator_error("`logprobs` must be a positive value or -1.", "logprobs", python_str(*lp), data);
  }
  return std::nullopt;
}

std::optional<validation_issue> check_prompt_given(const pjson& data) {
  const pjson* prompt = get(data, "prompt");
  const pjson* embeds = get(data, "prompt_embeds");
  bool prompt_empty = !prompt || prompt->is_null() || (prompt->is_string() && prompt->get_ref<const std::string&>().empty());
  bool embeds_empty = !embeds || embeds->is_null() || (embeds->is_array() && embeds->empty());
  if (prompt_empty && embeds_empty)
    return model_validator_error("Either prompt or prompt_embeds must be provided and non-empty.", "prompt",
                                 std::nullopt, data);
  return std::nullopt;
}

// One token id of list[Annotated[int, Field(ge=0)]]: strict (a JSON integer) or lax (pydantic's int).
std::optional<int64_t> token_id(const pjson& v, bool strict, const loc_path& loc, issue_list& issues) {
  std::optional<int64_t> x;
  if (strict) {
    if (!strict_int(v)) return std::nullopt;
    x = to_int(v, loc, issues);
  } else {
    x = to_int(v, loc, issues);
  }
  if (x && *x < 0) {
    issues.add("greater_than_equal", loc, "Input should be greater than or equal to 0", v, "{'ge': 0}");
    return std::nullopt;
  }
  return x;
}

// The token ids of one list, or nullopt (errors in issues) when an element does not fit.
std::optional<std::vector<int32_t>> token_list(const pjson& v, bool strict, const loc_path& loc, issue_list& issues) {
  if (!v.is_array()) {
    if (!strict) issues.add("list_type", loc, "Input should be a valid list", v);
    return std::nullopt;
  }
  std::vector<int32_t> ids;
  bool ok = true;
  for (size_t i = 0; i < v.size(); ++i) {
    auto x = token_id(v[i], strict, loc + i, issues);
    if (!x) {
      ok = false;
      continue;
    }
    ids.push_back(*x > std::numeric_limits<int32_t>::max() ? std::numeric_limits<int32_t>::max()
                                                            : static_cast<int32_t>(*x));
  }
  if (!ok) return std::nullopt;
  return ids;
}

// prompt: list[int] | list[list[int]] | str | list[str], as pydantic's smart union picks: the first
// member the value fits exactly, else the first it fits after lax coercion, else every member's errors.
std::optional<std::vector<completion_prompt>> parse_prompt(const pjson& v, const loc_path& loc, issue_list& issues) {
  const loc_path ints = loc + "list[constrained-int]";
  const loc_path lists = loc + "list[list[constrained-int]]";
  auto as_tokens = [](std::vector<int32_t> ids) {
    completion_prompt p;
    p.is_tokens = true;
    p.token_ids = std::move(ids);
    return p;
  };
  auto try_lists = [&](bool strict, issue_list& errs) -> std::optional<std::vector<completion_prompt>> {
    if (!v.is_array()) {
      if (!strict) errs.add("list_type", lists, "Input should be a valid list", v);
      return std::nullopt;
    }
    std::vector<completion_prompt> out;
    bool ok = true;
    for (size_t i = 0; i < v.size(); ++i) {
      auto ids = token_list(v[i], strict, lists + i, errs);
      if (!ids) {
        ok = false;
        if (strict) return std::nullopt;
        continue;
      }
      out.push_back(as_tokens(std::move(*ids)));
    }
    if (!ok) return std::nullopt;
    return out;
  };
  auto string_list = [&]() -> std::optional<std::vector<completion_prompt>> {
    if (!v.is_array()) return std::nullopt;
    std::vector<completion_prompt> out;
    for (const auto& item : v) {
      if (!item.is_string()) return std::nullopt;
      completion_prompt p;
      p.text = item.get<std::string>();
      out.push_back(std::move(p));
    }
    return out;
  };

  for (bool strict : {true, false}) {
    issue_list ignored;  // a failed attempt's errors; reported below only if every member fails
    if (auto ids = token_list(v, strict, ints, ignored)) return std::vector<completion_prompt>{as_tokens(std::move(*ids))};
    if (auto several = try_lists(strict, ignored)) return several;
    if (v.is_string()) {
      completion_prompt p;
      p.text = v.get<std::string>();
      return std::vector<completion_prompt>{std::move(p)};
    }
    if (auto texts = string_list()) return texts;
  }
  // Nothing fits: pydantic lists each member's errors in order.
  token_list(v, false, ints, issues);
  try_lists(false, issues);
  issues.add("string_type", loc + "str", "Input should be a valid string", v);
  if (!v.is_array()) {
    issues.add("list_type", loc + "list[str]", "Input should be a valid list", v);
  } else {
    for (size_t i = 0; i < v.size(); ++i)
      if (!v[i].is_string()) issues.add("string_type", loc + "list[str]" + i, "Input should be a valid string", v[i]);
  }
  return std::nullopt;
}

} // namespace

std::optional<api_error> check_model(const std::optional<std::string>& model, const openai_server_config& server) {
  // vLLM's _is_model_supported: no name (or an empty one) means the served model.
  if (!model || model->empty()) return std::nullopt;
  for (const auto& name : server.served_model_names)
    if (name == *model) return std::nullopt;
  return model_not_found(*model);
}

std::string response_model_name(const openai_server_config& server) {
  // vLLM reports its first served name whatever alias the request used.
  return server.served_model_names.empty() ? std::string() : server.served_model_names.front();
}

checked<completion_request> parse_completion_request(std::string_view body, const openai_server_config& server) {
  checked_body decoded = decode_body(body);
  if (decoded.error) return *decoded.error;
  const pjson& data = decoded.value;

  if (auto e = check_prompt_given(data)) return validation_error({*e});
  if (auto e = check_stream_options(data)) return validation_error({*e});
  if (auto e = check_completion_logprobs(data)) return validation_error({*e});
  if (auto e = check_structured_outputs_count(data, false)) return validation_error({*e});
  if (auto e = check_response_format(data)) return validation_error({*e});
  if (auto e = check_cache_salt(data)) return validation_error({*e});

  issue_list issues;
  object_fields f(data, {"body"}, issues);
  completion_request r;
  bound_violation bounds;
  r.model = f.opt_str("model");
  if (const pjson* prompt = f.find("prompt"); prompt && !prompt->is_null())
    if (auto prompts = parse_prompt(*prompt, f.loc("prompt"), issues)) r.prompts = std::move(*prompts);
  r.echo = f.opt_bool("echo").value_or(false);
  parse_penalties_and_bias(f, r.sampling, server, bounds);
  r.logprobs = f.opt_int("logprobs");
  const std::optional<int64_t> max_tokens = f.opt_int("max_tokens");
  r.max_tokens = max_tokens.value_or(16);  // normalize_null_max_tokens
  r.max_tokens_sent = max_tokens.has_value();
  r.n = f.int_or("n", 1);
  r.sampling.presence_penalty = f.opt_float("presence_penalty");
  parse_seed_and_stop(f, r.sampling, server, bounds);
  r.stream = f.opt_bool("stream").value_or(false);
  r.stream_options = parse_stream_options(f);
  std::optional<std::string> suffix = f.opt_str("suffix");
  r.sampling.temperature = f.opt_float("temperature");
  r.sampling.top_p = f.opt_float("top_p");
  r.user = f.opt_str("user");
  f.bool_or("use_beam_search", false);
  parse_extra_sampling(f, r.sampling, server, bounds);
  r.add_special_tokens = f.bool_or("add_special_tokens", true);
  if (const pjson* rf = f.find("response_format"); rf && !rf->is_null()) is_model(*rf, f.loc("response_format"), issues);
  r.priority = f.opt_int_bounded("priority", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())
                   .value_or(0);
  r.request_id = f.opt_str("request_id");
  r.cache_salt = f.opt_str("cache_salt");
  if (!issues.empty()) return validation_error(issues.all());

  if (auto e = check_model(r.model, server)) return *e;
  if (bounds.first) return *bounds.first;
  if (auto e = check_num_sequences(get(data, "n"), r.n, static_cast<int64_t>(r.prompts.size()), server)) return *e;
  if (suffix) return bad_request("suffix is not currently supported");
  if (auto e = refuse_unsupported(data, false)) return *e;
  if (auto e = parse_structured_output(data, server, r.sampling.structured)) return *e;
  // echo with logprobs returns the prompt's logprobs too, which troupe does not compute.
  if (r.echo && r.logprobs) return unsupported_field("echo");
  for (const auto& p : r.prompts) {
    if (!p.is_tokens) continue;
    int32_t max_id = -1;
    for (int32_t id : p.token_ids) max_id = std::max(max_id, id);
    if (max_id >= server.vocab_size) return bad_request("Token id " + std::to_string(max_id) + " is out of vocabulary");
  }
  return r;
}

checked<detokenize_request> parse_detokenize_request(std::string_view body, const openai_server_config& server) {
  checked_body decoded = decode_body(body);
  if (decoded.error) return *decoded.error;
  issue_list issues;
  object_fields f(decoded.value, {"body"}, issues);
  detokenize_request r;
  r.model = f.opt_str("model");
  if (const pjson* tokens = f.required("tokens"); tokens && is_list(*tokens, f.loc("tokens"), issues)) {
    for (size_t i = 0; i < tokens->size(); ++i)
      if (auto x = to_int((*tokens)[i], f.loc("tokens") + i, issues))
        r.tokens.push_back(static_cast<int32_t>(std::clamp<int64_t>(*x, std::numeric_limits<int32_t>::min(),
                                                                    std::numeric_limits<int32_t>::max())));
  }
  if (!issues.empty()) return validation_error(issues.all());
  if (auto e = check_model(r.model, server)) return *e;
  return r;
}

} // namespace troupe
