#pragma once
// What the HTTP gateway serves completions with: the engine of this process (`troupe serve`), or a fleet of
// workers behind it (`troupe router`). The gateway parses, validates, renders and tokenizes a request with
// the backend's model_front, admits it, and hands its engine_requests to start(); the backend reports each
// request's acceptance, outputs and failure to the listener, as completion_events, and stops when asked.
//
// NOTE: neither CAF nor Beast appears here.

#include <memory>
#include <vector>

#include "actors/dashboard.hpp"
#include "actors/gateway_request.hpp"
#include "actors/model_front.hpp"
#include "runtime/engine/engine_metrics.hpp"

namespace troupe {

class gateway_backend {
public:
  virtual ~gateway_backend() = default;

  // The model the API answers for: names, tokenizer, chat templates, context length.
  virtual const model_front& front() const = 0;
  // False while the backend cannot serve (the engine lost a shard; no worker of some pool is healthy):
  // /health answers 503 and a load balancer moves on.
  virtual bool healthy() const = 0;
  // The metric set /metrics renders (the gateway adds its own gauges), /dashboard.json shows and the gateway
  // counts its rejections in.
  virtual engine_metrics& metrics() = 0;
  // Extra /metrics families, after the metric set's (empty: none).
  virtual std::string extra_metrics_text() const { return {}; }
  // Extra /dashboard history sources (a router's workers) beside the metric set's own: begun when the
  // gateway's history begins (each keeping `capacity` samples), sampled at the gateway's sample times.
  virtual void start_history(int64_t /*start_ms*/, size_t /*capacity*/) {}
  virtual void record_history(int64_t /*unix_ms*/) {}
  virtual std::vector<dashboard_source> history_sources() const { return {}; }
  // Starts every request of one completion; stream: the client gets outputs as they come (else the whole
  // response at the end, and a backend may then restart a request from scratch where nothing was sent).
  // Events go to `listener` while it lives, from any thread. stop() on the handle aborts what has not ended.
  virtual sink_handle start(const std::vector<engine_request>& requests, bool stream,
                            std::weak_ptr<completion_listener> listener) = 0;
};

// The engine of this process as a backend; `e` must outlive it.
std::unique_ptr<gateway_backend> make_engine_backend(engine& e);

} // namespace troupe
