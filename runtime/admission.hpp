#pragma once
// Admission control at the gateway: who may send requests (API keys → tenants), how many tokens a
// tenant may ask for per minute (a token bucket charged prompt + max_tokens), how many of its
// requests may be in flight, and how long the engine's queue may grow. A refusal carries the HTTP
// status, the OpenAI error type, a message saying what to do, and Retry-After.
//
// Thread-safe: the gateway's I/O threads call it concurrently.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe {

struct tenant_config {
  std::string name;
  std::vector<std::string> api_keys;
  double tokens_per_minute = 0;  // 0: unlimited. Charged prompt tokens + max_tokens at admission.
  int32_t max_concurrent = 0;    // 0: unlimited
};

struct admission_config {
  std::vector<tenant_config> tenants;  // keys of --tenants-file
  std::vector<std::string> api_keys;   // --api-key: each a tenant of its own, unlimited
  int32_t max_queue_len = 0;           // 0: unlimited; waiting requests beyond it are refused (429)
};

// Reads a tenants file: {"tenants": [{"name": "a", "api_keys": ["k"], "tokens_per_minute": 60000,
// "max_concurrent": 8}, ...]}. Throws user_error naming the file and the field.
std::vector<tenant_config> read_tenants_file(const std::filesystem::path& path);

struct admission_refusal {
  int status = 429;
  std::string type;     // OpenAI error type
  std::string message;
  std::string reason;   // for metrics: unauthorized | rate_limited | queue_full
  int retry_after_s = 0;  // 0: no Retry-After
};

class admission_controller {
public:
  using clock = std::chrono::steady_clock;
  explicit admission_controller(admission_config config);

  // Whether auth is on (any key or tenant configured).
  bool requires_key() const { return !by_key_.empty(); }

  // Decides on one request. On admission the tenant's bucket is charged and its in-flight count taken:
  // call release() with the returned tenant name when the request ends.
  // api_key: the Bearer token (empty when none); num_waiting: the engine's queue length now.
  std::optional<admission_refusal> admit(std::string_view api_key, int64_t cost_tokens, int32_t num_waiting,
                                         std::string& tenant_out, clock::time_point now = clock::now());
  void release(const std::string& tenant);

  // Only the key check (for endpoints that cost no tokens, e.g. /v1/models).
  bool authorized(std::string_view api_key) const;

  // The queue --max-queue-len caps: admitted requests, HTTP and native alike, that have no output yet.
  // Pass num_queued() to admit(); enter_queue() on admission, leave_queue() once when the request
  // produces output or ends.
  void enter_queue() { ++num_queued_; }
  void leave_queue() { --num_queued_; }
  int32_t num_queued() const { return num_queued_; }

private:
  struct tenant_state {
    tenant_config config;
    double tokens = 0;  // available in the bucket
    clock::time_point refilled;
    int32_t in_flight = 0;
  };
  admission_config config_;
  std::unordered_map<std::string, std::string> by_key_;  // api key -> tenant name
  std::unordered_map<std::string, tenant_state> tenants_;
  std::mutex mutex_;
  std::atomic<int32_t> num_queued_ = 0;
};

} // namespace troupe
