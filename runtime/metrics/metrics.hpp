#pragma once
// runtime/metrics/: the instruments every layer counts with (this registry, sliding windows for live
// rates); each subsystem keeps its own set (engine/engine_metrics, gateway/gateway_metrics). Includes
// nothing of troupe.
//
// A small thread-safe metrics registry: counters, gauges and histograms, each family with a fixed
// list of label names, rendered in the Prometheus text format 0.0.4 byte for byte as Python's
// prometheus_client renders it (what vLLM's /metrics serves), so tools written against vLLM read
// troupe's /metrics unchanged.
//
// What the rendering copies from prometheus_client (its generate_latest):
//   - families in registration order, series in order of first use; an unlabelled family has its one
//     series from the start, a labelled one shows only its HELP/TYPE lines until a series is used;
//   - a counter registered as `x` (or `x_total`) is named `x_total` in HELP, TYPE and its sample;
//   - labels sorted by name (`le` included), values escaped (\\, \", \n); HELP escapes \\ and \n;
//   - histogram samples `_bucket` (cumulative, `+Inf` last), then `_count`, then `_sum`;
//   - numbers as Python's repr of a float ("3.0", "0.1", "1e-05"), switched to Go's exponent form
//     from 1e6 up ("1.234567e+06"): see prometheus_float.
// No `_created` series: prometheus_client adds them unless disabled, but they carry process start
// times, not measurements, and Prometheus ignores them in this format.
//
// Cost: inc/set/observe are a few relaxed atomic operations (no lock), so the scheduler's step loop
// and the gateway's threads can update freely. Creating a series, adding a family and rendering take
// a mutex. NOTE: series live as long as their registry, at a fixed address: hot paths look a series
// up once (labels(...)) and keep the reference.

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

// A number as prometheus_client writes it: Python's repr of the float, except that positive values
// from 1e6 up take Go's exponent form ("1.234567e+06", "1e+07"); "+Inf", "-Inf", "NaN".
std::string prometheus_float(double value);

// A label value with \, " and newline escaped as the text format requires.
std::string escape_label_value(std::string_view value);

// A value that only goes up.
class counter {
public:
  // Adds amount; throws std::invalid_argument for a negative one (a counter never goes down).
  void inc(double amount = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class gauge {
public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void dec(double amount = 1.0) { value_.fetch_add(-amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0.0};
};

// A histogram's contents at one moment, also the input of histogram_quantile.
struct histogram_data {
  std::vector<double> upper_bounds;  // ascending, +Inf last
  std::vector<uint64_t> counts;      // cumulative: counts[i] observations were <= upper_bounds[i]
  double sum = 0;

  uint64_t count() const { return counts.empty() ? 0 : counts.back(); }
};

// Observations counted into fixed buckets, with their sum.
class histogram {
public:
  // upper_bounds: ascending, +Inf last, owned by the family and outliving this series.
  explicit histogram(std::span<const double> upper_bounds);

  // Counts value into the first bucket whose bound is >= value. A NaN is dropped (it has no bucket,
  // and would turn the sum into NaN for good).
  void observe(double value);

  // Counts and sum now. Under concurrent observe() calls the sum may lag the counts by the
  // observations in flight; the counts always agree with each other (_count is the +Inf bucket).
  histogram_data data() const;

  std::span<const double> upper_bounds() const { return bounds_; }

private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket, not cumulative
  std::atomic<double> sum_{0.0};
};

// The value at quantile q (0..1) of a histogram, estimated as Prometheus' histogram_quantile does:
// find the bucket holding rank q * count, interpolate linearly between its bounds (the first bucket
// starts at 0; a rank in the +Inf bucket answers the highest finite bound). Empty when the histogram
// has no observations or q is NaN; -Inf for q < 0 and +Inf for q > 1, like Prometheus.
std::optional<double> histogram_quantile(double q, const histogram_data& h);

// What a histogram counted between two readings of it (later minus earlier, bucket by bucket, and the
// sums), as Prometheus' increase() sees it, so quantiles can cover one interval. An earlier reading
// with other bounds, or with counts above the later one's (the process restarted), is taken as empty:
// the answer is the later reading.
histogram_data histogram_increase(const histogram_data& later, const histogram_data& earlier);

enum class metric_type : uint8_t { counter, gauge, histogram };

// One metric: a name, a help text, label names, and one series per combination of label values.
template <class Series>
class metric_family {
public:
  metric_family(std::string name, std::string help, std::vector<std::string> label_names,
                std::vector<double> upper_bounds);
  metric_family(const metric_family&) = delete;
  metric_family& operator=(const metric_family&) = delete;

  // The series for these label values (one per label name, in order), created at zero on first use.
  // Throws std::invalid_argument when the number of values differs from the number of label names.
  Series& labels(std::initializer_list<std::string_view> values);
  Series& labels(std::span<const std::string> values);

  // The name as rendered (a counter's with its _total suffix).
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends the family's HELP, TYPE and sample lines.
  void render(std::string& out) const;

private:
  struct entry {
    std::vector<std::pair<std::string, std::string>> sorted_labels;  // (name, escaped value), by name
    std::unique_ptr<Series> series;
  };

  Series& find_or_add(std::vector<std::string> values);

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> upper_bounds_;  // histograms only: ascending, +Inf last

  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, size_t> index_;  // label values -> position in entries_
  std::vector<entry> entries_;                        // in order of first use
};

// Defined for these three in metrics.cpp.
extern template class metric_family<counter>;
extern template class metric_family<gauge>;
extern template class metric_family<histogram>;

using counter_family = metric_family<counter>;
using gauge_family = metric_family<gauge>;
using histogram_family = metric_family<histogram>;

// Owns metric families and renders them all.
class metrics_registry {
public:
  // Each adds a family and returns it (it lives as long as the registry). Throw std::invalid_argument
  // for a name taken or not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), a label name that is
  // not [a-zA-Z_][a-zA-Z0-9_]* or starts with "__" or repeats, and, for histograms, a label named
  // "le" or bounds that are empty, NaN or not strictly ascending. A counter named `x_total` is
  // registered as `x` (rendered `x_total` either way), as prometheus_client does.
  counter_family& add_counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  gauge_family& add_gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  // upper_bounds: the buckets' upper bounds, ascending; +Inf is appended when not given last.
  histogram_family& add_histogram(std::string name, std::string help, std::vector<double> upper_bounds,
                                  std::vector<std::string> label_names = {});

  // Every family in the text format 0.0.4 (serve as "text/plain; version=0.0.4; charset=utf-8").
  std::string render() const;

private:
  struct family_ref {
    metric_type type;
    size_t index;  // into the list of its type
  };

  // Checks the names, then records the family's base and rendered names as taken. Holds mutex_.
  void claim(const std::string& base_name, const std::string& rendered_name,
             const std::vector<std::string>& label_names, metric_type type);

  mutable std::mutex mutex_;
  std::vector<std::string> names_;  // base and rendered names taken
  std::vector<family_ref> order_;
  std::vector<std::unique_ptr<counter_family>> counters_;
  std::vector<std::unique_ptr<gauge_family>> gauges_;
  std::vector<std::unique_ptr<histogram_family>> histograms_;
};

} // namespace troupe
