#pragma once
// The recent past of a few figures, for plots: a ring of timestamped samples, each one value per named
// column (e.g. a sample every 5 s for an hour: 720 samples). Adding is O(columns); memory stays fixed.
// One history per source (a server, a router's worker, a pool): a page that plots several sources gets
// one history each.
//
// Timestamps are wall-clock milliseconds since the Unix epoch, taken by whoever samples, so a reader
// (a browser, another process) can tell how old the newest sample is.
//
// Thread-safe: one thread may add while others read.

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace troupe {

// The wall clock now, in milliseconds since the Unix epoch: the time a sample carries.
int64_t unix_ms_now();

class metrics_history {
public:
  // columns: the names of each sample's values, in order (at least one, no repeats); capacity: the
  // samples kept (>= 1), the oldest dropped first. Throws std::invalid_argument otherwise.
  metrics_history(std::vector<std::string> columns, size_t capacity);

  // Appends a sample taken at unix_ms with one value per column (NaN for "no value", such as no first
  // token in the interval). Throws std::invalid_argument for a wrong number of values, and for a time
  // earlier than the newest sample's (a reader asks "what is newer than t").
  void add(int64_t unix_ms, std::span<const double> values);

  // Samples after since_ms, oldest first: times, and per column its values ([column][sample]).
  struct range {
    std::vector<int64_t> unix_ms;
    std::vector<std::vector<double>> values;
  };
  range since(int64_t since_ms) const;
  // Every sample kept.
  range all() const { return since(INT64_MIN); }

  // The newest sample's time; empty before the first.
  std::optional<int64_t> latest_ms() const;
  size_t size() const;
  size_t capacity() const { return capacity_; }
  const std::vector<std::string>& columns() const { return columns_; }

private:
  std::vector<std::string> columns_;
  size_t capacity_;

  mutable std::mutex mutex_;
  size_t next_ = 0;  // ring position the next sample goes to
  size_t size_ = 0;
  std::vector<int64_t> times_;  // [capacity]
  std::vector<double> values_;  // [capacity, columns]
};

} // namespace troupe
