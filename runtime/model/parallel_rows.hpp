#pragma once
// The load-time conversions (dummy values, FP8 and 4-bit quantization, packing) over every core. Each row
// is computed exactly as one thread computed it, so the result is the same bits whatever the thread count.
// One thread quantizing a 7B model to FP8 took about two minutes on the H200's host; vLLM does it in seconds.

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace troupe {

// Calls body(begin, end) on disjoint ranges covering [0, rows), on up to std::thread::hardware_concurrency()
// threads (the caller's included), never splitting below min_rows rows a range. The first exception a range
// throws is rethrown here once every thread has finished.
template <class Body> void parallel_rows(int64_t rows, int64_t min_rows, Body&& body) {
  if (rows <= 0) return;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads = std::clamp<int64_t>(rows / std::max<int64_t>(min_rows, 1), 1, cores);
  if (threads == 1) {
    body(int64_t{0}, rows);
    return;
  }
  const int64_t chunk = (rows + threads - 1) / threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
  auto run = [&](int64_t t) {
    try {
      const int64_t begin = t * chunk, end = std::min(rows, begin + chunk);
      if (begin < end) body(begin, end);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads - 1));
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(run, t);
  run(0);
  for (std::thread& th : pool) th.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

// Rows of `row_elems` values per range such that a range holds about a million values: a thread's start
// costs tens of microseconds, a million conversions milliseconds.
inline int64_t rows_per_million(int64_t row_elems) { return std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(row_elems, 1)); }

} // namespace troupe
