#include "runtime/router/router_metrics.hpp"

#include "runtime/metrics/metrics.hpp"

namespace troupe {

router_figures router_figures_of(const request_router& router, const std::vector<std::string>& worker_names) {
  router_figures f;
  for (const pool_config& p : router.pools()) f.pools.push_back(p.name);
  for (size_t w = 0; w < router.num_workers(); ++w) {
    router_worker_figures x;
    x.worker = worker_names[w];
    x.pool = router.pools()[router.pool_of(w)].name;
    x.healthy = router.healthy(w);
    x.in_flight = router.in_flight(w);
    x.counts = router.counts(w);
    x.load = router.load(w);
    f.workers.push_back(std::move(x));
  }
  return f;
}

std::string router_metrics_text(const router_figures& f, const std::string& model_name, const std::string& prefix) {
  metrics_registry r;
  const std::vector<std::string> labels = {"model_name", "pool", "worker"};
  auto& healthy = r.add_gauge(prefix + ":router_worker_healthy",
                              "1 while the worker is in rotation (its /health answers 200 and its native port is connected).", labels);
  auto& routed = r.add_counter(prefix + ":router_requests_routed", "Requests the router sent to the worker.", labels);
  auto& in_flight = r.add_gauge(prefix + ":router_requests_in_flight", "Requests the router sent to the worker that have not ended.", labels);
  auto& hits = r.add_counter(prefix + ":router_prefix_affinity_hits",
                             "Requests sent to the worker because earlier requests with the same leading blocks went there.", labels);
  auto& overflows = r.add_counter(prefix + ":router_prefix_affinity_overflows",
                                  "Requests whose prefix's worker this was, passed to another because it was over the load bound.", labels);
  auto& failovers = r.add_counter(prefix + ":router_failovers",
                                  "Requests that left the worker unfinished when it failed, and were routed again.", labels);
  auto& queue = r.add_gauge(prefix + ":router_worker_queue_length", "Requests running or waiting, as the worker last reported.", labels);
  auto& kv = r.add_gauge(prefix + ":router_worker_kv_cache_usage_perc", "KV cache use, 0 to 1, as the worker last reported.", labels);
  auto& pool_healthy = r.add_gauge(prefix + ":router_pool_healthy_workers", "Workers of the pool in rotation.", {"model_name", "pool"});
  auto& pool_in_flight =
      r.add_gauge(prefix + ":router_pool_requests_in_flight", "Requests in flight on the pool's workers.", {"model_name", "pool"});
  for (const std::string& p : f.pools) {
    pool_healthy.labels({model_name, p});
    pool_in_flight.labels({model_name, p});
  }
  for (const router_worker_figures& w : f.workers) {
    const std::vector<std::string> values = {model_name, w.pool, w.worker};
    healthy.labels(values).set(w.healthy ? 1 : 0);
    routed.labels(values).inc(static_cast<double>(w.counts.num_routed));
    in_flight.labels(values).set(w.in_flight);
    hits.labels(values).inc(static_cast<double>(w.counts.num_affinity_hits));
    overflows.labels(values).inc(static_cast<double>(w.counts.num_affinity_overflows));
    failovers.labels(values).inc(static_cast<double>(w.counts.num_failovers));
    queue.labels(values).set(static_cast<double>(w.load.num_running + w.load.num_waiting));
    kv.labels(values).set(w.load.kv_cache_usage);
    pool_healthy.labels({model_name, w.pool}).inc(w.healthy ? 1 : 0);
    pool_in_flight.labels({model_name, w.pool}).inc(w.in_flight);
  }
  return r.render();
}

} // namespace troupe
