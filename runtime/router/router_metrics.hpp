#pragma once
// The series `troupe router` adds to its /metrics, per worker (labels pool and worker, the worker's URL) and
// per pool: whether each worker is in rotation, requests routed, in flight, sent to their prefix's worker or
// passed on from it (bounded load), moved off a failed worker, and the load each worker last reported.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/router/request_router.hpp"

namespace troupe {

struct router_worker_figures {
  std::string worker;  // its URL
  std::string pool;
  bool healthy = false;
  int32_t in_flight = 0;
  worker_route_counts counts;
  worker_load load;
};

struct router_figures {
  std::vector<std::string> pools;  // in bucket order
  std::vector<router_worker_figures> workers;
};

// The figures of a router's state now.
router_figures router_figures_of(const request_router& router, const std::vector<std::string>& worker_names);

// The families PREFIX:router_worker_healthy, PREFIX:router_requests_routed_total,
// PREFIX:router_requests_in_flight, PREFIX:router_prefix_affinity_hits_total,
// PREFIX:router_prefix_affinity_overflows_total, PREFIX:router_failovers_total, PREFIX:router_worker_queue_length,
// PREFIX:router_worker_kv_cache_usage_perc (labels model_name, pool, worker) and
// PREFIX:router_pool_healthy_workers, PREFIX:router_pool_requests_in_flight (model_name, pool), in the
// Prometheus text format; prefix is the router's --metrics-prefix (troupe, or vllm beside vLLM's names).
std::string router_metrics_text(const router_figures& figures, const std::string& model_name, const std::string& prefix = "troupe");

} // namespace troupe
