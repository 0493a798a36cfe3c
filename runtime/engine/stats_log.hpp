#pragma once
// The stats line `troupe serve` logs every 10 s (VLLM_LOG_STATS_INTERVAL), as vLLM's LoggingStatLogger
// writes it, so that what reads vLLM's logs reads troupe's:
//   Avg prompt throughput: 512.0 tokens/s, Avg generation throughput: 96.4 tokens/s, Running: 3 reqs,
//   Waiting: 0 reqs, GPU KV cache usage: 1.2%, Prefix cache hit rate: 40.0%
// Throughputs cover the interval since the previous line; the hit rate covers the server's life.

#include <string>

#include "runtime/engine/engine_metrics.hpp"

namespace troupe {

struct stats_line {
  std::string text;
  bool idle = false;  // nothing ran, waited or was computed in the interval: vLLM logs it at debug level
};

// The line for the interval from `previous` to `now` (snapshots `seconds` apart; 0 gives throughputs of 0).
stats_line make_stats_line(const metrics_snapshot& previous, const metrics_snapshot& now, double seconds);

} // namespace troupe
