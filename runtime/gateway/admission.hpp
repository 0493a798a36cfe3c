#pragma once
// runtime/gateway/: the HTTP gateway's decisions, without sockets: admission (this file), the route
// table, request heads, the connection table, native client sessions and the gateway's metrics. May
// include runtime/error.hpp, runtime/openai/ and runtime/metrics/.
//
// Admission control at the gateway: who may send requests (API keys → tenants), how many tokens a
// tenant may ask for per minute (a token bucket charged prompt + max_tokens), how many of its
// requests may be in flight, and how many admitted requests may wait for their first output. A
// refusal carries the HTTP status, the OpenAI error type, a message saying what to do, and
// Retry-After. An admission is an admission_ticket: the slots go back when it is released or
// destroyed, so no way a request ends can leak them.
//
// Thread-safe: the gateway's I/O threads call it concurrently.

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
  int32_t max_queue_len = 0;           // 0: unlimited; admitted requests without output yet beyond it are refused (429)
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

class admission_controller;

// The slots one admitted request holds: its place among the requests in flight, its tenant's
// concurrency slot and a queue slot (until its first output). Move-only; each slot is given back
// exactly once: by leave_queue() / release(), or by the destructor, whatever ends the request.
// NOTE: the controller must outlive its tickets.
class admission_ticket {
public:
  admission_ticket() = default;  // holds nothing
  admission_ticket(admission_ticket&& other) noexcept;
  admission_ticket& operator=(admission_ticket&& other) noexcept;
  admission_ticket(const admission_ticket&) = delete;
  admission_ticket& operator=(const admission_ticket&) = delete;
  ~admission_ticket() { release(); }

  // Whether it still holds its slots.
  bool held() const { return owner_ != nullptr; }
  // The tenant it was admitted for (kept after release).
  const std::string& tenant() const { return tenant_; }
  // The request has left the queue (its first output came): frees the queue slot; later calls do nothing.
  void leave_queue();
  // Frees every slot still held; later calls do nothing.
  void release();

private:
  friend class admission_controller;
  admission_controller* owner_ = nullptr;
  std::string tenant_;
  bool queued_ = false;
};

// The counters the slots add up to, for /metrics and tests: all zero when no request is in flight.
struct admission_counts {
  int64_t num_in_flight = 0;
  int64_t num_queued = 0;
  std::vector<std::pair<std::string, int64_t>> tenant_in_flight;  // every tenant, by name
};

class admission_controller {
public:
  using clock = std::chrono::steady_clock;
  explicit admission_controller(admission_config config);

  // Whether auth is on (any key or tenant configured).
  bool requires_key() const { return !by_key_.empty(); }

  // Decides on one request. On admission the tenant's bucket is charged and `ticket` takes the slots
  // (in flight, the tenant's concurrency, the queue) until it is released or destroyed.
  // api_key: the Bearer token (empty when none). A ticket already held is released first.
  std::optional<admission_refusal> admit(std::string_view api_key, int64_t cost_tokens, admission_ticket& ticket,
                                         clock::time_point now = clock::now());

  // Only the key check (for endpoints that cost no tokens, e.g. /v1/models).
  bool authorized(std::string_view api_key) const;

  admission_counts counts() const;
  // Requests admitted and not ended (HTTP requests and native jobs alike).
  int64_t num_in_flight() const;
  // Of those, the ones without output yet: the queue --max-queue-len caps.
  int64_t num_queued() const;

private:
  friend class admission_ticket;
  void leave_queue();
  void release(const std::string& tenant, bool queued);

  struct tenant_state {
    tenant_config config;
    double tokens = 0;  // available in the bucket
    clock::time_point refilled;
    int32_t in_flight = 0;
  };
  admission_config config_;
  std::unordered_map<std::string, std::string> by_key_;  // api key -> tenant name
  std::unordered_map<std::string, tenant_state> tenants_;
  int64_t num_in_flight_ = 0;
  int64_t num_queued_ = 0;  // admitted requests without output yet: what max_queue_len caps
  mutable std::mutex mutex_;
};

} // namespace troupe
