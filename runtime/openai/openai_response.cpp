#include "runtime/openai/openai_response.hpp"

#include <algorithm>
#include <random>

#include "runtime/engine/engine_core.hpp"
#include "runtime/openai/json_writer.hpp"
#include "runtime/openai/python_repr.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe {

namespace {

// vLLM clamps -inf (and anything below) so the JSON stays finite.
double clamp_logprob(double v) { return std::max(v, -9999.0); }

void write_stop_reason(json_writer& w, const stop_reason& s) {
  if (const auto* text = std::get_if<std::string>(&s))
    w.value(*text);
  else if (const auto* token = std::get_if<int32_t>(&s))
    w.value(*token);
  else
    w.null();
}

void write_finish_reason(json_writer& w, const std::string& reason) {
  if (reason.empty())
    w.null();
  else
    w.value(reason);
}

// UsageInfo's fields in declaration order: prompt_tokens, total_tokens, completion_tokens, details.
// with_null_details: model_dump() writes prompt_tokens_details even when null.
void write_usage(json_writer& w, const usage_info& u, bool with_null_details) {
  w.begin_object();
  w.key("prompt_tokens").value(u.prompt_tokens);
  w.key("total_tokens").value(u.prompt_tokens + u.completion_tokens);
  w.key("completion_tokens").value(u.completion_tokens);
  if (u.cached_tokens) {
    w.key("prompt_tokens_details").begin_object().key("cached_tokens").value(*u.cached_tokens).end_object();
  } else if (with_null_details) {
    w.key("prompt_tokens_details").null();
  }
  w.end_object();
}

void write_header(json_writer& w, const response_header& h, std::string_view object) {
  w.key("id").value(h.id);
  w.key("object").value(object);
  w.key("created").value(h.created);
  w.key("model").value(h.model);
}

// The last chunk of a stream with stream_options.include_usage: no choices, the request's usage.
std::string usage_chunk(const response_header& header, const usage_info& usage, const char* object) {
  json_writer w(float_style::pydantic);
  w.begin_object();
  write_header(w, header, object);
  w.key("choices").begin_array().end_array();
  w.key("usage");
  write_usage(w, usage, false);
  w.end_object();
  return w.take();
}

// list(token.encode("utf-8", errors="replace")) of the token as Python holds it.
void write_bytes(json_writer& w, const std::string& token) {
  w.begin_array();
  for (unsigned char c : token) w.value(static_cast<int64_t>(c));
  w.end_array();
}

size_t alternatives_shown(const token_logprobs& t, int32_t top_logprobs) {
  if (top_logprobs == -1) return t.top.size();
  return std::min(t.top.size(), static_cast<size_t>(std::max(top_logprobs, 0)));
}

// ChatCompletionLogProbs. only_set: a stream chunk (exclude_unset) omits what vLLM left unset for a
// token whose logprob is unknown.
void write_chat_logprobs(json_writer& w, const std::vector<token_logprobs>& tokens, int32_t top_logprobs,
                         bool only_set) {
  w.begin_object().key("content").begin_array();
  for (const auto& t : tokens) {
    const std::string token = utf8::make_valid(t.token);
    w.begin_object();
    w.key("token").value(token);
    if (t.logprob || !only_set) w.key("logprob").value(t.logprob ? clamp_logprob(*t.logprob) : -9999.0);
    w.key("bytes");
    write_bytes(w, token);
    if (t.logprob || !only_set) {
      w.key("top_logprobs").begin_array();
      if (t.logprob) {
        for (size_t i = 0; i < alternatives_shown(t, top_logprobs); ++i) {
          const std::string alt = utf8::make_valid(t.top[i].token);
          w.begin_object();
          w.key("token").value(alt);
          w.key("logprob").value(clamp_logprob(t.top[i].logprob));
          w.key("bytes");
          write_bytes(w, alt);
          w.end_object();
        }
      }
      w.end_array();
    }
    w.end_object();
  }
  w.end_array().end_object();
}

void write_completion_logprobs(json_writer& w, const completion_logprobs& lp) {
  w.begin_object();
  w.key("text_offset").begin_array();
  for (int64_t o : lp.text_offset) w.value(o);
  w.end_array();
  w.key("token_logprobs").begin_array();
  for (const auto& l : lp.token_logprobs) {
    if (l)
      w.value(*l);
    else
      w.null();
  }
  w.end_array();
  w.key("tokens").begin_array();
  for (const auto& t : lp.tokens) w.value(t);
  w.end_array();
  w.key("top_logprobs").begin_array();
  for (const auto& top : lp.top_logprobs) {
    if (!top) {
      w.null();
      continue;
    }
    w.begin_object();
    for (const auto& alt : *top) w.key(alt.token).value(alt.logprob);
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

} // namespace

std::string random_uuid_hex() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char hex[] = "0123456789abcdef";
  std::string out(32, '0');
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) {
    out[static_cast<size_t>(i)] = hex[(a >> (i * 4)) & 0xF];
    out[static_cast<size_t>(16 + i)] = hex[(b >> (i * 4)) & 0xF];
  }
  // uuid4: version nibble 4, variant bits 10xx.
  out[12] = '4';
  out[16] = hex[8 + ((b >> 2) & 0x3)];
  return out;
}

stop_reason stop_reason_of(const request_output& output) {
  if (output.stop_token) return *output.stop_token;
  if (!output.stop_string.empty()) return output.stop_string;
  return std::monostate{};
}

std::string chat_completion_body(const response_header& header, std::span<const chat_choice> choices,
                                 const usage_info& usage) {
  json_writer w(float_style::python);
  w.begin_object();
  write_header(w, header, "chat.completion");
  w.key("choices").begin_array();
  for (const auto& c : choices) {
    w.begin_object();
    w.key("index").value(c.index);
    w.key("message").begin_object();
    w.key("role").value("assistant");
    w.key("content");
    if (c.content)
      w.value(*c.content);
    else
      w.null();
    w.key("refusal").null();
    w.key("annotations").null();
    w.key("audio").null();
    w.key("function_call").null();
    w.key("tool_calls").begin_array();
    for (const tool_call& t : c.tool_calls) {
      w.begin_object();
      w.key("id").value(t.id);
      w.key("type").value("function");
      w.key("function").begin_object().key("name").value(t.name).key("arguments").value(t.arguments).end_object();
      w.end_object();
    }
    w.end_array();
    w.key("reasoning_content");
    if (c.reasoning)
      w.value(*c.reasoning);
    else
      w.null();
    w.end_object();
    w.key("logprobs");
    if (c.logprobs)
      write_chat_logprobs(w, *c.logprobs, c.top_logprobs, false);
    else
      w.null();
    w.key("finish_reason");
    write_finish_reason(w, c.finish_reason);
    w.key("stop_reason");
    write_stop_reason(w, c.stop_reason);
    w.key("token_ids").null();
    w.end_object();
  }
  w.end_array();
  w.key("service_tier").null();
  w.key("system_fingerprint").null();
  w.key("usage");
  write_usage(w, usage, true);
  w.key("prompt_logprobs").null();
  w.key("prompt_token_ids").null();
  w.key("kv_transfer_params").null();
  w.end_object();
  return w.take();
}

std::string chat_chunk(const response_header& header, const chat_delta& d, const usage_info* usage) {
  json_writer w(float_style::pydantic);
  w.begin_object();
  write_header(w, header, "chat.completion.chunk");
  w.key("choices").begin_array().begin_object();
  w.key("index").value(d.index);
  w.key("delta").begin_object();
  if (d.role) w.key("role").value("assistant");
  if (d.content) w.key("content").value(*d.content);
  if (d.reasoning) w.key("reasoning_content").value(*d.reasoning);
  if (!d.tool_calls.empty()) {
    // DeltaToolCall's fields in declaration order (id, type, index, function), only those set.
    w.key("tool_calls").begin_array();
    for (const tool_call_delta& t : d.tool_calls) {
      w.begin_object();
      if (!t.id.empty()) w.key("id").value(t.id).key("type").value("function");
      w.key("index").value(t.index);
      w.key("function").begin_object();
      if (t.name) w.key("name").value(*t.name);
      if (t.arguments) w.key("arguments").value(*t.arguments);
      w.end_object();
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
  w.key("logprobs");
  if (d.logprobs)
    write_chat_logprobs(w, *d.logprobs, d.top_logprobs, true);
  else
    w.null();
  w.key("finish_reason");
  write_finish_reason(w, d.finish_reason);
  if (!d.finish_reason.empty()) {
    w.key("stop_reason");
    write_stop_reason(w, d.stop_reason);
  }
  w.end_object().end_array();
  if (usage) {
    w.key("usage");
    write_usage(w, *usage, false);
  }
  w.end_object();
  return w.take();
}

std::string chat_usage_chunk(const response_header& header, const usage_info& usage) {
  return usage_chunk(header, usage, "chat.completion.chunk");
}

completion_logprobs make_completion_logprobs(std::span<const token_logprobs> tokens, int32_t num_logprobs,
                                             int64_t initial_text_offset) {
  completion_logprobs lp;
  int64_t last_token_len = 0;
  for (const auto& t : tokens) {
    const std::string token = utf8::make_valid(t.token);
    lp.tokens.push_back(token);
    if (t.logprob) {
      lp.token_logprobs.push_back(clamp_logprob(*t.logprob));
      // The first num_logprobs + 1 alternatives, as a dict keyed by text: an equal text keeps its
      // first place and takes the later value.
      std::vector<logprob_alternative> top;
      for (size_t i = 0; i < t.top.size() && static_cast<int64_t>(i) <= num_logprobs; ++i) {
        logprob_alternative alt{utf8::make_valid(t.top[i].token), clamp_logprob(t.top[i].logprob)};
        auto it = std::find_if(top.begin(), top.end(), [&](const auto& a) { return a.token == alt.token; });
        if (it != top.end())
          it->logprob = alt.logprob;
        else
          top.push_back(std::move(alt));
      }
      lp.top_logprobs.push_back(std::move(top));
    } else {
      lp.token_logprobs.push_back(std::nullopt);
      lp.top_logprobs.push_back(std::nullopt);
    }
    lp.text_offset.push_back(lp.text_offset.empty() ? initial_text_offset : lp.text_offset.back() + last_token_len);
    last_token_len = python_len(token);
  }
  return lp;
}

std::string completion_body(const response_header& header, std::span<const completion_choice> choices,
                            const usage_info& usage) {
  json_writer w(float_style::python);
  w.begin_object();
  write_header(w, header, "text_completion");
  w.key("choices").begin_array();
  for (const auto& c : choices) {
    w.begin_object();
    w.key("index").value(c.index);
    w.key("text").value(c.text);
    w.key("logprobs");
    if (c.logprobs)
      write_completion_logprobs(w, *c.logprobs);
    else
      w.null();
    w.key("finish_reason");
    write_finish_reason(w, c.finish_reason);
    w.key("stop_reason");
    write_stop_reason(w, c.stop_reason);
    w.key("token_ids").null();
    w.key("prompt_logprobs").null();
    w.key("prompt_token_ids").null();
    w.end_object();
  }
  w.end_array();
  w.key("service_tier").null();
  w.key("system_fingerprint").null();
  w.key("usage");
  write_usage(w, usage, true);
  w.key("kv_transfer_params").null();
  w.end_object();
  return w.take();
}

std::string completion_chunk(const response_header& header, const completion_choice& c, const usage_info* usage) {
  json_writer w(float_style::pydantic);
  w.begin_object();
  write_header(w, header, "text_completion");
  w.key("choices").begin_array().begin_object();
  w.key("index").value(c.index);
  w.key("text").value(c.text);
  w.key("logprobs");
  if (c.logprobs)
    write_completion_logprobs(w, *c.logprobs);
  else
    w.null();
  w.key("finish_reason");
  write_finish_reason(w, c.finish_reason);
  w.key("stop_reason");
  write_stop_reason(w, c.stop_reason);
  w.key("prompt_token_ids").null();
  w.key("token_ids").null();
  w.end_object().end_array();
  w.key("usage");
  if (usage)
    write_usage(w, *usage, true);
  else
    w.null();
  w.end_object();
  return w.take();
}

std::string completion_usage_chunk(const response_header& header, const usage_info& usage) {
  return usage_chunk(header, usage, "text_completion");
}

std::string sse_event(std::string_view json) {
  std::string out;
  out.reserve(json.size() + 8);
  out += "data: ";
  out += json;
  out += "\n\n";
  return out;
}

std::string sse_done() { return "data: [DONE]\n\n"; }

std::string sse_error(const api_error& error) { return sse_event(error_body(error)); }

std::string models_body(std::span<const model_card> models) {
  json_writer w;
  w.begin_object();
  w.key("object").value("list");
  w.key("data").begin_array();
  for (const auto& m : models) {
    w.begin_object();
    w.key("id").value(m.id);
    w.key("object").value("model");
    w.key("created").value(m.created);
    w.key("owned_by").value("troupe");
    w.key("root").value(m.root);
    w.key("parent").null();
    w.key("max_model_len").value(m.max_model_len);
    w.key("permission").begin_array().begin_object();
    w.key("id").value(m.permission_id);
    w.key("object").value("model_permission");
    w.key("created").value(m.created);
    w.key("allow_create_engine").value(false);
    w.key("allow_sampling").value(true);
    w.key("allow_logprobs").value(true);
    w.key("allow_search_indices").value(false);
    w.key("allow_view").value(true);
    w.key("allow_fine_tuning").value(false);
    w.key("organization").value("*");
    w.key("group").null();
    w.key("is_blocking").value(false);
    w.end_object().end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.take();
}

std::string tokenize_body(std::span<const int32_t> tokens, int32_t max_model_len,
                          const std::vector<std::string>* token_strs) {
  json_writer w;
  w.begin_object();
  w.key("count").value(static_cast<int64_t>(tokens.size()));
  w.key("max_model_len").value(max_model_len);
  w.key("tokens").begin_array();
  for (int32_t t : tokens) w.value(t);
  w.end_array();
  w.key("token_strs");
  if (token_strs) {
    w.begin_array();
    for (const auto& s : *token_strs) w.value(s);
    w.end_array();
  } else {
    w.null();
  }
  w.end_object();
  return w.take();
}

std::string detokenize_body(std::string_view prompt) {
  json_writer w;
  w.begin_object().key("prompt").value(prompt).end_object();
  return w.take();
}

std::string version_body(std::string_view version) {
  json_writer w;
  w.begin_object().key("version").value(version).end_object();
  return w.take();
}

} // namespace troupe
