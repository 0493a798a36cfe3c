#include "actors/dashboard.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

namespace troupe {

std::string dashboard_json(const dashboard_view& v) {
  using json = nlohmann::json;
  const metrics_snapshot& s = *v.live;
  auto opt = [](const std::optional<double>& x) { return x ? json(*x) : json(nullptr); };
  json buckets = json::array();
  uint64_t below = 0;
  for (size_t i = 0; i < s.batch_size.upper_bounds.size(); ++i) {
    const uint64_t cumulative = s.batch_size.counts[i];
    buckets.push_back({{"le", std::isinf(s.batch_size.upper_bounds[i]) ? json("+Inf") : json(s.batch_size.upper_bounds[i])},
                       {"steps", cumulative - below}});
    below = cumulative;
  }
  json rejected = json::object();
  for (size_t i = 0; i < num_reject_reasons; ++i)
    rejected[std::string(to_string(static_cast<reject_reason>(i)))] = s.num_rejected_by_reason[i];
  json finished = json::object();
  for (size_t i = 0; i < num_request_outcomes; ++i)
    finished[std::string(to_string(static_cast<request_outcome>(i)))] = s.num_finished_by_outcome[i];
  json out({{"model", v.model_name},
               {"window_seconds", s.window_seconds},
               {"tokens_in_per_s", s.tokens_in_per_s},
               {"tokens_out_per_s", s.tokens_out_per_s},
               {"requests_per_s", s.requests_per_s},
               {"ttft_p50_s", opt(s.ttft_p50)},
               {"ttft_p95_s", opt(s.ttft_p95)},
               {"itl_p50_s", opt(s.itl_p50)},
               {"itl_p95_s", opt(s.itl_p95)},
               {"running", s.num_running},
               {"waiting", s.num_waiting},
               {"kv_cache_usage", s.kv_cache_usage},
               {"tensor_parallel_size", s.tensor_parallel_size},
               {"collective_s_per_step", opt(s.collective_s_per_step)},
               {"batch_size", buckets},
               {"preemptions", s.num_preemptions},
               {"rejected", rejected},
               {"finished", finished}});
  out["now_ms"] = v.now_ms;
  out["started_ms"] = v.started_ms;
  out["interval_s"] = v.interval_s;
  json history = json::array();
  for (const dashboard_source& source : v.sources) {
    const metrics_history::range r = source.history->since(v.since_ms);
    json values = json::object();
    for (size_t c = 0; c < source.history->columns().size(); ++c) {
      json column = json::array();
      for (double x : r.values[c]) column.push_back(std::isfinite(x) ? json(x) : json(nullptr));
      values[source.history->columns()[c]] = std::move(column);
    }
    json h = {{"name", source.name}, {"columns", source.history->columns()}, {"t", r.unix_ms}, {"values", std::move(values)}};
    if (!source.state.empty()) h["state"] = source.state;
    history.push_back(std::move(h));
  }
  out["history"] = std::move(history);
  return out.dump();
}

} // namespace troupe
