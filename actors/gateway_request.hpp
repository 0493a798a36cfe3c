#pragma once
// One OpenAI completion request inside the gateway: planning it (parse and validate with runtime/openai,
// render the chat template, tokenize), the sink actor that submits it and relays its outputs, and the
// builder that turns outputs into a response body or SSE chunks. Kept apart from the HTTP plumbing
// (gateway.cpp) so each reads on its own.

#include <memory>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "runtime/openai/openai_error.hpp"
#include "runtime/openai/openai_request.hpp"
#include "runtime/openai/openai_response.hpp"
#include "runtime/tools/chat_output.hpp"

namespace troupe {

struct model_front;

struct completion_plan {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  response_header header;
  int32_t n = 1;
  std::vector<engine_request> requests;  // prompt p, choice c at index p * n + c
  std::optional<int32_t> num_logprobs;   // alternatives per token when logprobs were asked for
  const tokenizer* tok = nullptr;        // to spell logprob tokens
  bool prompt_tokens_details = false;    // usage reports the prompt tokens found in the prefix cache
  // Chat requests whose output a tool-call or reasoning parser reads: the parsers, the request's tool
  // fields (its messages left out) and the rendered prompt (whether it left <think> open).
  chat_parsers parsers;
  std::shared_ptr<const chat_request> read_as;
  std::string prompt;
};

// What request validation needs to know about this server.
openai_server_config server_config_of(const model_front& m);

// Parses, validates, renders and tokenizes a /v1/completions or /v1/chat/completions body.
// max_tokens_limit: the server's cap (0: none). Throws api_error (the answer to send).
completion_plan plan_completion(const model_front& m, const openai_server_config& server, const std::string& body,
                                bool chat, int32_t max_tokens_limit = 0);

// /tokenize and /detokenize bodies; throws api_error.
std::string tokenize(const model_front& m, const openai_server_config& server, const std::string& body);
std::string detokenize(const model_front& m, const openai_server_config& server, const std::string& body);

// What the sink actor reports to the connection, in order.
struct completion_event {
  enum class kind { submitted, outputs, failed } what = kind::outputs;
  size_t index = 0;                     // submitted: which request
  request_id id = 0;                    // submitted: its engine id
  std::vector<request_output> outputs;  // outputs
  api_error error;                      // failed
};

class completion_listener {
public:
  virtual ~completion_listener() = default;
  // Called from actor threads.
  virtual void on_event(completion_event ev) = 0;
};

// A completion's requests in progress, wherever they run (this engine, or workers behind a router).
class completion_handle {
public:
  virtual ~completion_handle() = default;
  // Aborts the requests that have not ended; from any thread, any number of times.
  virtual void stop() = 0;
};
using sink_handle = std::shared_ptr<completion_handle>;

// Spawns the actor that submits every request of a plan to the engine and relays events to the listener.
sink_handle spawn_completion_sink(engine& e, const std::vector<engine_request>& requests,
                                  std::weak_ptr<completion_listener> listener);
// Stops the requests (null: nothing to stop); the engine's sink goes, and the scheduler aborts its unfinished ones.
void stop_completion_sink(const sink_handle& sink);

// A finished output's reason as the APIs spell it: "stop", "length", "abort" or "error".
std::string finish_reason_of(const request_output& o);

// Accumulates (or streams) the outputs of a plan's requests into OpenAI response bodies.
class completion_builder {
public:
  explicit completion_builder(completion_plan plan);
  const std::vector<engine_request>& requests() const { return plan_.requests; }
  void add(const completion_event& ev);
  // SSE chunks for an event; usage (when asked for) and [DONE] after the last.
  std::vector<std::string> stream_chunks(const completion_event& ev);
  bool done() const { return finished_ == plan_.requests.size(); }
  std::string final_body() const;
  // For the request log: the response's id, its usage so far, and its choices' finish reasons ("stop",
  // "stop,length" when they differ; empty while none finished).
  const std::string& id() const { return plan_.header.id; }
  usage_info usage() const;
  std::string finish_reasons() const;

private:
  struct choice {
    request_id id = 0;
    std::string text;
    int64_t num_tokens = 0;
    std::string finish_reason;
    troupe::stop_reason stop;
    int32_t num_prompt_tokens = 0;
    int32_t num_cached_tokens = 0;
    bool finished = false;
    bool role_sent = false;
    std::vector<token_logprobs> logprobs;
    int64_t num_text_chars = 0;  // characters of text so far (completions' text_offset)
  };
  size_t index_of(request_id id) const;
  // Applies one output to its choice; true when the choice is known. Its tokens' logprobs, when asked
  // for, are appended to the choice and also returned in `fresh`.
  bool apply(const request_output& o, size_t& index, std::vector<token_logprobs>* fresh = nullptr);
  token_logprobs spell(int32_t token, const sampled_logprobs& lp) const;
  // The chunks of one streamed chat output read by its choice's parsers.
  void read_chunks(size_t i, const request_output& o, std::vector<token_logprobs>& fresh, std::vector<std::string>& chunks);

  completion_plan plan_;
  std::vector<std::unique_ptr<chat_output>> readers_;  // per choice, when plan_.read_as
  std::vector<choice> choices_;
  size_t finished_ = 0;
};

} // namespace troupe
