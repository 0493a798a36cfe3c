#include "runtime/gateway/connection_table.hpp"

#include <algorithm>

namespace troupe {

connection_table::connection_table(int64_t max_connections) : max_(std::max<int64_t>(1, max_connections)) {}

uint64_t connection_table::open(clock::time_point now) {
  const uint64_t id = next_id_++;
  entries_[id] = entry{true, now};
  return id;
}

void connection_table::close(uint64_t id) { entries_.erase(id); }

void connection_table::set_idle(uint64_t id, bool idle, clock::time_point now) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.idle == idle) return;
  it->second = entry{idle, now};
}

std::optional<uint64_t> connection_table::longest_idle() const {
  std::optional<uint64_t> best;
  clock::time_point since = clock::time_point::max();
  for (const auto& [id, e] : entries_)
    if (e.idle && e.since < since) {
      best = id;
      since = e.since;
    }
  return best;
}

int64_t default_max_connections(int64_t nofile_limit) {
  constexpr int64_t reserve = 128, at_least = 8, unlimited = 65536;
  if (nofile_limit <= 0) return unlimited;
  return std::clamp(nofile_limit - reserve, at_least, unlimited);
}

std::chrono::milliseconds accept_backoff::next_delay() {
  const std::chrono::milliseconds d = next_;
  next_ = std::min(max_, next_ * 2);
  return d;
}

} // namespace troupe
