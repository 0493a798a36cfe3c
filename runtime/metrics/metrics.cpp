#include "runtime/metrics/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace troupe {

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

bool is_metric_name(std::string_view s) {
  auto first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; };
  auto rest = [&](char c) { return first(c) || (c >= '0' && c <= '9'); };
  return !s.empty() && first(s[0]) && std::all_of(s.begin() + 1, s.end(), rest);
}

bool is_label_name(std::string_view s) {
  auto first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  auto rest = [&](char c) { return first(c) || (c >= '0' && c <= '9'); };
  return !s.empty() && first(s[0]) && std::all_of(s.begin() + 1, s.end(), rest) && !s.starts_with("__");
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// `{a="1",b="2"}`, or nothing without labels. extra (the histogram's `le`) joins in name order.
void append_labels(std::string& out, const std::vector<std::pair<std::string, std::string>>& sorted,
                   const std::pair<std::string, std::string>* extra = nullptr) {
  if (sorted.empty() && extra == nullptr) return;
  out += '{';
  bool first = true;
  auto put = [&](const std::pair<std::string, std::string>& label) {
    if (!first) out += ',';
    first = false;
    out += label.first;
    out += "=\"";
    out += label.second;
    out += '"';
  };
  bool extra_done = extra == nullptr;
  for (const auto& label : sorted) {
    if (!extra_done && extra->first < label.first) {
      put(*extra);
      extra_done = true;
    }
    put(label);
  }
  if (!extra_done) put(*extra);
  out += '}';
}

void append_sample(std::string& out, std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
                   double value, const std::pair<std::string, std::string>* extra = nullptr) {
  out += name;
  append_labels(out, labels, extra);
  out += ' ';
  out += prometheus_float(value);
  out += '\n';
}

} // namespace

std::string prometheus_float(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";

  // The shortest digits that read back as value, as Python's repr picks them: "[-]d[.ddd]e±XX".
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  (void)ec;  // 64 bytes hold any double
  std::string_view sci(buf, static_cast<size_t>(end - buf));
  const bool negative = sci.front() == '-';
  if (negative) sci.remove_prefix(1);
  const size_t e = sci.find('e');
  std::string digits(1, sci[0]);
  if (e > 1) digits.append(sci.substr(2, e - 2));
  int exponent = 0;
  std::string_view exp_text = sci.substr(e + 1);
  const bool exp_negative = exp_text.front() == '-';
  std::from_chars(exp_text.data() + 1, exp_text.data() + exp_text.size(), exponent);
  if (exp_negative) exponent = -exponent;

  // Python's repr writes exponents outside [-4, 16) the way to_chars did.
  if (exponent < -4 || exponent >= 16) return std::string(buf, end);

  std::string fixed;
  if (exponent >= 0) {
    const size_t int_digits = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      fixed = digits + std::string(int_digits - digits.size(), '0') + ".0";
    } else {
      fixed = digits.substr(0, int_digits) + "." + digits.substr(int_digits);
    }
  } else {
    fixed = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  }

  // prometheus_client's floatToGoString: Go switches to exponents sooner than Python, from a 7-digit
  // integer part; the exponent is written "e+0" followed by its digits (so 1e15 is "1e+015").
  const size_t dot = fixed.find('.');
  if (!negative && value > 0 && dot > 6) {
    std::string mantissa = fixed.substr(0, 1) + "." + fixed.substr(1, dot - 1) + fixed.substr(dot + 1);
    while (!mantissa.empty() && (mantissa.back() == '0' || mantissa.back() == '.')) mantissa.pop_back();
    return mantissa + "e+0" + std::to_string(dot - 1);
  }
  return negative ? "-" + fixed : fixed;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"') out += "\\\"";
    else out += c;
  }
  return out;
}

void counter::inc(double amount) {
  if (amount < 0) throw std::invalid_argument("a counter can only go up; inc() got " + prometheus_float(amount));
  value_.fetch_add(amount, std::memory_order_relaxed);
}

histogram::histogram(std::span<const double> upper_bounds)
    : bounds_(upper_bounds), buckets_(std::make_unique<std::atomic<uint64_t>[]>(upper_bounds.size())) {}

void histogram::observe(double value) {
  if (std::isnan(value)) return;
  // The last bound is +Inf, so every other value finds its bucket.
  const auto i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

histogram_data histogram::data() const {
  histogram_data d;
  d.upper_bounds.assign(bounds_.begin(), bounds_.end());
  d.counts.resize(bounds_.size());
  uint64_t total = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    d.counts[i] = total;
  }
  d.sum = sum_.load(std::memory_order_relaxed);
  return d;
}

std::optional<double> histogram_quantile(double q, const histogram_data& h) {
  if (std::isnan(q)) return std::nullopt;
  if (q < 0) return -inf;
  if (q > 1) return inf;
  const size_t n = std::min(h.upper_bounds.size(), h.counts.size());
  if (n == 0 || h.counts[n - 1] == 0) return std::nullopt;
  if (n == 1) return std::nullopt;  // only the +Inf bucket: nothing to interpolate between

  const double rank = q * static_cast<double>(h.counts[n - 1]);
  size_t b = 0;
  while (b < n - 1 && static_cast<double>(h.counts[b]) < rank) ++b;
  if (b == n - 1) return h.upper_bounds[n - 2];
  if (b == 0 && h.upper_bounds[0] <= 0) return h.upper_bounds[0];

  const double start = b == 0 ? 0.0 : h.upper_bounds[b - 1];
  const double below = b == 0 ? 0.0 : static_cast<double>(h.counts[b - 1]);
  const double in_bucket = static_cast<double>(h.counts[b]) - below;
  return start + (h.upper_bounds[b] - start) * ((rank - below) / in_bucket);
}

histogram_data histogram_increase(const histogram_data& later, const histogram_data& earlier) {
  if (earlier.upper_bounds != later.upper_bounds || earlier.counts.size() != later.counts.size()) return later;
  for (size_t i = 0; i < later.counts.size(); ++i)
    if (earlier.counts[i] > later.counts[i]) return later;
  histogram_data d = later;
  for (size_t i = 0; i < d.counts.size(); ++i) d.counts[i] -= earlier.counts[i];
  d.sum -= earlier.sum;
  return d;
}

template <class Series>
metric_family<Series>::metric_family(std::string name, std::string help, std::vector<std::string> label_names,
                                     std::vector<double> upper_bounds)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
      upper_bounds_(std::move(upper_bounds)) {}

template <class Series>
Series& metric_family<Series>::labels(std::initializer_list<std::string_view> values) {
  return find_or_add(std::vector<std::string>(values.begin(), values.end()));
}

template <class Series>
Series& metric_family<Series>::labels(std::span<const std::string> values) {
  return find_or_add(std::vector<std::string>(values.begin(), values.end()));
}

template <class Series>
Series& metric_family<Series>::find_or_add(std::vector<std::string> values) {
  if (values.size() != label_names_.size()) {
    throw std::invalid_argument(name_ + " has " + std::to_string(label_names_.size()) + " label(s), got " +
                                std::to_string(values.size()) + " value(s)");
  }
  std::lock_guard lock(mutex_);
  if (auto it = index_.find(values); it != index_.end()) return *entries_[it->second].series;

  entry e;
  for (size_t i = 0; i < values.size(); ++i) e.sorted_labels.emplace_back(label_names_[i], escape_label_value(values[i]));
  std::sort(e.sorted_labels.begin(), e.sorted_labels.end());
  if constexpr (std::is_same_v<Series, histogram>) {
    e.series = std::make_unique<histogram>(upper_bounds_);
  } else {
    e.series = std::make_unique<Series>();
  }
  Series& series = *e.series;
  index_.emplace(std::move(values), entries_.size());
  entries_.push_back(std::move(e));
  return series;
}

template <class Series>
void metric_family<Series>::render(std::string& out) const {
  const char* type = std::is_same_v<Series, counter> ? "counter" : std::is_same_v<Series, gauge> ? "gauge" : "histogram";
  out += "# HELP " + name_ + " " + escape_help(help_) + "\n";
  out += "# TYPE " + name_ + " " + type + "\n";

  std::lock_guard lock(mutex_);
  for (const entry& e : entries_) {
    if constexpr (std::is_same_v<Series, histogram>) {
      const histogram_data d = e.series->data();
      const std::string bucket_name = name_ + "_bucket";
      for (size_t i = 0; i < d.upper_bounds.size(); ++i) {
        const std::pair<std::string, std::string> le{"le", prometheus_float(d.upper_bounds[i])};
        append_sample(out, bucket_name, e.sorted_labels, static_cast<double>(d.counts[i]), &le);
      }
      append_sample(out, name_ + "_count", e.sorted_labels, static_cast<double>(d.count()));
      append_sample(out, name_ + "_sum", e.sorted_labels, d.sum);
    } else {
      append_sample(out, name_, e.sorted_labels, e.series->value());
    }
  }
}

template class metric_family<counter>;
template class metric_family<gauge>;
template class metric_family<histogram>;

void metrics_registry::claim(const std::string& base_name, const std::string& rendered_name,
                             const std::vector<std::string>& label_names, metric_type type) {
  if (!is_metric_name(base_name)) throw std::invalid_argument("not a Prometheus metric name: \"" + base_name + "\"");
  for (const std::string& taken : names_) {
    if (taken == base_name || taken == rendered_name) {
      throw std::invalid_argument("metric " + rendered_name + " is already registered");
    }
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!is_label_name(label)) throw std::invalid_argument(base_name + ": not a Prometheus label name: \"" + label + "\"");
    if (type == metric_type::histogram && label == "le") {
      throw std::invalid_argument(base_name + ": a histogram cannot have a label named le (its buckets use it)");
    }
    if (std::find(label_names.begin(), label_names.begin() + static_cast<std::ptrdiff_t>(i), label) !=
        label_names.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw std::invalid_argument(base_name + ": label \"" + label + "\" given twice");
    }
  }
  names_.push_back(base_name);
  if (rendered_name != base_name) names_.push_back(rendered_name);
}

counter_family& metrics_registry::add_counter(std::string name, std::string help, std::vector<std::string> label_names) {
  if (name.ends_with("_total")) name.resize(name.size() - 6);
  const std::string rendered = name + "_total";
  std::lock_guard lock(mutex_);
  claim(name, rendered, label_names, metric_type::counter);
  const bool unlabelled = label_names.empty();
  auto& family = counters_.emplace_back(
      std::make_unique<counter_family>(rendered, std::move(help), std::move(label_names), std::vector<double>{}));
  order_.push_back({metric_type::counter, counters_.size() - 1});
  if (unlabelled) family->labels({});
  return *family;
}

gauge_family& metrics_registry::add_gauge(std::string name, std::string help, std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  claim(name, name, label_names, metric_type::gauge);
  const bool unlabelled = label_names.empty();
  auto& family = gauges_.emplace_back(
      std::make_unique<gauge_family>(std::move(name), std::move(help), std::move(label_names), std::vector<double>{}));
  order_.push_back({metric_type::gauge, gauges_.size() - 1});
  if (unlabelled) family->labels({});
  return *family;
}

histogram_family& metrics_registry::add_histogram(std::string name, std::string help, std::vector<double> upper_bounds,
                                                  std::vector<std::string> label_names) {
  if (upper_bounds.empty()) throw std::invalid_argument(name + ": a histogram needs at least one bucket");
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (std::isnan(upper_bounds[i]) || (i > 0 && !(upper_bounds[i - 1] < upper_bounds[i]))) {
      throw std::invalid_argument(name + ": histogram bounds must be strictly ascending numbers");
    }
  }
  if (upper_bounds.back() != inf) upper_bounds.push_back(inf);

  std::lock_guard lock(mutex_);
  claim(name, name, label_names, metric_type::histogram);
  const bool unlabelled = label_names.empty();
  auto& family = histograms_.emplace_back(std::make_unique<histogram_family>(
      std::move(name), std::move(help), std::move(label_names), std::move(upper_bounds)));
  order_.push_back({metric_type::histogram, histograms_.size() - 1});
  if (unlabelled) family->labels({});
  return *family;
}

std::string metrics_registry::render() const {
  std::string out;
  std::lock_guard lock(mutex_);
  for (const family_ref& ref : order_) {
    switch (ref.type) {
    case metric_type::counter: counters_[ref.index]->render(out); break;
    case metric_type::gauge: gauges_[ref.index]->render(out); break;
    case metric_type::histogram: histograms_[ref.index]->render(out); break;
    }
  }
  return out;
}

} // namespace troupe
