#pragma once
// What `troupe bench serve` measures of one streamed OpenAI response (/v1/completions or
// /v1/chat/completions with "stream": true and usage included), from the body's bytes and the times they
// arrived. No sockets here: the HTTP client feeds bytes in, a test feeds a synthetic timeline.
//
// A token chunk is an event whose first choice carries text (completions' "text", chat's delta "content"
// or "reasoning_content") or a finish_reason (the last tokens may have no text: an EOS, the bytes of an
// incomplete UTF-8 character). A chat's role-only chunk is no token; vLLM's benchmark counts it, which
// puts that chunk, not the first token, in its TTFT.
//   TTFT     send → first token chunk
//   ITL      gaps between successive token chunks
//   latency  send → the response's last event (its usage chunk, when sent), what vLLM calls E2EL
//   output   usage.completion_tokens; without usage, the number of token chunks

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "launch/bench/bench_sse.hpp"

namespace troupe {

// What one benchmark request measured. Times in seconds.
struct request_outcome {
  bool success = false;
  std::string error;          // why it failed; empty on success
  int64_t prompt_len = 0;     // the server's usage.prompt_tokens, else the tokens sent
  int64_t output_tokens = 0;  // see above; 0 when it failed
  double start_time = 0;      // when it was sent, from the benchmark's start
  double ttft = 0;
  double latency = 0;
  std::vector<double> itl;
  std::string generated_text;
};

class stream_recorder {
public:
  // sent: when the request went out, on the clock feed() and finish() use; prompt_len: tokens sent.
  stream_recorder(double sent, int64_t prompt_len);

  // Takes the next bytes of the response body, received at `now`.
  void feed(std::string_view bytes, double now);

  // Whether the stream has said [DONE] or sent an error: nothing after it counts.
  bool done() const { return done_ || !error_.empty(); }

  // The outcome once the body has ended: failed if the stream carried an error or no token chunk.
  request_outcome finish();

  // The outcome of a request that failed before or while streaming (connection, HTTP status).
  request_outcome fail(std::string error) const;

private:
  void take_event(const std::string& data, double now);

  sse_parser sse_;
  double sent_;
  int64_t prompt_len_;
  int64_t reported_prompt_tokens_ = -1, reported_output_tokens_ = -1;  // -1: no usage seen
  int64_t num_token_chunks_ = 0;
  int64_t num_events_ = 0;
  double first_token_ = 0, last_token_ = 0, last_event_ = 0;
  std::vector<double> itl_;
  std::string text_;
  std::string error_;
  bool done_ = false;
};

// The message of an OpenAI error body ({"error": {"message": ...}}, or vLLM's older {"message": ...});
// otherwise the body itself, cut to 300 bytes.
std::string error_message_of(std::string_view body);

} // namespace troupe
