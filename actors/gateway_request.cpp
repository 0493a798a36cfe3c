#include "actors/gateway_request.hpp"

#include <chrono>
#include <random>

#include <nlohmann/json.hpp>

#include "actors/engine_impl.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

api_error bad_request(const std::string& message, const std::string& param = {}) {
  return api_error(400, "BadRequestError", message, param);
}

template <class T>
void read_field(const json& j, const char* key, T& out) {
  if (!j.contains(key) || j.at(key).is_null()) return;
  try {
    out = j.at(key).get<T>();
  } catch (const json::exception&) {
    throw bad_request(std::string("'") + key + "' has the wrong type: " + j.at(key).dump(), key);
  }
}

sampling_params parse_sampling(const json& j, bool chat) {
  sampling_params p;
  if (chat) read_field(j, "max_completion_tokens", p.max_tokens);
  read_field(j, "max_tokens", p.max_tokens);
  read_field(j, "temperature", p.temperature);
  read_field(j, "top_p", p.top_p);
  read_field(j, "top_k", p.top_k);
  read_field(j, "min_p", p.min_p);
  read_field(j, "presence_penalty", p.presence_penalty);
  read_field(j, "frequency_penalty", p.frequency_penalty);
  read_field(j, "repetition_penalty", p.repetition_penalty);
  read_field(j, "min_tokens", p.min_tokens);
  read_field(j, "ignore_eos", p.ignore_eos);
  read_field(j, "stop_token_ids", p.stop_token_ids);
  read_field(j, "include_stop_str_in_output", p.include_stop_str_in_output);
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) throw bad_request("'seed' must be an integer", "seed");
    p.seed = j["seed"].get<int64_t>();
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    if (j["stop"].is_string()) p.stop = {j["stop"].get<std::string>()};
    else read_field(j, "stop", p.stop);
  }
  return p;
}

} // namespace

completion_plan plan_completion(engine& e, const std::string& model_name, const std::string& body, bool chat,
                                int32_t max_tokens_limit) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw bad_request("The request body is not a JSON object");
  completion_plan plan;
  plan.chat = chat;
  plan.model = model_name;
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string() || j["model"].get<std::string>() != model_name)
      throw api_error(404, "NotFoundError", "The model `" + (j["model"].is_string() ? j["model"].get<std::string>() : j["model"].dump()) +
                                                "` does not exist.", "model");
  }
  read_field(j, "stream", plan.stream);
  if (j.contains("stream_options") && j["stream_options"].is_object())
    read_field(j["stream_options"], "include_usage", plan.include_usage);
  read_field(j, "n", plan.n);
  if (plan.n < 1) throw bad_request("n must be at least 1, got " + std::to_string(plan.n) + ".", "n");
  plan.id = random_id(chat ? "chatcmpl-" : "cmpl-");
  plan.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  std::vector<std::vector<int32_t>> prompts;
  if (chat) {
    throw bad_request("chat templates are not available yet", "messages");
  } else {
    if (!j.contains("prompt")) throw bad_request("'prompt' is required", "prompt");
    const json& p = j["prompt"];
    auto tokens_of = [&](const json& v) -> std::vector<int32_t> {
      if (v.is_string()) return e.encode(v.get<std::string>());
      if (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_number_integer(); }))
        return v.get<std::vector<int32_t>>();
      throw bad_request("'prompt' must be a string, a list of strings, a list of token ids or a list of such lists", "prompt");
    };
    if (p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array())) {
      for (const json& item : p) prompts.push_back(tokens_of(item));
    } else {
      prompts.push_back(tokens_of(p));
    }
  }
  sampling_params params = parse_sampling(j, chat);
  if (max_tokens_limit > 0) {
    const bool asked = j.contains("max_tokens") || j.contains("max_completion_tokens");
    if (asked && params.max_tokens > max_tokens_limit)
      throw bad_request("max_tokens must be at most " + std::to_string(max_tokens_limit) + " on this server, got " +
                            std::to_string(params.max_tokens),
                        "max_tokens");
    if (!asked) params.max_tokens = max_tokens_limit;
  }
  const int32_t vocab = static_cast<int32_t>(e.config().vocab_size);
  if (std::string invalid = params.validate(vocab); !invalid.empty()) throw bad_request(invalid);
  const int64_t max_len = e.max_model_len();
  for (const auto& prompt : prompts) {
    const int64_t total = static_cast<int64_t>(prompt.size()) + params.max_tokens;
    if (static_cast<int64_t>(prompt.size()) >= max_len || total > max_len)
      throw bad_request("This model's maximum context length is " + std::to_string(max_len) +
                        " tokens. However, you requested " + std::to_string(total) + " tokens (" +
                        std::to_string(prompt.size()) + " in the messages, " + std::to_string(params.max_tokens) +
                        " in the completion). Please reduce the length of the messages or completion.");
    for (int32_t c = 0; c < plan.n; ++c) {
      engine_request r;
      r.prompt_ids = prompt;
      r.params = params;
      if (params.seed && plan.n > 1) r.params.seed = *params.seed + static_cast<uint64_t>(c);
      read_field(j, "priority", r.priority);
      plan.requests.push_back(std::move(r));
    }
  }
  return plan;
}

// ---- the sink actor ----

struct sink_ref {
  caf::actor actor;
};

namespace {

struct sink_state {
  std::weak_ptr<completion_listener> listener;
  static inline const char* name = "completion_sink";
};

caf::behavior completion_sink_fn(caf::stateful_actor<sink_state>* self, scheduler_actor scheduler,
                                 std::vector<engine_request> requests, std::weak_ptr<completion_listener> listener) {
  self->state.listener = listener;
  const output_sink me = caf::actor_cast<output_sink>(self);
  for (size_t i = 0; i < requests.size(); ++i) {
    self->request(scheduler, caf::infinite, submit_atom::value, std::move(requests[i]), me)
        .then(
            [self, i](submit_reply& r) {
              auto l = self->state.listener.lock();
              if (!l) return self->quit();
              completion_event ev;
              if (r.error.empty()) {
                ev.what = completion_event::kind::submitted;
                ev.index = i;
                ev.id = r.id;
              } else {
                ev.what = completion_event::kind::failed;
                ev.error_status = 400;
                ev.error_type = "BadRequestError";
                ev.error = r.error;
              }
              l->on_event(std::move(ev));
            },
            [self](caf::error&) {
              if (auto l = self->state.listener.lock()) {
                completion_event ev;
                ev.what = completion_event::kind::failed;
                ev.error_status = 503;
                ev.error_type = "ServiceUnavailableError";
                ev.error = "the engine is not running";
                l->on_event(std::move(ev));
              }
            });
  }
  return {
      [self](output_atom, output_batch& outputs) {
        auto l = self->state.listener.lock();
        if (!l) return self->quit();
        completion_event ev;
        ev.what = completion_event::kind::outputs;
        ev.outputs = std::move(outputs);
        l->on_event(std::move(ev));
      },
  };
}

} // namespace

sink_handle spawn_completion_sink(engine& e, const std::vector<engine_request>& requests,
                                  std::weak_ptr<completion_listener> listener) {
  auto& in = e.internals();
  auto ref = std::make_shared<sink_ref>();
  ref->actor = in.system.spawn(completion_sink_fn, in.scheduler, requests, std::move(listener));
  return ref;
}

void stop_completion_sink(engine&, const sink_handle& sink) {
  if (sink && sink->actor) caf::anon_send_exit(sink->actor, caf::exit_reason::user_shutdown);
}

// ---- building responses ----

completion_builder::completion_builder(completion_plan plan) : plan_(std::move(plan)), choices_(plan_.requests.size()) {
  for (size_t i = 0; i < choices_.size(); ++i) choices_[i].num_prompt_tokens = static_cast<int32_t>(plan_.requests[i].prompt_ids.size());
}

size_t completion_builder::index_of(request_id id) const {
  for (size_t i = 0; i < choices_.size(); ++i)
    if (choices_[i].id == id) return i;
  return choices_.size();
}

void completion_builder::add(const completion_event& ev) {
  if (ev.what == completion_event::kind::submitted) {
    choices_[ev.index].id = ev.id;
    return;
  }
  for (const request_output& o : ev.outputs) {
    const size_t i = index_of(o.id);
    if (i == choices_.size()) continue;
    choice& c = choices_[i];
    c.text += o.text;
    c.tokens.insert(c.tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    if (o.finished && !c.finished) {
      c.finished = true;
      c.finish_reason = !o.error.empty() ? "error" : o.aborted ? "abort" : std::string(to_string(o.reason));
      ++finished_;
    }
  }
}

std::string completion_builder::usage_json_text() const {
  int64_t prompt = 0, completion = 0;
  for (size_t i = 0; i < choices_.size(); ++i) {
    if (i % static_cast<size_t>(plan_.n) == 0) prompt += choices_[i].num_prompt_tokens;
    completion += static_cast<int64_t>(choices_[i].tokens.size());
  }
  return json({{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}}).dump();
}

std::string completion_builder::final_body() const {
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const choice& c = choices_[i];
    json item = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}, {"stop_reason", nullptr}};
    if (plan_.chat) item["message"] = {{"role", "assistant"}, {"content", c.text}};
    else item["text"] = c.text;
    choices.push_back(std::move(item));
  }
  json body = {{"id", plan_.id},
               {"object", plan_.chat ? "chat.completion" : "text_completion"},
               {"created", plan_.created},
               {"model", plan_.model},
               {"choices", std::move(choices)},
               {"usage", json::parse(usage_json_text())}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string completion_builder::chunk_json(size_t index, const std::string& text, const std::string* finish_reason,
                                           bool first) const {
  json item = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}};
  if (plan_.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    delta["content"] = text;
    item["delta"] = std::move(delta);
  } else {
    item["text"] = text;
  }
  json chunk = {{"id", plan_.id},
                {"object", plan_.chat ? "chat.completion.chunk" : "text_completion"},
                {"created", plan_.created},
                {"model", plan_.model},
                {"choices", json::array({std::move(item)})}};
  return "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

std::vector<std::string> completion_builder::stream_chunks(const completion_event& ev) {
  std::vector<std::string> chunks;
  if (ev.what == completion_event::kind::submitted) {
    add(ev);
    return chunks;
  }
  for (const request_output& o : ev.outputs) {
    const size_t i = index_of(o.id);
    if (i == choices_.size()) continue;
    choice& c = choices_[i];
    const bool first = plan_.chat && !c.role_sent;
    c.role_sent = true;
    c.text += o.text;
    c.tokens.insert(c.tokens.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    if (o.finished && !c.finished) {
      c.finished = true;
      c.finish_reason = !o.error.empty() ? "error" : o.aborted ? "abort" : std::string(to_string(o.reason));
      ++finished_;
      chunks.push_back(chunk_json(i, o.text, &c.finish_reason, first));
    } else if (!o.text.empty() || first) {
      chunks.push_back(chunk_json(i, o.text, nullptr, first));
    }
  }
  if (done()) {
    if (plan_.include_usage) {
      json chunk = {{"id", plan_.id},
                    {"object", plan_.chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", plan_.created},
                    {"model", plan_.model},
                    {"choices", json::array()},
                    {"usage", json::parse(usage_json_text())}};
      chunks.push_back("data: " + chunk.dump() + "\n\n");
    }
    chunks.push_back("data: [DONE]\n\n");
  }
  return chunks;
}

} // namespace troupe
