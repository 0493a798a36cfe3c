#pragma once
// The prefix-cache hit rate of a `troupe bench serve` run, from the servers' Prometheus /metrics read
// before and after it: troupe's and vLLM's counters of prompt tokens looked up in the prefix cache
// (`*:prefix_cache_queries_total`) and found there (`*:prefix_cache_hits_total`).

#include <optional>
#include <string_view>

namespace troupe {

struct prefix_cache_counts {
  double queries = 0;  // prompt tokens looked up
  double hits = 0;     // of those, tokens found cached
};

// The counters summed over every series (each model, each prefix such as troupe: or vllm:) of one /metrics
// text; nullopt when the text has neither counter (a server that does not export them).
std::optional<prefix_cache_counts> parse_prefix_cache_counts(std::string_view metrics_text);

// hits / queries between two readings; nullopt when no token was looked up in between.
std::optional<double> prefix_cache_hit_rate(const prefix_cache_counts& before, const prefix_cache_counts& after);

} // namespace troupe
