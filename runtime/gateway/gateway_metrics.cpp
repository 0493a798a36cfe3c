#include "runtime/gateway/gateway_metrics.hpp"

#include "runtime/metrics/metrics.hpp"

namespace troupe {

std::string gateway_metrics_text(const gateway_figures& figures, const std::string& model_name, const std::string& prefix) {
  metrics_registry r;
  r.add_gauge(prefix + ":http_connections", "Open HTTP connections.", {"model_name"})
      .labels({model_name})
      .set(static_cast<double>(figures.num_connections));
  r.add_gauge(prefix + ":http_requests_in_flight", "Completion requests admitted by the gateway and not ended yet.",
              {"model_name"})
      .labels({model_name})
      .set(static_cast<double>(figures.admission.num_in_flight));
  r.add_gauge(prefix + ":http_requests_queued",
              "Admitted completion requests without output yet (what --max-queue-len caps).", {"model_name"})
      .labels({model_name})
      .set(static_cast<double>(figures.admission.num_queued));
  auto& tenants = r.add_gauge(prefix + ":tenant_requests_in_flight",
                              "Completion requests in flight per tenant (what max_concurrent caps).",
                              {"model_name", "tenant"});
  for (const auto& [tenant, n] : figures.admission.tenant_in_flight)
    tenants.labels({model_name, tenant}).set(static_cast<double>(n));
  return r.render();
}

} // namespace troupe
