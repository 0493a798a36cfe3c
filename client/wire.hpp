#pragma once
// The native client protocol, shared by client/client.cpp and the server's actors/client_endpoint.cpp.
//
// Over TCP, each way a stream of frames: a 4-byte big-endian payload length, then that many bytes of
// msgpack, the array [kind, body] where body is a map with field names (either side can add fields later).
// A frame longer than max_frame_bytes is refused before anything is allocated for it.
//
//   client -> server: hello {protocol, api_key}            (first, once; answered by welcome or error)
//                     submit {tag, job fields}             -> submitted {tag, job_id | error}
//                     abort {tag, job_id}                  -> aborted {tag, ok}  (ok: a job of this connection)
//                     stats {tag}                          -> stats_reply {tag, ...}
//   server -> client: outputs {outputs: [output...]}       (a job's tokens as sampled; the last is finished)
//                     error {message}                      (fatal: the server closes the connection after it)
//
// Job ids are random and scoped to the connection that submitted the job.
//
// NOTE: msgpack stays in client.cpp, wire.cpp and the endpoint; everything here is plain C++.

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace troupe::wire {

// 2: a job carries its structured-output spec (structured_kind, structured_text); a version-1 peer would
// drop it and run the request unconstrained, so the handshake refuses it.
inline constexpr uint32_t protocol_version = 2;
// Largest frame either side reads: ample for a prompt of a million token ids, far from a 4 GB announcement.
inline constexpr uint32_t max_frame_bytes = 8u << 20;
inline constexpr size_t frame_header_bytes = 4;

enum class kind : uint8_t { hello = 1, welcome, submit, submitted, abort, aborted, stats, stats_reply, outputs, error };

struct hello {
  uint32_t protocol = protocol_version;
  std::string api_key;
};

struct welcome {
  uint32_t protocol = protocol_version;
};

struct job {
  uint64_t tag = 0;  // echoed in the reply
  std::string prompt;
  std::vector<int32_t> prompt_token_ids;
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  bool has_seed = false;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  int64_t priority = 0;
  bool include_stop_str_in_output = false;
  std::vector<int32_t> logit_bias_ids;  // (id, bias) pairs, as two lists of one length
  std::vector<float> logit_bias_values;
  int32_t num_logprobs = -1;  // alternatives per sampled token to return with its logprob; -1: no logprobs
  std::string cache_salt;     // vLLM's cache_salt: prefix cache hits only between jobs with the same salt
  // Structured outputs: "json_object", "json_schema", "regex", "choice" or "grammar" with its text
  // (runtime/structured/grammar_matcher.hpp); empty: unconstrained.
  std::string structured_kind;
  std::string structured_text;
};

struct submitted {
  uint64_t tag = 0;
  uint64_t job_id = 0;  // 0 when refused
  std::string error;    // why the job was refused
  std::string error_type;  // OpenAI error type of a refusal (RateLimitError, AuthenticationError, BadRequestError...)
  int32_t retry_after_s = 0;
  int32_t num_prompt_tokens = 0;
};

struct abort_job {
  uint64_t tag = 0;
  uint64_t job_id = 0;
};

struct aborted {
  uint64_t tag = 0;
  bool ok = false;  // false: no running job of this connection has that id
};

struct stats_request {
  uint64_t tag = 0;
};

struct stats {
  uint64_t tag = 0;
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  int64_t num_preemptions = 0;
};

struct output {
  uint64_t job_id = 0;
  std::vector<int32_t> token_ids;
  std::string text;
  bool finished = false;
  std::string finish_reason;
  std::string error;
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_tokens = 0;
  std::string stop_string;   // a finished output: the stop string that ended it
  bool has_stop_token = false;
  int32_t stop_token = 0;    // a finished output: the stop token id that ended it (with has_stop_token)
  bool has_logprobs = false;  // the job asked for logprobs: the first token's, and its alternatives
  float logprob = 0;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
};

struct outputs {
  std::vector<output> list;
};

struct error {
  std::string message;
};

// A frame's payload as the server reads it, and as the client reads it.
using client_message = std::variant<hello, job, abort_job, stats_request>;
using server_message = std::variant<welcome, submitted, aborted, stats, outputs, error>;

// Thrown for a frame that is not one of the messages above; what() is one line saying what is wrong.
struct malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The payload length a frame header announces, whatever it is.
uint32_t announced_length(std::span<const char, frame_header_bytes> header);
// The same when it is within max_frame_bytes (and not 0); else nullopt.
std::optional<uint32_t> frame_length(std::span<const char, frame_header_bytes> header);

// The 4 header bytes and the msgpack payload of one message.
std::vector<char> frame(const client_message& m);
std::vector<char> frame(const server_message& m);

// Decodes a frame's payload (without its header). Throws malformed. Nothing is allocated in proportion
// to sizes the payload merely announces: the payload is checked to be complete, well-formed msgpack
// within the depth limit before any object is built.
client_message parse_client_message(std::span<const char> payload);
server_message parse_server_message(std::span<const char> payload);

} // namespace troupe::wire
