#pragma once
// The HTTP side of `troupe bench serve`: plain HTTP/1.1 to any OpenAI-compatible server, on one Asio
// io_context with one coroutine per request (no thread per request), keep-alive connections reused
// between requests as aiohttp's pool reuses them for vLLM's benchmark.
//
// NOTE: Beast and Asio stay in bench_client.cpp.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "launch/bench/bench_stream.hpp"

namespace troupe {

// Where the server is: from --base-url "http://host[:port][/prefix]".
struct http_target {
  std::string host;    // as written; an IPv6 address without its brackets
  std::string port = "80";
  std::string prefix;  // path before the endpoint, without a trailing '/'

  // The URL of a path on the server, for messages.
  std::string url(const std::string& path) const;
};

// Parses --base-url. Throws user_error for anything but http://HOST[:PORT][/PREFIX] (https included:
// put a TLS-terminating proxy in front, or use plain http).
http_target parse_base_url(const std::string& url);

struct http_reply {
  int status = 0;
  std::string body;
};

// One request with a whole reply, for set-up (GET /v1/models, POST /detokenize). api_key: sent as a
// Bearer token when not empty. Throws user_error naming the URL when the server cannot be reached.
http_reply http_call(const http_target& target, const std::string& method, const std::string& path,
                     const std::string& body, const std::string& api_key);

// One streamed request of the benchmark.
struct bench_request {
  std::string path;        // the endpoint, e.g. /v1/completions
  std::string body;        // its JSON body, with "stream": true
  int64_t prompt_len = 0;  // tokens in the prompt, when the server does not report them
};

struct bench_run {
  std::vector<request_outcome> outcomes;  // in the order of the requests
  double duration_s = 0;                  // from the start until the last request ended
};

// Sends requests[i] arrival_times[i] seconds after the start (once fewer than max_concurrency are in
// flight; 0: no limit) and records each streamed response. A request that fails (connection refused,
// HTTP error, error event) is an outcome with its error, never an exception. on_done runs on the
// client's thread after each request ends.
bench_run run_streamed_requests(const http_target& target, const std::string& api_key,
                                std::span<const bench_request> requests, std::span<const double> arrival_times,
                                int32_t max_concurrency, const std::function<void()>& on_done);

} // namespace troupe
