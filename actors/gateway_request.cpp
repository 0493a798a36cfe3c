#include "actors/gateway_request.hpp"

#include <chrono>

#include "actors/engine_impl.hpp"
#include "actors/gateway_backend.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

// NOTE: returns the value itself (not a reference into the temporary `checked`).
template <class T>
T value_or_throw(checked<T>&& c) {
  if (!c) throw c.error();
  return std::move(c).value();
}

int64_t utf8_chars(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// vLLM's check before tokenizing a text prompt: one that could not fit even at the most characters per
// token is refused without the tokenizer's work (nullopt when it may fit, or the bound is unknown).
std::optional<api_error> check_prompt_chars(const std::string& text, const openai_server_config& server,
                                            std::optional<int64_t> max_tokens, std::string_view max_tokens_param) {
  if (server.max_chars_per_token <= 0) return std::nullopt;
  return check_prompt_characters(utf8_chars(text), server.max_chars_per_token, max_tokens, server.max_model_len,
                                 max_tokens_param);
}

void add_choices(completion_plan& plan, std::vector<int32_t> ids, const openai_generation& gen, int64_t priority,
                 const std::optional<std::string>& salt) {
  plan.num_logprobs = gen.num_logprobs;
  for (int32_t c = 0; c < gen.n; ++c) {
    engine_request r;
    r.prompt_ids = ids;
    r.params = gen.params;
    r.params.logprobs = gen.num_logprobs;
    // n samples of one prompt must differ even with a seed: each choice draws from its own stream.
    if (gen.params.seed && gen.n > 1) r.params.seed = *gen.params.seed + static_cast<uint64_t>(c);
    r.priority = priority;
    if (salt) r.cache_salt = *salt;
    plan.requests.push_back(std::move(r));
  }
}

// The template a chat request renders with: its own (trusted by now, or the parser would have refused
// it), which may name one of the tokenizer's templates, else the model's tool-use variant when the request
// has tools, else the model's; nullopt when neither the request nor the model has one.
std::optional<chat_template> template_for(const model_front& in, const std::optional<std::string>& own, bool tools) {
  if (own) {
    for (const auto& [name, t] : in.named_chats)
      if (name == *own) return t;
    try {
      return chat_template::parse(*own);
    } catch (const user_error& err) {
      throw bad_request(err.what());
    }
  }
  return tools && in.chat_tools ? in.chat_tools : in.chat;
}

// vLLM's --chat-template-content-format: as given, or (auto) what the template reads.
content_format format_for(const chat_template& t, const openai_server_config& server) {
  if (server.chat_template_content_format == "openai") return content_format::openai;
  if (server.chat_template_content_format == "string") return content_format::string;
  return t.loops_over_message_content() ? content_format::openai : content_format::string;
}

} // namespace

openai_server_config server_config_of(const model_front& m) {
  openai_server_config s;
  s.served_model_names = m.served_model_names;
  s.max_model_len = static_cast<int32_t>(m.max_model_len);
  s.vocab_size = static_cast<int32_t>(m.config.vocab_size);
  const generation_defaults& d = m.sampling_defaults;
  s.default_temperature = d.temperature;
  s.default_top_p = d.top_p;
  s.default_top_k = d.top_k;
  s.default_min_p = d.min_p;
  s.default_repetition_penalty = d.repetition_penalty;
  s.default_max_tokens = d.max_tokens;
  if (m.grammars) s.compile_structured = [g = m.grammars](const structured_output& spec) { g->compile(spec); };
  if (const tokenizer* tok = m.tok.get()) {
    // The most characters one token can stand for: a text prompt longer than this many times the
    // tokens that fit is refused without tokenizing it.
    for (int32_t id = 0; id < tok->vocab_size(); ++id) {
      const int64_t chars = utf8_chars(tok->decode(std::span<const int32_t>(&id, 1)));
      s.max_chars_per_token = std::max(s.max_chars_per_token, chars);
    }
  }
  return s;
}

completion_plan plan_completion(const model_front& in, const openai_server_config& server, const std::string& body,
                                bool chat, int32_t max_tokens_limit) {
  const tokenizer* tok = in.tok.get();
  completion_plan plan;
  plan.chat = chat;
  plan.header.model = response_model_name(server);
  plan.header.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  plan.header.id = (chat ? "chatcmpl-" : "cmpl-") + random_uuid_hex();
  plan.tok = tok;
  plan.prompt_tokens_details = server.prompt_tokens_details;
  // Without a tokenizer (a folder of config and weights only) token-id prompts still work, as with
  // vLLM's --skip-tokenizer-init: outputs then carry token ids and empty text.
  const auto no_tokenizer = [] {
    return bad_request("The model has no tokenizer.json: use token-id prompts on /v1/completions");
  };

  if (chat) {
    if (!tok) throw no_tokenizer();
    const chat_request r = value_or_throw(parse_chat_request(body, server));
    if (auto err = check_max_tokens_limit(r, max_tokens_limit)) throw *err;
    plan.stream = r.stream;
    plan.include_usage = r.stream_options && r.stream_options->include_usage;
    const bool tools = !r.tools_json.empty() && r.tool_choice != tool_choice_mode::none;
    const std::optional<chat_template> tmpl = template_for(in, r.chat_template, tools);
    if (!tmpl)
      throw server_error(400, "BadRequestError",
                         "As of transformers v4.44, default chat template is no longer allowed, so you must provide a "
                         "chat template if the tokenizer does not define one.");
    const std::string messages = value_or_throw(render_messages_json(r.messages, format_for(*tmpl, server)));
    chat_template_options options = in.chat_options;
    options.add_generation_prompt = r.add_generation_prompt;
    options.continue_final_message = r.continue_final_message;
    if (tools) options.tools_json = r.tools_json;
    if (r.documents_json) options.documents_json = *r.documents_json;
    options.extra_context_json = r.chat_template_kwargs_json;
    std::string prompt;
    try {
      prompt = tmpl->render(messages, options);
    } catch (const user_error& err) {
      throw bad_request(err.what());
    }
    if (auto err = check_prompt_chars(prompt, server, requested_max_tokens(r), requested_max_tokens_param(r)))
      throw *err;
    std::vector<int32_t> ids = tok->encode(prompt, r.add_special_tokens);
    if (auto err = check_context_length(static_cast<int64_t>(ids.size()), requested_max_tokens(r), server.max_model_len,
                                        prompt_form::text, requested_max_tokens_param(r)))
      throw *err;
    openai_generation gen = value_or_throw(to_generation(r, static_cast<int64_t>(ids.size()), server));
    apply_max_tokens_limit(gen, max_tokens_limit);
    plan.parsers = {server.enable_auto_tool_choice ? server.tool_call_parser : std::string(), server.reasoning_parser};
    if (reads_chat_output(plan.parsers, r)) {
      auto read_as = std::make_shared<chat_request>(r);
      read_as->messages.clear();
      plan.read_as = std::move(read_as);
      plan.prompt = std::move(prompt);
      if (keeps_special_tokens(plan.parsers, r)) gen.params.skip_special_tokens = false;
    }
    plan.n = gen.n;
    add_choices(plan, std::move(ids), gen, r.priority, r.cache_salt);
  } else {
    const completion_request r = value_or_throw(parse_completion_request(body, server));
    if (auto err = check_max_tokens_limit(r, max_tokens_limit)) throw *err;
    plan.stream = r.stream;
    plan.include_usage = r.stream_options && r.stream_options->include_usage;
    for (const completion_prompt& p : r.prompts) {
      if (!p.is_tokens && !tok) throw no_tokenizer();
      if (!p.is_tokens)
        if (auto err = check_prompt_chars(p.text, server, requested_max_tokens(r), "max_tokens")) throw *err;
      std::vector<int32_t> ids = p.is_tokens ? p.token_ids : tok->encode(p.text, r.add_special_tokens);
      if (auto err = check_context_length(static_cast<int64_t>(ids.size()), requested_max_tokens(r), server.max_model_len,
                                          p.is_tokens ? prompt_form::token_ids : prompt_form::text))
        throw *err;
      openai_generation gen = value_or_throw(to_generation(r, static_cast<int64_t>(ids.size()), server));
      apply_max_tokens_limit(gen, max_tokens_limit);
      plan.n = gen.n;
      add_choices(plan, std::move(ids), gen, r.priority, r.cache_salt);
    }
  }
  return plan;
}

std::string tokenize(const model_front& in, const openai_server_config& server, const std::string& body) {
  const tokenize_request r = value_or_throw(parse_tokenize_request(body, server));
  const tokenizer* tok = in.tok.get();
  if (!tok) throw bad_request("The model has no tokenizer.json");
  std::string text = r.prompt;
  if (r.is_chat) {
    const std::optional<chat_template> tmpl = template_for(in, r.chat_template, false);
    if (!tmpl) throw bad_request("The model has no chat template");
    const std::string messages = value_or_throw(render_messages_json(r.messages, format_for(*tmpl, server)));
    chat_template_options options = in.chat_options;
    options.add_generation_prompt = r.add_generation_prompt;
    options.continue_final_message = r.continue_final_message;
    options.tools_json = r.tools_json;
    options.extra_context_json = r.chat_template_kwargs_json;
    try {
      text = tmpl->render(messages, options);
    } catch (const user_error& err) {
      throw bad_request(err.what());
    }
  }
  const std::vector<int32_t> ids = tok->encode(text, r.add_special_tokens);
  std::vector<std::string> strs;
  if (r.return_token_strs)
    for (int32_t id : ids) strs.push_back(tok->id_to_token(id));
  return tokenize_body(ids, server.max_model_len, r.return_token_strs ? &strs : nullptr);
}

std::string detokenize(const model_front& in, const openai_server_config& server, const std::string& body) {
  const detokenize_request r = value_or_throw(parse_detokenize_request(body, server));
  const tokenizer* tok = in.tok.get();
  if (!tok) throw bad_request("The model has no tokenizer.json");
  for (int32_t id : r.tokens)
    if (id < 0 || id >= tok->vocab_size()) {
      throw bad_request("Token id " + std::to_string(id) + " is out of vocabulary", "tokens");
    }
  return detokenize_body(tok->decode(r.tokens, false));
}

// ---- the sink actor ----

namespace {

// The engine's sink actor: stopping it makes the scheduler abort its unfinished requests.
struct sink_ref : completion_handle {
  caf::actor actor;
  void stop() override {
    if (actor) caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  }
};

struct sink_state {
  std::weak_ptr<completion_listener> listener;
  static inline const char* name = "completion_sink";
};

caf::behavior completion_sink_fn(caf::stateful_actor<sink_state>* self, scheduler_actor scheduler,
                                 std::vector<engine_request> requests, std::weak_ptr<completion_listener> listener) {
  self->state.listener = listener;
  // The scheduler going away (the engine shutting down) ends the sink: its requests can get no more
  // outputs, and an actor left waiting would keep the actor system from ever finishing.
  self->monitor(scheduler);
  self->set_down_handler([self](caf::down_msg&) {
    if (auto l = self->state.listener.lock()) {
      completion_event ev;
      ev.what = completion_event::kind::failed;
      ev.error = server_error(503, "ServiceUnavailableError", "The server is shutting down");
      l->on_event(std::move(ev));
    }
    self->quit();
  });
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
                ev.error = bad_request(r.error);
              }
              l->on_event(std::move(ev));
            },
            [self](caf::error&) {
              if (auto l = self->state.listener.lock()) {
                completion_event ev;
                ev.what = completion_event::kind::failed;
                ev.error = server_error(503, "ServiceUnavailableError", "The engine is not running");
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
        // A request the engine ended with an error fails the whole response with it.
        for (const request_output& o : outputs)
          if (auto error = engine_error(o)) {
            ev.what = completion_event::kind::failed;
            ev.error = std::move(*error);
            break;
          }
        if (ev.what == completion_event::kind::outputs) ev.outputs = std::move(outputs);
        l->on_event(std::move(ev));
      },
  };
}

} // namespace

std::string finish_reason_of(const request_output& o) {
  if (!o.error.empty()) return "error";
  if (o.aborted) return "abort";
  return std::string(to_string(o.reason));
}

sink_handle spawn_completion_sink(engine& e, const std::vector<engine_request>& requests,
                                  std::weak_ptr<completion_listener> listener) {
  auto& in = e.internals();
  auto ref = std::make_shared<sink_ref>();
  ref->actor = in.system.spawn(completion_sink_fn, in.scheduler, requests, std::move(listener));
  return ref;
}

void stop_completion_sink(const sink_handle& sink) {
  if (sink) sink->stop();
}

namespace {

class engine_backend : public gateway_backend {
public:
  explicit engine_backend(engine& e) : e_(e) {}
  const model_front& front() const override { return e_.front(); }
  bool healthy() const override { return e_.healthy(); }
  engine_metrics& metrics() override { return *e_.internals().metrics; }
  sink_handle start(const std::vector<engine_request>& requests, bool, std::weak_ptr<completion_listener> listener) override {
    return spawn_completion_sink(e_, requests, std::move(listener));
  }

private:
  engine& e_;
};

} // namespace

std::unique_ptr<gateway_backend> make_engine_backend(engine& e) { return std::make_unique<engine_backend>(e); }

// ---- building responses ----

completion_builder::completion_builder(completion_plan plan) : plan_(std::move(plan)), choices_(plan_.requests.size()) {
  for (size_t i = 0; i < choices_.size(); ++i) {
    choices_[i].num_prompt_tokens = static_cast<int32_t>(plan_.requests[i].prompt_ids.size());
    if (plan_.read_as)
      readers_.push_back(std::make_unique<chat_output>(plan_.parsers, *plan_.read_as, plan_.prompt, static_cast<int32_t>(i)));
  }
}

size_t completion_builder::index_of(request_id id) const {
  for (size_t i = 0; i < choices_.size(); ++i)
    if (choices_[i].id == id) return i;
  return choices_.size();
}

token_logprobs completion_builder::spell(int32_t token, const sampled_logprobs& lp) const {
  auto text = [&](int32_t id) { return plan_.tok ? plan_.tok->decode(std::span<const int32_t>(&id, 1), false) : std::to_string(id); };
  token_logprobs t;
  t.token = text(token);
  t.logprob = lp.logprob;
  // vLLM's order: the sampled token, then the alternatives by rank, each once.
  t.top.push_back({t.token, lp.logprob});
  for (size_t k = 0; k < lp.top_ids.size(); ++k)
    if (lp.top_ids[k] != token) t.top.push_back({text(lp.top_ids[k]), lp.top_logprobs[k]});
  return t;
}

bool completion_builder::apply(const request_output& o, size_t& i, std::vector<token_logprobs>* fresh) {
  i = index_of(o.id);
  if (i == choices_.size()) return false;
  choice& c = choices_[i];
  if (o.logprobs && !o.new_token_ids.empty()) {
    token_logprobs t = spell(o.new_token_ids.front(), *o.logprobs);
    if (fresh) fresh->push_back(t);
    c.logprobs.push_back(std::move(t));
  }
  c.text += o.text;
  c.num_tokens += static_cast<int64_t>(o.new_token_ids.size());
  c.num_cached_tokens = o.num_cached_tokens;
  if (o.finished && !c.finished) {
    c.finished = true;
    c.finish_reason = finish_reason_of(o);
    c.stop = stop_reason_of(o);
    ++finished_;
  }
  return true;
}

void completion_builder::add(const completion_event& ev) {
  if (ev.what == completion_event::kind::submitted) {
    choices_[ev.index].id = ev.id;
    return;
  }
  size_t i;
  for (const request_output& o : ev.outputs) apply(o, i);
}

usage_info completion_builder::usage() const {
  usage_info u;
  int64_t cached = 0;
  for (size_t i = 0; i < choices_.size(); ++i) {
    if (i % static_cast<size_t>(plan_.n) == 0) {
      u.prompt_tokens += choices_[i].num_prompt_tokens;
      cached += choices_[i].num_cached_tokens;
    }
    u.completion_tokens += choices_[i].num_tokens;
  }
  if (plan_.prompt_tokens_details) u.cached_tokens = cached;
  return u;
}

std::string completion_builder::finish_reasons() const {
  std::string out;
  for (const choice& c : choices_) {
    if (!c.finished || c.finish_reason.empty()) continue;
    if (("," + out + ",").find("," + c.finish_reason + ",") == std::string::npos) out += (out.empty() ? "" : ",") + c.finish_reason;
  }
  return out;
}

std::string completion_builder::final_body() const {
  const int32_t k = plan_.num_logprobs.value_or(0);
  if (plan_.chat) {
    std::vector<chat_choice> out;
    for (size_t i = 0; i < choices_.size(); ++i) {
      std::optional<std::vector<token_logprobs>> lps;
      if (plan_.num_logprobs) lps = choices_[i].logprobs;
      out.push_back({static_cast<int32_t>(i), choices_[i].text, choices_[i].finish_reason, choices_[i].stop, lps, k, {}, {}});
      if (!readers_.empty()) {
        chat_message_out m = readers_[i]->read_whole(choices_[i].text, choices_[i].finish_reason);
        out.back().content = std::move(m.content);
        out.back().reasoning = std::move(m.reasoning);
        out.back().tool_calls = std::move(m.tool_calls);
        out.back().finish_reason = std::move(m.finish_reason);
      }
    }
    return chat_completion_body(plan_.header, out, usage());
  }
  std::vector<completion_choice> out;
  for (size_t i = 0; i < choices_.size(); ++i) {
    std::optional<completion_logprobs> lps;
    if (plan_.num_logprobs) lps = make_completion_logprobs(choices_[i].logprobs, k, 0);
    out.push_back({static_cast<int32_t>(i), choices_[i].text, choices_[i].finish_reason, choices_[i].stop, lps});
  }
  return completion_body(plan_.header, out, usage());
}

void completion_builder::read_chunks(size_t i, const request_output& o, std::vector<token_logprobs>& fresh,
                                     std::vector<std::string>& chunks) {
  chat_output& reader = *readers_[i];
  message_delta d = reader.push(o.text);
  if (o.finished) {
    message_delta last = reader.finish();
    d.reasoning += last.reasoning;
    d.content += last.content;
    for (auto& t : last.tool_calls) d.tool_calls.push_back(std::move(t));
  }
  // One chunk per piece, as vLLM's parsers give them: reasoning, content, then each tool-call piece. A
  // step whose text the parsers hold back sends nothing until its end.
  std::vector<chat_delta> pieces;
  auto piece = [&] {
    chat_delta p;
    p.index = static_cast<int32_t>(i);
    p.content = std::nullopt;
    return p;
  };
  if (!d.reasoning.empty()) pieces.push_back(piece()), pieces.back().reasoning = d.reasoning;
  if (!d.content.empty()) pieces.push_back(piece()), pieces.back().content = d.content;
  for (auto& t : d.tool_calls) pieces.push_back(piece()), pieces.back().tool_calls.push_back(std::move(t));
  if (pieces.empty() && o.finished) pieces.push_back(piece());
  if (pieces.empty()) return;
  if (plan_.num_logprobs) {
    pieces.front().logprobs = &fresh;
    pieces.front().top_logprobs = *plan_.num_logprobs;
  }
  if (o.finished) {
    pieces.back().finish_reason = reader.stream_finish_reason(choices_[i].finish_reason);
    pieces.back().stop_reason = choices_[i].stop;
  }
  for (const chat_delta& p : pieces) chunks.push_back(sse_event(chat_chunk(plan_.header, p)));
}

std::vector<std::string> completion_builder::stream_chunks(const completion_event& ev) {
  std::vector<std::string> chunks;
  if (ev.what == completion_event::kind::submitted) {
    add(ev);
    // vLLM opens each chat choice with a role chunk as soon as the request is accepted.
    if (plan_.chat && !choices_[ev.index].role_sent) {
      choices_[ev.index].role_sent = true;
      chat_delta d;
      d.index = static_cast<int32_t>(ev.index);
      d.role = true;
      chunks.push_back(sse_event(chat_chunk(plan_.header, d)));
    }
    return chunks;
  }
  for (const request_output& o : ev.outputs) {
    size_t i;
    const int64_t offset = index_of(o.id) < choices_.size() ? choices_[index_of(o.id)].num_text_chars : 0;
    std::vector<token_logprobs> fresh;
    if (!apply(o, i, &fresh)) continue;
    choice& c = choices_[i];
    c.num_text_chars += utf8_chars(o.text);
    // As vLLM: every step that produced tokens makes a chunk, even when its text is still empty (an
    // incomplete UTF-8 character, a special token, a model without a tokenizer).
    if (!o.finished && o.text.empty() && fresh.empty() && o.new_token_ids.empty()) continue;
    if (!readers_.empty()) {
      read_chunks(i, o, fresh, chunks);
    } else if (plan_.chat) {
      chat_delta d;
      d.index = static_cast<int32_t>(i);
      d.content = o.text;
      if (plan_.num_logprobs) {
        d.logprobs = &fresh;
        d.top_logprobs = *plan_.num_logprobs;
      }
      if (o.finished) {
        d.finish_reason = c.finish_reason;
        d.stop_reason = c.stop;
      }
      chunks.push_back(sse_event(chat_chunk(plan_.header, d)));
    } else {
      completion_choice cc{static_cast<int32_t>(i), o.text, o.finished ? c.finish_reason : "", o.finished ? c.stop : stop_reason{},
                           std::nullopt};
      if (plan_.num_logprobs) cc.logprobs = make_completion_logprobs(fresh, *plan_.num_logprobs, offset);
      chunks.push_back(sse_event(completion_chunk(plan_.header, cc)));
    }
  }
  if (done()) {
    if (plan_.include_usage)
      chunks.push_back(sse_event(plan_.chat ? chat_usage_chunk(plan_.header, usage()) : completion_usage_chunk(plan_.header, usage())));
    chunks.push_back(sse_done());
  }
  return chunks;
}

} // namespace troupe
