#pragma once
// `troupe router`'s backend: the gateway (the same HTTP layer, API, errors, keys, tenants and admission as
// `troupe serve`) parses, renders and tokenizes requests with this model_front, and this router sends each
// request to a worker chosen by runtime/router/request_router, through the worker's native client port
// (actors/worker_link.hpp), and relays its tokens back as they come.
//
// Health: every health_interval_s each worker's GET /health is probed; a worker is in rotation while it
// answers 200 and its native connection is up, and out of it from the third failed probe in a row or a lost
// connection until both are back. Its load (running, waiting, KV use) comes over the native connection at each probe.
// A worker lost mid-request: requests it had not started (no output yet; a non-streaming one at any point,
// since nothing has reached its client) go to another worker, tried ones excluded; a stream that had
// started ends with an error event.
//
// NOTE: neither Asio nor CAF appears here.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/gateway_backend.hpp"
#include "actors/model_front.hpp"
#include "runtime/router/fleet_config.hpp"
#include "runtime/router/request_router.hpp"

namespace troupe {

struct router_options {
  fleet_config fleet;
  model_front_options model;           // the workers' model folder: for templates, the tokenizer and the limits
  routing_policy policy = routing_policy::prefix_affinity;
  int32_t block_size = 16;             // the workers' --block-size: affinity keys are their cache's block keys
  int32_t affinity_blocks = 4;
  double load_factor = 1.25;
  int32_t load_slack = 8;
  double health_interval_s = 1.0;      // between probes of each worker's /health (and load)
  std::string worker_api_key;          // what the workers' native ports take (their --api-key)
  std::string metrics_prefix = std::string(default_metrics_prefix);  // /metrics names PREFIX:name, troupe:router_* included
};

class router : public gateway_backend {
public:
  // Loads the model front and starts checking the workers; throws user_error on a bad folder or option.
  explicit router(const router_options& options);
  ~router() override;  // stop()
  router(const router&) = delete;
  router& operator=(const router&) = delete;

  const model_front& front() const override;
  // Every pool has a worker in rotation.
  bool healthy() const override;
  engine_metrics& metrics() override;
  std::string extra_metrics_text() const override;
  // /dashboard: each worker's history beside the fleet's (runtime/router/worker_dashboards.hpp).
  void start_history(int64_t start_ms, size_t capacity) override;
  void record_history(int64_t unix_ms) override;
  std::vector<dashboard_source> history_sources() const override;
  sink_handle start(const std::vector<engine_request>& requests, bool stream,
                    std::weak_ptr<completion_listener> listener) override;

  // Workers in rotation now.
  int32_t num_healthy_workers() const;
  // Closes every worker connection (requests still running end with an error) and joins the I/O thread.
  // Idempotent.
  void stop();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace troupe
