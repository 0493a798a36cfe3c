#pragma once
// The router's /dashboard, worker by worker. The fleet's own lines are the router's metric set: TTFT, ITL,
// tokens/s and requests/s measured at the router (what clients see, failover and the router's hop included;
// percentiles over every request, which per-worker percentiles could not be combined into) and the running,
// waiting and KV figures the workers report. Beside them, each worker gets a metric set of what the router saw
// of the requests it served and the load it reported, sampled into a history of a few columns (its TTFT and
// ITL p95, tokens/s, running, waiting, KV use) when the gateway samples its own. A worker out of rotation gets
// no samples, so its lines end where it left and the page marks them late, beside the reason it left; back in
// rotation, its next sample covers only the time since.
//
// Thread-safe: the router's thread feeds the metric sets and the states, the gateway's samples and reads.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine/dashboard_history.hpp"
#include "runtime/engine/engine_metrics.hpp"
#include "runtime/metrics/metrics_history.hpp"

namespace troupe {

class worker_dashboards {
public:
  // One metric set per worker, named as given, configured as `base` (the router's: model name, limits).
  worker_dashboards(const engine_metrics_config& base, std::vector<std::string> worker_names);

  // The columns of a worker's history, in order.
  static const std::vector<std::string>& columns();

  // Begins the histories at start_ms, each keeping `capacity` samples. Before it, record() does nothing.
  void start(int64_t start_ms, size_t capacity);

  // What the router saw of worker w's requests and load; feed it as the router's own metric set.
  engine_metrics& metrics(size_t w) { return *workers_[w].metrics; }

  // Worker w entered rotation (why empty) or left it (why: the reason, shown beside its lines).
  void set_state(size_t w, bool in_rotation, const std::string& why);

  // A sample of every worker in rotation, at unix_ms; one out of rotation gets none.
  void record(int64_t unix_ms);

  size_t size() const { return workers_.size(); }
  const std::string& name(size_t w) const { return workers_[w].name; }
  // Worker w's history; nullptr before start().
  const metrics_history* history(size_t w) const;
  // "in rotation", or "out of rotation: WHY".
  std::string state(size_t w) const;

private:
  struct worker {
    std::string name;
    std::unique_ptr<engine_metrics> metrics;
    std::unique_ptr<dashboard_recorder> recorder;
    bool in_rotation = false;
    std::string why = "not checked yet";
  };
  mutable std::mutex mutex_;  // the recorders' creation and the states
  std::vector<worker> workers_;
};

} // namespace troupe
