#include "runtime/router/worker_dashboards.hpp"

namespace troupe {

worker_dashboards::worker_dashboards(const engine_metrics_config& base, std::vector<std::string> worker_names) {
  for (std::string& n : worker_names) {
    worker w;
    w.name = std::move(n);
    w.metrics = std::make_unique<engine_metrics>(base);
    workers_.push_back(std::move(w));
  }
}

const std::vector<std::string>& worker_dashboards::columns() {
  // What tells workers apart: a slow one (TTFT, ITL), an idle or a swamped one (tokens/s, queue), a full cache.
  static const std::vector<std::string> c = {"ttft_p95_s", "itl_p95_s", "tokens_in_per_s", "tokens_out_per_s",
                                             "requests_per_s", "running", "waiting", "kv_cache_usage"};
  return c;
}

void worker_dashboards::start(int64_t start_ms, size_t capacity) {
  std::lock_guard lock(mutex_);
  for (worker& w : workers_) w.recorder = std::make_unique<dashboard_recorder>(w.metrics->snapshot(), start_ms, capacity, columns());
}

void worker_dashboards::set_state(size_t w, bool in_rotation, const std::string& why) {
  std::lock_guard lock(mutex_);
  workers_[w].in_rotation = in_rotation;
  workers_[w].why = in_rotation ? "" : why;
}

void worker_dashboards::record(int64_t unix_ms) {
  std::lock_guard lock(mutex_);
  for (worker& w : workers_) {
    if (!w.recorder) continue;
    if (w.in_rotation) w.recorder->record(unix_ms, w.metrics->snapshot());
    else w.recorder->skip(unix_ms, w.metrics->snapshot());
  }
}

const metrics_history* worker_dashboards::history(size_t w) const {
  std::lock_guard lock(mutex_);
  return workers_[w].recorder ? &workers_[w].recorder->history() : nullptr;
}

std::string worker_dashboards::state(size_t w) const {
  std::lock_guard lock(mutex_);
  return workers_[w].in_rotation ? "in rotation" : "out of rotation: " + workers_[w].why;
}

} // namespace troupe
