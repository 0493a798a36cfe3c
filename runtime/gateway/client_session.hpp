#pragma once
// What the native client endpoint decides for one connection, with no socket or actor in sight: whether
// the client has authenticated, whether a job is admitted (the same admission_controller, tenants and
// limits as HTTP), which jobs the connection owns (under random ids no other client can guess), and each
// job's admission slot, released exactly once however the job ends (finished, aborted, refused by the
// engine, its client gone, the server stopping).
//
// Not thread-safe: one connection's events are handled one at a time.

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "runtime/gateway/admission.hpp"

namespace troupe {

struct client_session_limits {
  int32_t max_tokens_limit = 0;  // --max-tokens-limit (0: none): a job asking for more is refused
};

class client_session {
public:
  // admission must outlive the session.
  client_session(admission_controller& admission, client_session_limits limits);
  ~client_session();  // ends every job still open
  client_session(const client_session&) = delete;
  client_session& operator=(const client_session&) = delete;

  // The handshake's key. Returns nullopt when accepted, else the message to send before closing.
  std::optional<std::string> authenticate(std::string_view api_key);
  bool authenticated() const { return authenticated_; }

  // Admits a job of num_prompt_tokens asking for max_tokens: takes the tenant's slot and the queue slot and
  // returns the job's id, or the refusal. Needs authenticate() to have succeeded.
  std::variant<uint64_t, admission_refusal> admit(int32_t num_prompt_tokens, int32_t max_tokens);
  // The job produced output: it no longer counts against --max-queue-len.
  void started(uint64_t job_id);
  // The job ended, however: its slots are released. False (and nothing released) when it is not an open
  // job of this connection.
  bool end(uint64_t job_id);
  void end_all();

  bool owns(uint64_t job_id) const { return jobs_.count(job_id) != 0; }
  size_t num_open_jobs() const { return jobs_.size(); }
  std::vector<uint64_t> open_jobs() const;

private:
  uint64_t new_job_id();

  admission_controller& admission_;
  client_session_limits limits_;
  bool authenticated_ = false;
  std::string api_key_;
  std::unordered_map<uint64_t, admission_ticket> jobs_;  // each open job's slots
  std::random_device random_;
};

} // namespace troupe
