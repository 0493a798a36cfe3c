#pragma once
// The gateway's own gauges on /metrics, after the engine's: open connections, completion requests in
// flight and queued (the counters --shutdown-timeout drains and --max-queue-len caps) and requests in
// flight per tenant (what max_concurrent caps). All zero on an idle server: a leaked slot shows here.

#include <cstdint>
#include <string>

#include "runtime/gateway/admission.hpp"

namespace troupe {

struct gateway_figures {
  int64_t num_connections = 0;
  admission_counts admission;
};

// The families troupe:http_connections, troupe:http_requests_in_flight, troupe:http_requests_queued and
// troupe:tenant_requests_in_flight{tenant}, each labelled model_name, in the Prometheus text format; their
// prefix is the engine's (serve --metrics-prefix).
std::string gateway_metrics_text(const gateway_figures& figures, const std::string& model_name,
                                 const std::string& prefix = "troupe");

} // namespace troupe
