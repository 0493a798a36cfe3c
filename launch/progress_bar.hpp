#pragma once
// A progress bar on stderr, drawn only when stderr is a terminal (and not turned off); for the benchmarks.

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include <unistd.h>

namespace troupe {

class progress_bar {
public:
  explicit progress_bar(size_t total, bool enabled = true) : total_(total), enabled_(enabled && ::isatty(STDERR_FILENO)) {}
  // Thread-safe.
  void tick() {
    if (!enabled_ || total_ == 0) return;
    std::lock_guard lock(mutex_);
    ++done_;
    const size_t width = 40, filled = width * done_ / total_;
    if (filled == last_ && done_ != total_) return;
    last_ = filled;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu", std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
                 done_, total_);
    if (done_ == total_) std::fprintf(stderr, "\n");
  }

private:
  std::mutex mutex_;
  size_t total_, done_ = 0, last_ = SIZE_MAX;
  bool enabled_;
};

} // namespace troupe
