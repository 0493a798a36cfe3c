#pragma once
// One OpenAI completion request inside the gateway: planning it (parse, validate, tokenize), the sink actor
// that submits it and relays its outputs, and the builder that turns outputs into a response body or SSE
// chunks. Kept apart from the HTTP plumbing (gateway.cpp) so each reads on its own.

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/engine.hpp"

namespace troupe {

// An error answered as an OpenAI error object.
struct api_error : std::runtime_error {
  api_error(int status_, std::string type_, const std::string& message, std::string param_ = {})
      : std::runtime_error(message), status(status_), type(std::move(type_)), param(std::move(param_)) {}
  int status;
  std::string type;
  std::string param;  // empty: null
};

struct completion_plan {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  std::string model;
  std::string id;
  int64_t created = 0;
  int32_t n = 1;
  std::vector<engine_request> requests;  // prompt p, choice c at index p * n + c
};

// Parses and validates a /v1/completions or /v1/chat/completions body. Throws api_error.
// max_tokens_limit: the server's cap (0: none).
completion_plan plan_completion(engine& e, const std::string& model_name, const std::string& body, bool chat,
                                int32_t max_tokens_limit = 0);

// What the sink actor reports to the connection, in order.
struct completion_event {
  enum class kind { submitted, outputs, failed } what = kind::outputs;
  size_t index = 0;                    // submitted: which request
  request_id id = 0;                   // submitted: its engine id
  std::vector<request_output> outputs;  // outputs
  int error_status = 0;                 // failed
  std::string error_type, error;        // failed
};

class completion_listener {
public:
  virtual ~completion_listener() = default;
  // Called from actor threads.
  virtual void on_event(completion_event ev) = 0;
};

struct sink_ref;
using sink_handle = std::shared_ptr<sink_ref>;

// Spawns the actor that submits every request of a plan and relays events to the listener.
sink_handle spawn_completion_sink(engine& e, const std::vector<engine_request>& requests,
                                  std::weak_ptr<completion_listener> listener);
// Stops the sink: the scheduler sees it go and aborts its unfinished requests.
void stop_completion_sink(engine& e, const sink_handle& sink);

// Accumulates (or streams) the outputs of a plan's requests into OpenAI response bodies.
class completion_builder {
public:
  explicit completion_builder(completion_plan plan);
  const std::vector<engine_request>& requests() const { return plan_.requests; }
  void add(const completion_event& ev);
  // SSE chunks ("data: {...}\n\n") for an event, "data: [DONE]\n\n" after the last.
  std::vector<std::string> stream_chunks(const completion_event& ev);
  bool done() const { return finished_ == plan_.requests.size(); }
  std::string final_body() const;

private:
  struct choice {
    request_id id = 0;
    std::string text;
    std::vector<int32_t> tokens;
    std::string finish_reason;
    int32_t num_prompt_tokens = 0;
    bool finished = false;
    bool role_sent = false;
  };
  size_t index_of(request_id id) const;
  std::string chunk_json(size_t index, const std::string& text, const std::string* finish_reason, bool first) const;
  std::string usage_json_text() const;

  completion_plan plan_;
  std::vector<choice> choices_;
  size_t finished_ = 0;
};

} // namespace troupe
