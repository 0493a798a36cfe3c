#include "launch/bench/bench_stream.hpp"

#include <nlohmann/json.hpp>

namespace troupe {

using json = nlohmann::json;

namespace {

// The text a chunk's first choice carries ("" for role-only and usage-only chunks), and whether the choice
// is a token: it carries text, or it finishes the choice (whose last tokens may have no text of their own:
// an EOS, bytes of an incomplete UTF-8 character, the end of a stop string).
struct chunk_choice {
  std::string text;
  bool is_token = false;
};

chunk_choice first_choice(const json& chunk) {
  const auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array() || choices->empty() || !(*choices)[0].is_object()) return {};
  const json& choice = (*choices)[0];
  auto string_at = [](const json& object, const char* key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  // As vLLM's client: every completion chunk is a step's tokens, its text possibly empty (an incomplete
  // UTF-8 character, a special token); in chat, every delta but the opening role chunk.
  chunk_choice c;
  const auto finish = choice.find("finish_reason");
  const bool finishing = finish != choice.end() && !finish->is_null();
  if (choice.contains("text")) {
    c.text = string_at(choice, "text");
    c.is_token = true;
  } else if (const auto delta = choice.find("delta"); delta != choice.end() && delta->is_object()) {
    c.text = string_at(*delta, "reasoning_content") + string_at(*delta, "reasoning") + string_at(*delta, "content");
    const bool carries = delta->contains("content") || delta->contains("reasoning_content") || delta->contains("reasoning");
    c.is_token = (carries && !delta->contains("role")) || finishing;
  } else {
    c.is_token = finishing;
  }
  return c;
}

std::string cut(std::string_view s, size_t n) { return s.size() <= n ? std::string(s) : std::string(s.substr(0, n)) + "..."; }

} // namespace

stream_recorder::stream_recorder(double sent, int64_t prompt_len) : sent_(sent), prompt_len_(prompt_len) {}

void stream_recorder::feed(std::string_view bytes, double now) {
  for (const std::string& data : sse_.feed(bytes)) take_event(data, now);
}

void stream_recorder::take_event(const std::string& data, double now) {
  if (done()) return;
  ++num_events_;
  last_event_ = now;
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  const json chunk = json::parse(data, nullptr, false);
  if (chunk.is_discarded() || !chunk.is_object()) {
    error_ = "the server sent an event that is not a JSON object: " + cut(data, 200);
    return;
  }
  if (chunk.contains("error")) {
    error_ = "the server sent an error in the stream: " + error_message_of(data);
    return;
  }
  const chunk_choice choice = first_choice(chunk);
  if (choice.is_token) {
    if (num_token_chunks_ == 0)
      first_token_ = now;
    else
      itl_.push_back(now - last_token_);
    last_token_ = now;
    ++num_token_chunks_;
    text_ += choice.text;
  }
  const auto usage = chunk.find("usage");
  if (usage != chunk.end() && usage->is_object()) {
    if (const auto n = usage->find("completion_tokens"); n != usage->end() && n->is_number_integer())
      reported_output_tokens_ = n->get<int64_t>();
    if (const auto n = usage->find("prompt_tokens"); n != usage->end() && n->is_number_integer())
      reported_prompt_tokens_ = n->get<int64_t>();
  }
}

request_outcome stream_recorder::finish() {
  for (const std::string& data : sse_.finish()) take_event(data, last_event_);
  if (!error_.empty()) return fail(error_);
  if (num_token_chunks_ == 0)
    return fail(num_events_ == 0 ? "the response carried no server-sent events (is the server streaming?)"
                                 : "Never received a valid chunk to calculate TTFT. This response will be marked as failed!");
  request_outcome o;
  o.success = true;
  o.prompt_len = reported_prompt_tokens_ >= 0 ? reported_prompt_tokens_ : prompt_len_;
  o.output_tokens = reported_output_tokens_ > 0 ? reported_output_tokens_ : num_token_chunks_;
  o.start_time = sent_;
  o.ttft = first_token_ - sent_;
  o.latency = last_event_ - sent_;
  o.itl = std::move(itl_);
  o.generated_text = std::move(text_);
  return o;
}

request_outcome stream_recorder::fail(std::string error) const {
  request_outcome o;
  o.error = std::move(error);
  o.prompt_len = prompt_len_;
  o.start_time = sent_;
  return o;
}

std::string error_message_of(std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    const json* e = j.contains("error") && j["error"].is_object() ? &j["error"] : &j;
    if (const auto m = e->find("message"); m != e->end() && m->is_string()) return m->get<std::string>();
    if (j.contains("error") && j["error"].is_string()) return j["error"].get<std::string>();
  }
  return cut(body, 300);
}

} // namespace troupe
