#include "actors/wire_convert.hpp"

#include <algorithm>
#include <stdexcept>

#include "actors/gateway_request.hpp"
#include "runtime/structured/structured_output_names.hpp"

namespace troupe {

sampling_params params_of(const wire::job& j) {
  sampling_params p;
  p.max_tokens = j.max_tokens;
  p.min_tokens = j.min_tokens;
  p.temperature = j.temperature;
  p.top_p = j.top_p;
  p.top_k = j.top_k;
  p.min_p = j.min_p;
  p.repetition_penalty = j.repetition_penalty;
  p.presence_penalty = j.presence_penalty;
  p.frequency_penalty = j.frequency_penalty;
  if (j.has_seed) p.seed = j.seed;
  p.ignore_eos = j.ignore_eos;
  p.stop = j.stop;
  p.stop_token_ids = j.stop_token_ids;
  p.include_stop_str_in_output = j.include_stop_str_in_output;
  for (size_t i = 0; i < std::min(j.logit_bias_ids.size(), j.logit_bias_values.size()); ++i)
    p.logit_bias.emplace_back(j.logit_bias_ids[i], j.logit_bias_values[i]);
  if (j.num_logprobs >= 0) p.logprobs = j.num_logprobs;
  if (!j.structured_kind.empty()) {
    const auto kind = structured_kind_named(j.structured_kind);
    if (!kind)
      throw std::invalid_argument("structured_kind must be one of json_object, json_schema, regex, choice or grammar, got '" +
                                  j.structured_kind + "'");
    p.structured = structured_output{*kind, j.structured_text};
  }
  return p;
}

wire::job job_of(const engine_request& r) {
  wire::job j;
  const sampling_params& p = r.params;
  j.prompt_token_ids = r.prompt_ids;
  j.max_tokens = p.max_tokens;
  j.min_tokens = p.min_tokens;
  j.temperature = p.temperature;
  j.top_p = p.top_p;
  j.top_k = p.top_k;
  j.min_p = p.min_p;
  j.repetition_penalty = p.repetition_penalty;
  j.presence_penalty = p.presence_penalty;
  j.frequency_penalty = p.frequency_penalty;
  j.has_seed = p.seed.has_value();
  j.seed = p.seed.value_or(0);
  j.ignore_eos = p.ignore_eos;
  j.stop = p.stop;
  j.stop_token_ids = p.stop_token_ids;
  j.include_stop_str_in_output = p.include_stop_str_in_output;
  for (const auto& [token, bias] : p.logit_bias) {
    j.logit_bias_ids.push_back(token);
    j.logit_bias_values.push_back(bias);
  }
  j.num_logprobs = p.logprobs.value_or(-1);
  if (p.structured) {
    j.structured_kind = std::string(structured_kind_name(p.structured->type));
    j.structured_text = p.structured->text;
  }
  j.priority = r.priority;
  j.cache_salt = r.cache_salt;
  return j;
}

wire::output wire_output_of(uint64_t job_id, const request_output& o) {
  wire::output w;
  w.job_id = job_id;
  w.token_ids = o.new_token_ids;
  w.text = o.text;
  w.finished = o.finished;
  if (o.finished) w.finish_reason = finish_reason_of(o);
  w.error = o.error;
  w.num_prompt_tokens = o.num_prompt_tokens;
  w.num_cached_tokens = o.num_cached_tokens;
  w.stop_string = o.stop_string;
  w.has_stop_token = o.stop_token.has_value();
  w.stop_token = o.stop_token.value_or(0);
  if (o.logprobs) {
    w.has_logprobs = true;
    w.logprob = o.logprobs->logprob;
    w.top_ids = o.logprobs->top_ids;
    w.top_logprobs = o.logprobs->top_logprobs;
  }
  return w;
}

request_output request_output_of(const wire::output& o, request_id id) {
  request_output r;
  r.id = id;
  r.new_token_ids = o.token_ids;
  r.text = o.text;
  r.finished = o.finished;
  if (o.finished) {
    r.reason = o.finish_reason == "length" ? finish_reason::length : finish_reason::stop;
    r.aborted = o.finish_reason == "abort";
    r.error = o.error;
    if (o.finish_reason == "error" && r.error.empty()) r.error = "the worker failed the request";
  }
  r.stop_string = o.stop_string;
  if (o.has_stop_token) r.stop_token = o.stop_token;
  if (o.has_logprobs) r.logprobs = sampled_logprobs{o.logprob, o.top_ids, o.top_logprobs};
  r.num_prompt_tokens = o.num_prompt_tokens;
  r.num_cached_tokens = o.num_cached_tokens;
  return r;
}

} // namespace troupe
