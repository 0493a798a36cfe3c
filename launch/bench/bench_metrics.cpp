#include "launch/bench/bench_metrics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace troupe {

namespace {

std::vector<double> sorted(std::span<const double> values) {
  std::vector<double> v(values.begin(), values.end());
  std::sort(v.begin(), v.end());
  return v;
}

// numpy's _lerp: a + (b - a) * t, written from b's side when t >= 0.5 (so t = 1 gives b exactly).
double numpy_lerp(double a, double b, double t) {
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

double mean(std::span<const double> v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double population_std(std::span<const double> v) {
  if (v.empty()) return 0.0;
  const double m = mean(v);
  double sum = 0;
  for (double x : v) sum += (x - m) * (x - m);
  return std::sqrt(sum / static_cast<double>(v.size()));
}

// Output tokens per one-second bucket (from the earliest start), at its peak; and the most requests in
// flight at one instant, where a request is in flight over [start, start + latency).
void peaks(std::span<const request_outcome> outcomes, bench_metrics& m) {
  double first_start = INFINITY, last_end = -INFINITY;
  std::vector<std::pair<double, int>> edges;  // (time, +1 start | -1 end)
  for (const auto& o : outcomes) {
    if (!o.success) continue;
    first_start = std::min(first_start, o.start_time);
    last_end = std::max(last_end, o.start_time + o.latency);
    edges.emplace_back(o.start_time, +1);
    edges.emplace_back(o.start_time + o.latency, -1);
  }
  if (edges.empty()) return;
  std::vector<double> per_second(static_cast<size_t>(std::ceil(last_end - first_start)) + 1, 0.0);
  for (const auto& o : outcomes) {
    if (!o.success) continue;
    double t = o.start_time + o.ttft;
    auto count = [&](double at) {
      const auto bucket = static_cast<int64_t>(at - first_start);
      if (bucket >= 0 && bucket < static_cast<int64_t>(per_second.size())) per_second[static_cast<size_t>(bucket)] += 1;
    };
    count(t);
    for (double gap : o.itl) count(t += gap);
  }
  m.max_output_tokens_per_s = *std::max_element(per_second.begin(), per_second.end());
  std::sort(edges.begin(), edges.end());  // an end at the same instant as a start comes first
  int64_t now = 0;
  for (const auto& [t, delta] : edges) m.max_concurrent_requests = std::max(m.max_concurrent_requests, now += delta);
}

} // namespace

double numpy_percentile(std::span<const double> values, double p) {
  if (values.empty()) return 0.0;
  const std::vector<double> v = sorted(values);
  const double index = static_cast<double>(v.size() - 1) * (p / 100.0);
  const double below = std::floor(index);
  const auto lo = static_cast<size_t>(below);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return numpy_lerp(v[lo], v[hi], index - below);
}

double numpy_median(std::span<const double> values) {
  if (values.empty()) return 0.0;
  const std::vector<double> v = sorted(values);
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

latency_summary summarize_latency(std::span<const double> seconds, std::span<const double> percentiles) {
  latency_summary s;
  s.mean_ms = mean(seconds) * 1000;
  s.median_ms = numpy_median(seconds) * 1000;
  s.std_ms = population_std(seconds) * 1000;
  for (double p : percentiles) s.percentiles_ms.emplace_back(p, numpy_percentile(seconds, p) * 1000);
  return s;
}

bench_metrics compute_bench_metrics(std::span<const request_outcome> outcomes, double duration_s,
                                    std::span<const double> percentiles) {
  bench_metrics m;
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const auto& o : outcomes) {
    if (!o.success) {
      ++m.failed;
      m.output_lens.push_back(0);
      continue;
    }
    ++m.completed;
    m.total_input += o.prompt_len;
    m.total_output += o.output_tokens;
    m.output_lens.push_back(o.output_tokens);
    if (o.output_tokens > 1) tpots.push_back((o.latency - o.ttft) / static_cast<double>(o.output_tokens - 1));
    itls.insert(itls.end(), o.itl.begin(), o.itl.end());
    ttfts.push_back(o.ttft);
    e2els.push_back(o.latency);
  }
  m.request_throughput = static_cast<double>(m.completed) / duration_s;
  m.output_throughput = static_cast<double>(m.total_output) / duration_s;
  m.total_token_throughput = static_cast<double>(m.total_input + m.total_output) / duration_s;
  m.ttft = summarize_latency(ttfts, percentiles);
  m.tpot = summarize_latency(tpots, percentiles);
  m.itl = summarize_latency(itls, percentiles);
  m.e2el = summarize_latency(e2els, percentiles);
  peaks(outcomes, m);
  return m;
}

} // namespace troupe
