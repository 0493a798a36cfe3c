#include "runtime/gateway/client_session.hpp"

#include <algorithm>

#include "runtime/openai/openai_request.hpp"

namespace troupe {

client_session::client_session(admission_controller& admission, client_session_limits limits)
    : admission_(admission), limits_(limits) {}

client_session::~client_session() { end_all(); }

std::optional<std::string> client_session::authenticate(std::string_view api_key) {
  if (!admission_.authorized(api_key)) {
    if (api_key.empty())
      return "Missing API key: this server requires one (--api-key or --tenants-file); pass it in client_options::api_key";
    return "Invalid API key";
  }
  authenticated_ = true;
  api_key_ = std::string(api_key);
  return std::nullopt;
}

uint64_t client_session::new_job_id() {
  // From the system's entropy, not a counter: a client learns nothing about other clients' ids from its own.
  for (;;) {
    const uint64_t id = (static_cast<uint64_t>(random_()) << 32) | random_();
    if (id != 0 && !jobs_.count(id)) return id;
  }
}

std::variant<uint64_t, admission_refusal> client_session::admit(int32_t num_prompt_tokens, int32_t max_tokens) {
  if (!authenticated_) return admission_refusal{401, "AuthenticationError", "Send the handshake first", "unauthorized", 0};
  if (auto over = check_max_tokens_limit(max_tokens, limits_.max_tokens_limit))
    return admission_refusal{over->status, over->type, over->message, "too_long", 0};
  const int64_t cost = static_cast<int64_t>(num_prompt_tokens) + std::max(0, max_tokens);
  admission_ticket ticket;
  if (auto refusal = admission_.admit(api_key_, cost, ticket)) return *refusal;
  const uint64_t id = new_job_id();
  jobs_.emplace(id, std::move(ticket));
  return id;
}

void client_session::started(uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) it->second.leave_queue();
}

bool client_session::end(uint64_t job_id) {
  return jobs_.erase(job_id) != 0;  // the ticket gives its slots back
}

void client_session::end_all() {
  for (uint64_t id : open_jobs()) end(id);
}

std::vector<uint64_t> client_session::open_jobs() const {
  std::vector<uint64_t> ids;
  ids.reserve(jobs_.size());
  for (const auto& [id, job] : jobs_) ids.push_back(id);
  return ids;
}

} // namespace troupe
