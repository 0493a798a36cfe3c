#pragma once
// The dashboard's past: every few seconds, what the engine did since the previous sample (latency
// quantiles, token and request rates, the batch sizes of its steps, rejections and preemptions) and the
// gauges at that moment (running, waiting, KV use), kept for the last hour in a metrics_history.
//
// A sample covers exactly the time since the one before: rates are increases of the cumulative
// counters divided by the seconds between, quantiles come from the histograms' increase (as
// Prometheus' rate() and histogram_quantile() would compute them), not from the live page's 10 s
// window. So a plot of 5 s samples shows each 5 s once.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/engine_metrics.hpp"
#include "runtime/metrics/metrics_history.hpp"

namespace troupe {

// The columns of a dashboard sample, in order: ttft_p50_s, ttft_p95_s, itl_p50_s, itl_p95_s,
// tokens_in_per_s, tokens_out_per_s, requests_per_s, running, waiting, kv_cache_usage, batch_size_mean,
// preemptions_per_s, rejected_per_s, preemptions_total, rejected_total, then steps_batch_le_B for each
// bound B of the snapshot's batch-size buckets ("steps_batch_le_inf" last): the steps in the interval
// whose batch held at most B sequences (per bucket, not cumulative).
std::vector<std::string> dashboard_columns(const metrics_snapshot& s);

// One sample, in dashboard_columns order: what happened between two snapshots taken `seconds` apart,
// and the gauges and totals of the later one. A quantile or mean with nothing to measure (no first
// token in the interval), and every rate when seconds <= 0, is NaN.
std::vector<double> dashboard_sample(const metrics_snapshot& before, const metrics_snapshot& after, double seconds);

// Turns snapshots taken now and then into the history: each record() adds the sample since the
// previous one. Not thread-safe to record from two threads; history() may be read from any.
class dashboard_recorder {
public:
  // start: the snapshot the first sample counts from, taken at start_ms (Unix milliseconds).
  // capacity: samples kept (>= 1). columns: which of dashboard_columns to keep, in that order (empty: all;
  // a router's worker keeps a few). Throws std::invalid_argument for 0 or a column that is not one.
  dashboard_recorder(const metrics_snapshot& start, int64_t start_ms, size_t capacity, const std::vector<std::string>& columns = {});

  // Adds the sample from the previous snapshot to `now`, taken at unix_ms. A time before the previous
  // one (the wall clock was set back) is recorded as the previous time, its rates NaN.
  void record(int64_t unix_ms, const metrics_snapshot& now);

  // Takes `now` (at unix_ms) as the previous snapshot without a sample: the next sample covers only the
  // time after it (a worker that was out of rotation has no sample for that time, not one averaged over it).
  void skip(int64_t unix_ms, const metrics_snapshot& now);

  const metrics_history& history() const { return history_; }

private:
  std::vector<size_t> kept_;  // indices into dashboard_columns of the columns kept
  metrics_history history_;
  metrics_snapshot previous_;
  int64_t previous_ms_;
};

} // namespace troupe
