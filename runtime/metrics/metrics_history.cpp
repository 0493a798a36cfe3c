#include "runtime/metrics/metrics_history.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>

namespace troupe {

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

metrics_history::metrics_history(std::vector<std::string> columns, size_t capacity)
    : columns_(std::move(columns)), capacity_(capacity) {
  if (columns_.empty()) throw std::invalid_argument("metrics_history: at least one column is needed");
  if (capacity_ == 0) throw std::invalid_argument("metrics_history: the capacity must be at least 1 sample");
  for (size_t i = 0; i < columns_.size(); ++i)
    if (std::find(columns_.begin(), columns_.begin() + static_cast<std::ptrdiff_t>(i), columns_[i]) !=
        columns_.begin() + static_cast<std::ptrdiff_t>(i))
      throw std::invalid_argument("metrics_history: column \"" + columns_[i] + "\" given twice");
  times_.resize(capacity_);
  values_.resize(capacity_ * columns_.size());
}

void metrics_history::add(int64_t unix_ms, std::span<const double> values) {
  if (values.size() != columns_.size())
    throw std::invalid_argument("metrics_history: a sample has " + std::to_string(columns_.size()) + " values, got " +
                                std::to_string(values.size()));
  std::lock_guard lock(mutex_);
  if (size_ > 0) {
    const int64_t newest = times_[(next_ + capacity_ - 1) % capacity_];
    if (unix_ms < newest)
      throw std::invalid_argument("metrics_history: a sample at " + std::to_string(unix_ms) + " ms is older than the newest (" +
                                  std::to_string(newest) + " ms)");
  }
  times_[next_] = unix_ms;
  std::copy(values.begin(), values.end(), values_.begin() + static_cast<std::ptrdiff_t>(next_ * columns_.size()));
  next_ = (next_ + 1) % capacity_;
  size_ = std::min(size_ + 1, capacity_);
}

metrics_history::range metrics_history::since(int64_t since_ms) const {
  range r;
  r.values.resize(columns_.size());
  std::lock_guard lock(mutex_);
  const size_t oldest = (next_ + capacity_ - size_) % capacity_;
  for (size_t k = 0; k < size_; ++k) {
    const size_t i = (oldest + k) % capacity_;
    if (times_[i] <= since_ms) continue;
    r.unix_ms.push_back(times_[i]);
    for (size_t c = 0; c < columns_.size(); ++c) r.values[c].push_back(values_[i * columns_.size() + c]);
  }
  return r;
}

std::optional<int64_t> metrics_history::latest_ms() const {
  std::lock_guard lock(mutex_);
  if (size_ == 0) return std::nullopt;
  return times_[(next_ + capacity_ - 1) % capacity_];
}

size_t metrics_history::size() const {
  std::lock_guard lock(mutex_);
  return size_;
}

} // namespace troupe
