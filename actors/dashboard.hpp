#pragma once
// The live dashboard: GET /dashboard is one self-contained HTML page that polls GET /dashboard.json each
// second and shows what an operator watches: TTFT p50/p95, tokens/s in and out, running and waiting
// requests, KV use, the batch-size distribution, rejections and preemptions.

#include <string>

#include "runtime/engine/engine_metrics.hpp"

namespace troupe {

// The figures of a metrics snapshot as a JSON object.
std::string dashboard_json(const metrics_snapshot& s, const std::string& model_name);

// The page (static; it fetches dashboard.json itself).
const std::string& dashboard_html();

} // namespace troupe
