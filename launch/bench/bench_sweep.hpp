#pragma once
// `troupe bench serve --sweep`: the request-rate ladder, the knee and the summary, with no server in sight
// (the command runs each step and records its figures; a test records synthetic ones).
//
// The ladder: the first rate, then each rate the highest one that held times --sweep-factor, until a step
// does not hold (its TTFT p95 above --ttft-slo-ms, or a request failed: rejections are overload too); then
// --sweep-refine midpoints between the highest rate that held and the lowest that did not. A first rate that
// does not hold sends the ladder down (divided by the factor) until one holds. On the way up, a step that holds
// but whose total tokens/s grew less than --sweep-min-growth over the best step before it is saturated: the
// server serves no more, the extra load only queues, and the ladder stops there.
//
// The knee is the highest rate that held (a saturated step is past it): its output and total tokens/s are the
// sustained capacity C that `troupe plan` takes.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace troupe {

struct sweep_options {
  double start_rate = 1;       // requests/s of the first step
  double factor = 2;           // > 1: the next rate up is the highest that held times this
  int32_t max_steps = 10;      // steps in all, refinements included
  int32_t refine_steps = 2;    // midpoints tried once a rate that holds and one that does not bracket the knee
  double ttft_slo_ms = 2000;   // a step holds while its TTFT p95 is at most this
  double min_growth = 0.05;    // a step up whose total tokens/s grew less than this fraction is saturated
};

// What one step of the sweep measured (the bench's figures of its run).
struct sweep_step {
  double request_rate = 0;  // offered, requests/s
  int64_t completed = 0, failed = 0;
  double duration_s = 0;
  double ttft_p50_ms = 0, ttft_p95_ms = 0;
  double itl_p50_ms = 0, itl_p95_ms = 0;
  double input_tokens_per_s = 0, output_tokens_per_s = 0, total_tokens_per_s = 0;
};

enum class step_verdict {
  holds,        // within the SLO, nothing failed, throughput still growing
  slo_crossed,  // TTFT p95 above the SLO
  failed,       // some requests failed
  saturated,    // within the SLO but the throughput stopped growing
};

// "holds", "slo_crossed", "failed", "saturated".
const char* verdict_name(step_verdict v);

enum class sweep_end {
  bracketed,   // a rate that held and one above it that did not, refined: the knee lies between them
  saturated,   // the throughput stopped growing
  max_steps,   // the steps ran out first; C is a lower bound
  none_held,   // no rate held (every one down to the lowest tried crossed the SLO or failed)
};

// "bracketed", "saturated", "max_steps", "none_held".
const char* sweep_end_name(sweep_end e);

struct sweep_summary {
  std::optional<size_t> knee;  // index into rate_sweep::steps() of the highest rate that held
  sweep_end end = sweep_end::none_held;
  std::string reason;          // why the ladder stopped, one sentence
};

class rate_sweep {
public:
  // Throws user_error for a start rate or SLO not above 0, a factor not above 1, fewer than 1 step or a
  // negative refinement count or growth.
  explicit rate_sweep(sweep_options options);

  // The rate to run next; nullopt when the sweep is over.
  std::optional<double> next_rate() const;

  // Records the step just run (at the rate next_rate() gave) and returns its verdict.
  step_verdict record(const sweep_step& step);

  // The steps in the order they ran, and their verdicts.
  const std::vector<sweep_step>& steps() const { return steps_; }
  const std::vector<step_verdict>& verdicts() const { return verdicts_; }

  // Indices of the steps by ascending rate: the table's rows.
  std::vector<size_t> by_rate() const;

  // The knee and why the sweep ended (meaningful once next_rate() is nullopt).
  sweep_summary summary() const;

  const sweep_options& options() const { return options_; }

private:
  // The highest rate that held and the lowest rate above it that did not (either may be missing).
  std::optional<size_t> highest_held() const;
  std::optional<size_t> lowest_not_held_above(double rate) const;

  sweep_options options_;
  std::vector<sweep_step> steps_;
  std::vector<step_verdict> verdicts_;
  int32_t num_refined_ = 0;  // steps run while the knee was bracketed
  bool saturated_ = false;
};

// The sweep's table and verdict as `troupe bench serve --sweep` prints them.
std::string format_sweep_report(const rate_sweep& sweep);

// The sweep as --json writes it: options, one object per step (by rate, with its verdict), the knee's step
// and C (null without a knee), the end and its reason. `workload` is put in as given (a JSON object text).
std::string sweep_json(const rate_sweep& sweep, const std::string& workload);

} // namespace troupe
