#include "runtime/engine/stats_log.hpp"

#include <cstdio>

namespace troupe {

stats_line make_stats_line(const metrics_snapshot& previous, const metrics_snapshot& now, double seconds) {
  const auto rate = [&](uint64_t before, uint64_t after) {
    return seconds > 0 && after > before ? static_cast<double>(after - before) / seconds : 0.0;
  };
  const double prompt = rate(previous.num_prompt_tokens, now.num_prompt_tokens);
  const double generation = rate(previous.num_generation_tokens, now.num_generation_tokens);
  const double hit_rate = now.num_prefix_cache_queries == 0
                              ? 0.0
                              : 100.0 * static_cast<double>(now.num_prefix_cache_hits) /
                                    static_cast<double>(now.num_prefix_cache_queries);
  char text[256];
  std::snprintf(text, sizeof text,
                "Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, Running: %lld reqs, "
                "Waiting: %lld reqs, GPU KV cache usage: %.1f%%, Prefix cache hit rate: %.1f%%",
                prompt, generation, static_cast<long long>(now.num_running), static_cast<long long>(now.num_waiting),
                100.0 * now.kv_cache_usage, hit_rate);
  return {text, prompt == 0 && generation == 0 && now.num_running == 0 && now.num_waiting == 0};
}

} // namespace troupe
