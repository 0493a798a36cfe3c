#pragma once
// The live dashboard: GET /dashboard is one self-contained HTML page (no CDN: its script and styles are
// inline, its plots hand-drawn SVG) that polls GET /dashboard.json every 2 s. It shows what an operator
// watches now (TTFT p50/p95, tokens/s in and out, running and waiting requests, KV use, rejections and
// preemptions over the last 10 s, and totals) and plots the last hour of samples of one or more sources
// (a server's own history; on a router, the fleet's as the router measured it and one per worker with a
// few columns, each worker's state beside its lines and in a line of its own), with the batch-size
// distribution.
//
// Staleness: every sample carries the server's wall-clock time and the answer the server's time now, so
// the page can tell a source whose samples stopped; and when polls fail (the server is gone) the page
// blanks its figures and says since when it has had no answer, instead of showing its last numbers.
//
// dashboard.json?since=MS answers only the samples after MS (the page asks for what it lacks).

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/engine_metrics.hpp"
#include "runtime/metrics/metrics_history.hpp"

namespace troupe {

// One source of plotted history: its name (a model, a worker, a pool) and its samples.
struct dashboard_source {
  std::string name;
  const metrics_history* history = nullptr;
  std::string state;  // a router's worker: "in rotation" or "out of rotation: WHY"; empty otherwise
};

// What one /dashboard.json answer holds.
struct dashboard_view {
  const metrics_snapshot* live = nullptr;  // the figures of the last 10 s, and totals; required
  std::string model_name;
  std::vector<dashboard_source> sources;
  double interval_s = 5;          // seconds between samples
  int64_t since_ms = INT64_MIN;   // only samples after this time
  int64_t now_ms = 0;             // the server's wall clock, Unix milliseconds
  int64_t started_ms = 0;         // when the history began: a page that sees it change starts afresh
};

// The view as a JSON object: the live figures at the top level (model, tokens_in_per_s, ttft_p50_s,
// running, batch_size, rejected, finished, ...), now_ms, started_ms, interval_s, and
// history: [{name, columns, t: [ms...], values: {column: [...]}[, state]}] with null for a NaN value.
std::string dashboard_json(const dashboard_view& v);

// The page (static; it fetches dashboard.json itself).
const std::string& dashboard_html();

} // namespace troupe
