#include "runtime/gateway/admission.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe {

std::vector<tenant_config> read_tenants_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw user_error("--tenants-file " + path.string() + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  const auto j = nlohmann::json::parse(text.str(), nullptr, false);
  const std::string where = "--tenants-file " + path.string() + ": ";
  if (j.is_discarded() || !j.is_object() || !j.contains("tenants") || !j["tenants"].is_array())
    throw user_error(where + "expected {\"tenants\": [{\"name\": ..., \"api_keys\": [...]}, ...]}");
  std::vector<tenant_config> tenants;
  for (const auto& t : j["tenants"]) {
    tenant_config c;
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string())
      throw user_error(where + "every tenant needs a \"name\"");
    c.name = t["name"];
    if (!t.contains("api_keys") || !t["api_keys"].is_array() || t["api_keys"].empty())
      throw user_error(where + "tenant '" + c.name + "' needs a non-empty \"api_keys\" list");
    for (const auto& k : t["api_keys"]) {
      if (!k.is_string() || k.get<std::string>().empty()) throw user_error(where + "tenant '" + c.name + "' has an empty or non-string api key");
      c.api_keys.push_back(k);
    }
    if (t.contains("tokens_per_minute")) {
      if (!t["tokens_per_minute"].is_number() || t["tokens_per_minute"].get<double>() < 0)
        throw user_error(where + "tenant '" + c.name + "': \"tokens_per_minute\" must be a number >= 0");
      c.tokens_per_minute = t["tokens_per_minute"];
    }
    if (t.contains("max_concurrent")) {
      if (!t["max_concurrent"].is_number_integer() || t["max_concurrent"].get<int64_t>() < 0)
        throw user_error(where + "tenant '" + c.name + "': \"max_concurrent\" must be an integer >= 0");
      c.max_concurrent = t["max_concurrent"];
    }
    tenants.push_back(std::move(c));
  }
  return tenants;
}

admission_controller::admission_controller(admission_config config) : config_(std::move(config)) {
  const auto now = clock::now();
  auto add = [&](const tenant_config& t) {
    if (tenants_.count(t.name)) throw user_error("tenant '" + t.name + "' is defined twice");
    for (const auto& k : t.api_keys) {
      if (by_key_.count(k)) throw user_error("an API key is given to two tenants ('" + by_key_[k] + "' and '" + t.name + "')");
      by_key_[k] = t.name;
    }
    tenants_[t.name] = tenant_state{t, t.tokens_per_minute, now, 0};
  };
  for (const auto& t : config_.tenants) add(t);
  for (size_t i = 0; i < config_.api_keys.size(); ++i) add(tenant_config{"api-key-" + std::to_string(i + 1), {config_.api_keys[i]}, 0, 0});
  if (by_key_.empty()) tenants_["default"] = tenant_state{tenant_config{"default", {}, 0, 0}, 0, now, 0};
}

bool admission_controller::authorized(std::string_view api_key) const {
  return by_key_.empty() || by_key_.count(std::string(api_key));
}

std::optional<admission_refusal> admission_controller::admit(std::string_view api_key, int64_t cost, admission_ticket& ticket,
                                                             clock::time_point now) {
  ticket.release();
  std::string name = "default";
  if (!by_key_.empty()) {
    auto it = by_key_.find(std::string(api_key));
    if (it == by_key_.end())
      return admission_refusal{401, "AuthenticationError",
                               api_key.empty() ? "Missing API key: send 'Authorization: Bearer <key>'" : "Invalid API key",
                               "unauthorized", 0};
    name = it->second;
  }
  std::lock_guard lock(mutex_);
  if (config_.max_queue_len > 0 && num_queued_ >= config_.max_queue_len)
    return admission_refusal{429, "RateLimitError",
                             "The server's queue is full (" + std::to_string(num_queued_) + " requests waiting); retry later",
                             "queue_full", 1};
  tenant_state& t = tenants_.at(name);
  if (t.config.max_concurrent > 0 && t.in_flight >= t.config.max_concurrent)
    return admission_refusal{429, "RateLimitError",
                             "Tenant '" + name + "' already has " + std::to_string(t.in_flight) +
                                 " requests in flight, its limit; retry when one finishes",
                             "rate_limited", 1};
  if (t.config.tokens_per_minute > 0) {
    const double rate = t.config.tokens_per_minute / 60.0;  // tokens per second
    const double elapsed = std::chrono::duration<double>(now - t.refilled).count();
    t.tokens = std::min(t.config.tokens_per_minute, t.tokens + elapsed * rate);
    t.refilled = now;
    if (static_cast<double>(cost) > t.config.tokens_per_minute)
      return admission_refusal{429, "RateLimitError",
                               "The request needs " + std::to_string(cost) + " tokens (prompt + max_tokens), more than tenant '" +
                                   name + "' may use per minute (" + std::to_string(static_cast<int64_t>(t.config.tokens_per_minute)) +
                                   "); lower max_tokens or shorten the prompt",
                               "rate_limited", 60};
    if (static_cast<double>(cost) > t.tokens) {
      const int wait = static_cast<int>(std::ceil((static_cast<double>(cost) - t.tokens) / rate));
      return admission_refusal{429, "RateLimitError",
                               "Tenant '" + name + "' is over its token rate (" +
                                   std::to_string(static_cast<int64_t>(t.config.tokens_per_minute)) +
                                   " tokens per minute); retry in " + std::to_string(wait) + " s",
                               "rate_limited", std::max(1, wait)};
    }
    t.tokens -= static_cast<double>(cost);
  }
  ++t.in_flight;
  ++num_in_flight_;
  ++num_queued_;
  ticket.owner_ = this;
  ticket.tenant_ = name;
  ticket.queued_ = true;
  return std::nullopt;
}

void admission_controller::leave_queue() {
  std::lock_guard lock(mutex_);
  --num_queued_;
}

void admission_controller::release(const std::string& tenant, bool queued) {
  std::lock_guard lock(mutex_);
  --tenants_.at(tenant).in_flight;
  --num_in_flight_;
  if (queued) --num_queued_;
}

admission_counts admission_controller::counts() const {
  std::lock_guard lock(mutex_);
  admission_counts c;
  c.num_in_flight = num_in_flight_;
  c.num_queued = num_queued_;
  for (const auto& [name, t] : tenants_) c.tenant_in_flight.emplace_back(name, t.in_flight);
  std::sort(c.tenant_in_flight.begin(), c.tenant_in_flight.end());
  return c;
}

int64_t admission_controller::num_in_flight() const {
  std::lock_guard lock(mutex_);
  return num_in_flight_;
}

int64_t admission_controller::num_queued() const {
  std::lock_guard lock(mutex_);
  return num_queued_;
}

admission_ticket::admission_ticket(admission_ticket&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), tenant_(std::move(other.tenant_)), queued_(std::exchange(other.queued_, false)) {}

admission_ticket& admission_ticket::operator=(admission_ticket&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    tenant_ = std::move(other.tenant_);
    queued_ = std::exchange(other.queued_, false);
  }
  return *this;
}

void admission_ticket::leave_queue() {
  if (!owner_ || !queued_) return;
  queued_ = false;
  owner_->leave_queue();
}

void admission_ticket::release() {
  if (!owner_) return;
  std::exchange(owner_, nullptr)->release(tenant_, std::exchange(queued_, false));
}

} // namespace troupe
