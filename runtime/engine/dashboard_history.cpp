#include "runtime/engine/dashboard_history.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <limits>
#include <numeric>

namespace troupe {

namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

// "1", "16", "0.5", "inf": a bucket bound as a column name's tail.
std::string bound_name(double bound) {
  if (std::isinf(bound)) return "inf";
  if (bound == std::floor(bound) && std::abs(bound) < 1e15) return std::to_string(static_cast<int64_t>(bound));
  return prometheus_float(bound);
}

uint64_t sum_of(const std::array<uint64_t, num_request_outcomes>& a) { return std::accumulate(a.begin(), a.end(), uint64_t{0}); }

// later - earlier for totals that only grow; 0 when a restart made it shrink.
double increase(uint64_t later, uint64_t earlier) { return later >= earlier ? static_cast<double>(later - earlier) : 0.0; }

double or_nan(const std::optional<double>& v) { return v ? *v : nan; }

} // namespace

std::vector<std::string> dashboard_columns(const metrics_snapshot& s) {
  std::vector<std::string> columns{"ttft_p50_s",        "ttft_p95_s",     "itl_p50_s",         "itl_p95_s",
                                   "tokens_in_per_s",   "tokens_out_per_s", "requests_per_s",  "running",
                                   "waiting",           "kv_cache_usage", "batch_size_mean",   "preemptions_per_s",
                                   "rejected_per_s",    "preemptions_total", "rejected_total"};
  for (double bound : s.batch_size_total.upper_bounds) columns.push_back("steps_batch_le_" + bound_name(bound));
  return columns;
}

std::vector<double> dashboard_sample(const metrics_snapshot& before, const metrics_snapshot& after, double seconds) {
  const histogram_data ttft = histogram_increase(after.ttft_total, before.ttft_total);
  const histogram_data itl = histogram_increase(after.itl_total, before.itl_total);
  const histogram_data batch = histogram_increase(after.batch_size_total, before.batch_size_total);
  auto per_s = [&](double amount) { return seconds > 0 ? amount / seconds : nan; };

  std::vector<double> v{
      or_nan(histogram_quantile(0.5, ttft)),
      or_nan(histogram_quantile(0.95, ttft)),
      or_nan(histogram_quantile(0.5, itl)),
      or_nan(histogram_quantile(0.95, itl)),
      per_s(increase(after.num_prompt_tokens, before.num_prompt_tokens)),
      per_s(increase(after.num_generation_tokens, before.num_generation_tokens)),
      per_s(increase(sum_of(after.num_finished_by_outcome), sum_of(before.num_finished_by_outcome))),
      static_cast<double>(after.num_running),
      static_cast<double>(after.num_waiting),
      after.kv_cache_usage,
      batch.count() > 0 ? batch.sum / static_cast<double>(batch.count()) : nan,
      per_s(increase(after.num_preemptions, before.num_preemptions)),
      per_s(increase(after.num_rejected, before.num_rejected)),
      static_cast<double>(after.num_preemptions),
      static_cast<double>(after.num_rejected),
  };
  uint64_t below = 0;
  for (uint64_t cumulative : batch.counts) {
    v.push_back(static_cast<double>(cumulative - below));
    below = cumulative;
  }
  return v;
}

namespace {

// Where each wanted column sits among all of them (all, in order, when none is named).
std::vector<size_t> column_indices(const std::vector<std::string>& all, const std::vector<std::string>& wanted) {
  std::vector<size_t> out;
  if (wanted.empty()) {
    for (size_t i = 0; i < all.size(); ++i) out.push_back(i);
    return out;
  }
  for (const std::string& c : wanted) {
    const auto it = std::find(all.begin(), all.end(), c);
    if (it == all.end()) throw std::invalid_argument("dashboard_recorder: no column " + c);
    out.push_back(static_cast<size_t>(it - all.begin()));
  }
  return out;
}

std::vector<std::string> pick(const std::vector<std::string>& all, const std::vector<size_t>& kept) {
  std::vector<std::string> out;
  for (size_t i : kept) out.push_back(all[i]);
  return out;
}

} // namespace

dashboard_recorder::dashboard_recorder(const metrics_snapshot& start, int64_t start_ms, size_t capacity,
                                       const std::vector<std::string>& columns)
    : kept_(column_indices(dashboard_columns(start), columns)),
      history_(pick(dashboard_columns(start), kept_), capacity),
      previous_(start),
      previous_ms_(start_ms) {}

void dashboard_recorder::record(int64_t unix_ms, const metrics_snapshot& now) {
  if (unix_ms < previous_ms_) unix_ms = previous_ms_;
  const std::vector<double> all = dashboard_sample(previous_, now, static_cast<double>(unix_ms - previous_ms_) / 1000.0);
  std::vector<double> kept;
  for (size_t i : kept_) kept.push_back(all[i]);
  history_.add(unix_ms, kept);
  previous_ = now;
  previous_ms_ = unix_ms;
}

void dashboard_recorder::skip(int64_t unix_ms, const metrics_snapshot& now) {
  previous_ = now;
  previous_ms_ = std::max(previous_ms_, unix_ms);
}

} // namespace troupe
