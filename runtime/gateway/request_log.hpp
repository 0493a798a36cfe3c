#pragma once
// The request log: one line per API request when its response is complete (streams at their end), unless
// --disable-log-requests. Probes and scrapes (/health, /version, /metrics, the dashboard) are not logged,
// nor CORS preflights; prompts and generated text never are.

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/gateway/http_routes.hpp"

namespace troupe {

struct request_log_entry {
  std::string client;         // "127.0.0.1:51234"
  std::string method;         // "POST"
  std::string path;           // "/v1/chat/completions" (no query string)
  int version = 11;           // HTTP/1.1
  int status = 200;
  std::string id;             // the response's id ("chatcmpl-…"); empty for other requests
  std::optional<int64_t> prompt_tokens, completion_tokens;
  std::string finish_reason;  // "stop", "stop,length"; empty when none
  double seconds = 0;         // from the request's head to its response's end
};

// Whether requests to this route are logged.
bool is_logged(route r);

// 127.0.0.1:51234 "POST /v1/chat/completions HTTP/1.1" 200 chatcmpl-1f2e: 12 prompt + 16 generated tokens, stop, 0.312 s
std::string request_log_line(const request_log_entry& e);

} // namespace troupe
