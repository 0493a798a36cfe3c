#pragma once
// troupe's native client: connect to a running `troupe serve --client-port N`, submit jobs, receive
// their tokens as they are sampled and a final result, cancel them. Messages travel over TCP between CAF
// actors; their payloads are msgpack.
//
//   auto c = troupe::client::connect("127.0.0.1", 7070);
//   troupe::job j;
//   j.prompt = "Once upon a time";
//   j.max_tokens = 32;
//   uint64_t id = c->submit(j, [](const troupe::job_event& e) { std::cout << e.text; },
//                              [](const troupe::job_result& r) { std::cout << "\n" << r.finish_reason << "\n"; });
//   c->wait(id);

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
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
  int32_t priority = 0;  // lower runs first (with --scheduling-policy priority)
};

// New tokens of a job, as they are sampled.
struct job_event {
  uint64_t job_id = 0;
  std::vector<int32_t> token_ids;
  std::string text;
};

struct job_result {
  uint64_t job_id = 0;
  std::vector<int32_t> token_ids;  // every generated token
  std::string text;
  std::string finish_reason;  // "stop", "length", "abort" (cancelled) or "error"
  std::string error;
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_tokens = 0;  // prompt tokens the prefix cache served
};

struct server_stats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  int64_t num_preemptions = 0;
};

class client {
public:
  // Connects; throws std::runtime_error naming host:port when no troupe server answers there.
  static std::unique_ptr<client> connect(const std::string& host, uint16_t port);
  ~client();

  // Submits a job. on_event gets each step's new tokens, on_done the result (both on a client thread,
  // one job's calls in order). Returns the job id; throws std::runtime_error with the server's reason
  // when the job is refused.
  uint64_t submit(const job& j, std::function<void(const job_event&)> on_event = {},
                  std::function<void(const job_result&)> on_done = {});

  // Cancels a job: it ends with finish_reason "abort". Unknown or finished ids are ignored.
  void cancel(uint64_t job_id);

  // Blocks until the job has finished; returns its result.
  job_result wait(uint64_t job_id);

  server_stats stats();

  struct impl;

private:
  explicit client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
