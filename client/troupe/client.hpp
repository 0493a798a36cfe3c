#pragma once
// troupe's native client: connect to a running `troupe serve` (its native client port, --client-port,
// 8001 by default, on loopback unless --client-host says otherwise), submit jobs, receive their tokens as
// they are sampled and a final result, cancel them. Frames of msgpack over TCP (client/wire.hpp); the API
// key goes in the handshake, and jobs pass the same admission (tenants, rates, limits) as HTTP requests.
//
//   troupe::client_options o;
//   o.api_key = "KEY";  // when the server has --api-key or --tenants-file
//   auto c = troupe::client::connect("127.0.0.1", 8001, o);
//   troupe::job j;
//   j.prompt = "Once upon a time";
//   j.max_tokens = 32;
//   uint64_t id = c->submit(j, [](const troupe::job_event& e) { std::cout << e.text; },
//                              [](const troupe::job_result& r) { std::cout << "\n" << r.finish_reason << "\n"; });
//   c->wait(id);
//
// When the connection is lost (the server stopped, or dropped this client), every unfinished job ends with
// finish_reason "error" and the reason, and later calls throw.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace troupe {

// What to generate, with vLLM's sampling parameters.
struct job {
  std::string prompt;                     // text, or
  std::vector<int32_t> prompt_token_ids;  // token ids (used when not empty)
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;             // the stop string that ends the text stays in it
  std::vector<std::pair<int32_t, float>> logit_bias;   // (token id, bias) added to its logit; bias in [-100, 100]
  std::optional<int32_t> logprobs;                     // each token's logprob and this many alternatives; empty: none
  std::string cache_salt;                              // prefix cache hits only between jobs with the same salt
  int64_t priority = 0;  // lower runs first (with --scheduling-policy priority)
  // Structured outputs (constrained decoding): structured_kind is "json_object", "json_schema" (text: the
  // schema), "regex" (the pattern), "choice" (a JSON array of strings) or "grammar" (EBNF with a root
  // rule); empty: unconstrained. A spec the server cannot compile refuses the job with its reason.
  std::string structured_kind;
  std::string structured_text;
};

// New tokens of a job, as they are sampled.
struct job_event {
  uint64_t job_id = 0;
  std::vector<int32_t> token_ids;
  std::string text;
  // With job::logprobs: the first token's log-probability (from the raw model output) and the most likely
  // alternatives', as top_ids[i] with top_logprobs[i].
  std::optional<float> logprob;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
};

struct job_result {
  uint64_t job_id = 0;
  std::vector<int32_t> token_ids;  // every generated token
  std::string text;
  std::string finish_reason;  // "stop", "length", "abort" (cancelled) or "error" (error says why)
  std::string error;
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_tokens = 0;  // prompt tokens the prefix cache served
  std::string stop_string;              // the stop string that ended it ("" when none did)
  std::optional<int32_t> stop_token;    // the stop token (an EOS or one of stop_token_ids) that ended it
};

struct server_stats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  int64_t num_preemptions = 0;
};

struct client_options {
  std::string api_key;             // sent in the handshake: needed when the server has --api-key or --tenants-file
  double connect_timeout_s = 10;   // for the TCP connection and the handshake
};

// A job the server turned away: its message says why; type is the OpenAI error type (RateLimitError,
// BadRequestError, ServiceUnavailableError...); retry_after_s, when not 0, says when to try again.
struct job_refused : std::runtime_error {
  job_refused(const std::string& message, std::string type, int retry_after_s)
      : std::runtime_error(message), type(std::move(type)), retry_after_s(retry_after_s) {}
  std::string type;
  int retry_after_s = 0;
};

class client {
public:
  // Connects and authenticates; throws std::runtime_error naming host:port when no troupe server answers
  // there, or with the server's reason when it refuses the connection (a missing or wrong API key).
  static std::unique_ptr<client> connect(const std::string& host, uint16_t port, const client_options& options = {});
  ~client();  // closes the connection (the server aborts the jobs still running); no callback runs after it

  // Submits a job. on_event gets each step's new tokens, on_done the result (both on the client's callback
  // thread, in order; they may call cancel, submit or stats, but not wait). Returns the job id; throws
  // job_refused with the server's reason when the job is refused, std::runtime_error when the connection is lost.
  uint64_t submit(const job& j, std::function<void(const job_event&)> on_event = {},
                  std::function<void(const job_result&)> on_done = {});

  // Cancels a job of this client: it ends with finish_reason "abort". Returns false when no running job of
  // this client has that id (finished, unknown, or another client's). Throws when the connection is lost.
  bool cancel(uint64_t job_id);

  // Blocks until the job has finished (or the connection is lost: finish_reason "error"); returns its result.
  job_result wait(uint64_t job_id);

  // Throws std::runtime_error when the connection is lost.
  server_stats stats();

  struct impl;

private:
  explicit client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
