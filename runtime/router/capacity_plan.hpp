#pragma once
// `troupe plan`: how many GPUs a demand in tokens needs, pool by pool. Capacity is planned in tokens per
// second, not requests per second: a GPU sustains C tokens/s at the knee of its request-rate sweep
// (`troupe bench serve --sweep`), and runs at a utilization target below that (70-85%) so that bursts
// stay within the TTFT SLO. For each pool (the router's output-length buckets, each taking a share of the
// demand):
//
//   GPUs = ceil(pool's demand tokens/s / (C x utilization))
//
// computed for total tokens (input + output) and, when both the demand and C give them, for output tokens
// alone (decode bound); the larger count is the pool's. The fleet needs the sum over pools: each pool's
// workers are whole GPUs.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

// A rate given as NUMBER[K|M|G][/s|/min] ("1M/min", "2500/s", "12k"; no unit: per second), in units per
// second. Throws user_error naming `flag` for anything else or a rate not above 0.
double parse_per_second(std::string_view text, std::string_view flag);

// Tokens per second asked of the fleet; at least one of the two is known.
struct token_demand {
  std::optional<double> total_tokens_per_s;   // input + output
  std::optional<double> output_tokens_per_s;
};

// What one GPU sustains at the knee; at least one of the two is known.
struct gpu_capacity {
  std::optional<double> total_tokens_per_s;
  std::optional<double> output_tokens_per_s;
  std::string source;  // where the figures came from, for the report ("--capacity 2500", "sweep.json: knee at 4 req/s")
};

// A pool as `troupe plan --pool` gives it: NAME[:MAX_TOKENS],share=F[,capacity=C|FILE].
struct plan_pool_spec {
  std::string name;
  int32_t max_tokens = 0;         // as the router's --pool: 0 for the last pool
  double share = 1;               // of the demand, in (0, 1]
  std::string capacity;           // the pool's own C (a number or a sweep's JSON file); empty: the fleet's --capacity
};

// Parses NAME[:MAX_TOKENS],share=F[,capacity=C|FILE]. Throws user_error saying what is expected.
plan_pool_spec parse_plan_pool_spec(std::string_view spec);

struct capacity_plan_input {
  token_demand demand;
  double utilization = 0.75;       // in [0.70, 0.85]
  struct pool {
    std::string name = "all";
    int32_t max_tokens = 0;
    double share = 1;
    gpu_capacity capacity;
  };
  std::vector<pool> pools;         // bucket order; shares add up to 1
};

// One count: demand / (C x utilization), rounded up.
struct gpu_count {
  double demand = 0;       // tokens/s of the pool
  double capacity = 0;     // C, tokens/s per GPU
  double usable = 0;       // C x utilization
  double exact = 0;        // demand / usable
  int64_t gpus = 0;        // exact rounded up
};

struct pool_plan {
  std::string name;
  int32_t max_tokens = 0;
  double share = 1;
  std::string capacity_source;
  std::optional<gpu_count> by_total, by_output;  // each when both the demand and C know it
  int64_t gpus = 0;        // the larger count
  bool output_binds = false;  // the output count is the larger (decode bound)
};

struct capacity_plan {
  double utilization = 0.75;
  token_demand demand;
  std::vector<pool_plan> pools;
  int64_t total_gpus = 0;
};

// The plan. Throws user_error for a utilization outside [0.70, 0.85], no pool, shares not in (0, 1] or not
// adding up to 1, a capacity not above 0, or a pool whose demand and capacity share no kind of token
// (output tokens alone asked of a capacity that knows only totals, or the reverse).
capacity_plan plan_capacity(const capacity_plan_input& input);

// The plan with its arithmetic, as `troupe plan` prints it.
std::string format_capacity_plan(const capacity_plan& plan);

} // namespace troupe
