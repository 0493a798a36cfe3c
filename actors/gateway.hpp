#pragma once
// The HTTP gateway: an asynchronous HTTP/1.1 server (Boost.Beast's parser on Asio, a few I/O threads,
// keep-alive, pipelining, SSE) serving vLLM's OpenAI-compatible API over a troupe::engine, or over the
// workers of `troupe router` (actors/gateway_backend.hpp). Bodies are
// parsed, validated, templated and tokenized on a small worker pool, never on the I/O threads. Each
// completion request gets a small sink actor that submits it to the scheduler and posts its outputs
// back to the connection, and an admission ticket whose slots go back however the request ends.
//
// The parts: gateway.cpp (listening, the connection cap, stopping), gateway_session.cpp (one HTTP/1.1
// connection), gateway_routes.cpp (what each path answers), gateway_completion.cpp (a completion
// request's life), gateway_request.cpp (planning a request and building its response).
//
// NOTE: neither Beast nor CAF appears here; both stay in actors/gateway*.cpp.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "runtime/gateway/admission.hpp"
#include "runtime/gateway/cors.hpp"

namespace troupe {

class gateway_backend;

struct gateway_options {
  std::string host = "0.0.0.0";
  uint16_t port = 8000;               // 0: any free port
  admission_config admission;         // API keys, tenants, queue cap
  int32_t max_tokens_limit = 0;       // 0: none; a request asking for more is refused, one asking nothing gets this
  double request_timeout_s = 0;       // 0: none; a request running longer is aborted
  int32_t io_threads = 2;
  int32_t parse_threads = 2;          // the pool that parses, validates and tokenizes bodies
  size_t max_body_bytes = 16 << 20;
  size_t max_header_bytes = 16 << 10; // a request head over it is refused with 431
  int64_t max_connections = 0;        // 0: what RLIMIT_NOFILE allows (default_max_connections)
  size_t max_stream_buffer = 256;     // SSE events queued for one slow client before it is cut off
  std::string root_path;              // vLLM's --root-path: a prefix a path-routing proxy may leave on paths
  cors_config cors;                   // vLLM's --allowed-origins, --allowed-methods, --allowed-headers, --allow-credentials
  bool log_requests = true;           // one log line per API request (not /health, /version, /metrics, the dashboard)
  bool request_id_headers = false;    // vLLM's --enable-request-id-headers: X-Request-Id on every response
  int32_t max_logprobs = 20;          // vLLM's --max-logprobs (-1: the vocabulary)
  bool prompt_tokens_details = false; // vLLM's --enable-prompt-tokens-details: usage reports cached prompt tokens
  bool enable_auto_tool_choice = false; // vLLM's --enable-auto-tool-choice: tool_choice "auto" is served
  std::string tool_call_parser;       // vLLM's --tool-call-parser ("" none)
  std::string reasoning_parser;       // vLLM's --reasoning-parser ("" none)
  bool trust_request_chat_template = false;  // vLLM's --trust-request-chat-template: requests may send a template
  std::string chat_template_content_format = "auto";  // vLLM's --chat-template-content-format: auto, string or openai
  double dashboard_interval_s = 5;    // seconds between the /dashboard history's samples; it keeps the last hour
};

class gateway {
public:
  // Listens at once; throws user_error when the address cannot be bound.
  gateway(engine& e, const gateway_options& options);
  // Listens before there is an engine: /health and every API route answer 503 until attach().
  explicit gateway(const gateway_options& options);
  // Serves `e` from now on; `e` must outlive stop().
  void attach(engine& e);
  // Serves completions with `b` (workers behind `troupe router`) from now on; `b` must outlive stop().
  void attach(gateway_backend& b);
  // Closes the listener and every connection, aborts the requests they run (their slots go back), and
  // waits for the I/O and parse threads.
  void stop();
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  uint16_t port() const;
  // From now on /health answers 503 and new completion requests are refused with 503.
  void begin_draining();
  // Requests admitted and not ended yet: HTTP completions, and native jobs sharing admission().
  int64_t num_in_flight() const;
  // The API keys, tenants and queue this gateway admits requests by; the native client endpoint shares them,
  // so a tenant's rate and concurrency count across both.
  admission_controller& admission();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace troupe
