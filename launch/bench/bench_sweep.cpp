#include "launch/bench/bench_sweep.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe {

namespace {

// Why a step did not hold, in words.
std::string why_not_held(const sweep_step& s, step_verdict v, double slo_ms) {
  if (v == step_verdict::failed)
    return fmt::format("{} of {} requests failed", static_cast<long long>(s.failed), static_cast<long long>(s.failed + s.completed));
  return fmt::format("TTFT p95 {:.1f} ms above the SLO of {:.0f} ms", s.ttft_p95_ms, slo_ms);
}

} // namespace

const char* verdict_name(step_verdict v) {
  switch (v) {
    case step_verdict::holds: return "holds";
    case step_verdict::slo_crossed: return "slo_crossed";
    case step_verdict::failed: return "failed";
    case step_verdict::saturated: return "saturated";
  }
  return "?";
}

const char* sweep_end_name(sweep_end e) {
  switch (e) {
    case sweep_end::bracketed: return "bracketed";
    case sweep_end::saturated: return "saturated";
    case sweep_end::max_steps: return "max_steps";
    case sweep_end::none_held: return "none_held";
  }
  return "?";
}

rate_sweep::rate_sweep(sweep_options options) : options_(options) {
  if (!(options_.start_rate > 0) || options_.start_rate == INFINITY)
    throw user_error("--sweep needs a finite first --request-rate above 0");
  if (!(options_.factor > 1)) throw user_error("--sweep-factor must be above 1: each step up multiplies the rate by it");
  if (options_.max_steps < 1) throw user_error("--sweep-max-steps must be at least 1");
  if (options_.refine_steps < 0) throw user_error("--sweep-refine must be 0 or more");
  if (!(options_.ttft_slo_ms > 0)) throw user_error("--ttft-slo-ms must be above 0");
  if (!(options_.min_growth >= 0)) throw user_error("--sweep-min-growth must be 0 or more (0.05: 5%)");
}

std::optional<size_t> rate_sweep::highest_held() const {
  std::optional<size_t> best;
  for (size_t i = 0; i < steps_.size(); ++i)
    if (verdicts_[i] == step_verdict::holds && (!best || steps_[i].request_rate > steps_[*best].request_rate)) best = i;
  return best;
}

std::optional<size_t> rate_sweep::lowest_not_held_above(double rate) const {
  std::optional<size_t> best;
  for (size_t i = 0; i < steps_.size(); ++i)
    if ((verdicts_[i] == step_verdict::slo_crossed || verdicts_[i] == step_verdict::failed) && steps_[i].request_rate > rate &&
        (!best || steps_[i].request_rate < steps_[*best].request_rate))
      best = i;
  return best;
}

std::optional<double> rate_sweep::next_rate() const {
  if (saturated_ || steps_.size() >= static_cast<size_t>(options_.max_steps)) return std::nullopt;
  if (steps_.empty()) return options_.start_rate;
  const auto held = highest_held();
  if (!held) {
    double lowest = steps_[0].request_rate;
    for (const auto& s : steps_) lowest = std::min(lowest, s.request_rate);
    return lowest / options_.factor;
  }
  const double good = steps_[*held].request_rate;
  const auto bad = lowest_not_held_above(good);
  if (!bad) return good * options_.factor;
  if (num_refined_ >= options_.refine_steps) return std::nullopt;
  return (good + steps_[*bad].request_rate) / 2;
}

step_verdict rate_sweep::record(const sweep_step& step) {
  const auto held = highest_held();
  const bool refining = held && lowest_not_held_above(steps_[*held].request_rate);
  step_verdict v = step_verdict::holds;
  if (step.failed > 0 || step.completed == 0) v = step_verdict::failed;
  else if (step.ttft_p95_ms > options_.ttft_slo_ms) v = step_verdict::slo_crossed;
  else if (!refining) {
    // A step up: saturated when it serves hardly more than the best step below it.
    double best_below = -1;
    for (size_t i = 0; i < steps_.size(); ++i)
      if (verdicts_[i] == step_verdict::holds && steps_[i].request_rate < step.request_rate)
        best_below = std::max(best_below, steps_[i].total_tokens_per_s);
    if (best_below >= 0 && step.total_tokens_per_s < best_below * (1 + options_.min_growth)) {
      v = step_verdict::saturated;
      saturated_ = true;
    }
  }
  if (refining) ++num_refined_;
  steps_.push_back(step);
  verdicts_.push_back(v);
  return v;
}

std::vector<size_t> rate_sweep::by_rate() const {
  std::vector<size_t> order(steps_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return steps_[a].request_rate < steps_[b].request_rate; });
  return order;
}

sweep_summary rate_sweep::summary() const {
  sweep_summary s;
  s.knee = highest_held();
  if (saturated_) {
    const sweep_step& last = steps_.back();
    const sweep_step& knee = steps_[*s.knee];
    s.end = sweep_end::saturated;
    s.reason = fmt::format("at {:.2f} req/s the total tokens/s ({:.1f}) grew {:.1f}% over {:.2f} req/s's ({:.1f}), less than "
                             "--sweep-min-growth {:.0f}%: the server is saturated and more load only queues",
                             last.request_rate, last.total_tokens_per_s,
                             100 * (last.total_tokens_per_s / knee.total_tokens_per_s - 1), knee.request_rate,
                             knee.total_tokens_per_s, 100 * options_.min_growth);
    return s;
  }
  if (!s.knee) {
    s.end = sweep_end::none_held;
    if (steps_.empty()) {
      s.reason = "no step ran";
      return s;
    }
    const size_t lowest = by_rate().front();
    s.reason = fmt::format("no rate held, down to {:.2f} req/s ({}): lower --request-rate or raise --ttft-slo-ms",
                             steps_[lowest].request_rate, why_not_held(steps_[lowest], verdicts_[lowest], options_.ttft_slo_ms).c_str());
    return s;
  }
  const sweep_step& knee = steps_[*s.knee];
  if (const auto bad = lowest_not_held_above(knee.request_rate)) {
    s.end = sweep_end::bracketed;
    s.reason = fmt::format("{:.2f} req/s held and {:.2f} req/s did not ({})", knee.request_rate, steps_[*bad].request_rate,
                             why_not_held(steps_[*bad], verdicts_[*bad], options_.ttft_slo_ms).c_str());
    return s;
  }
  s.end = sweep_end::max_steps;
  s.reason = fmt::format("every rate up to {:.2f} req/s held within {} steps: C is a lower bound; raise --sweep-max-steps "
                           "or the first --request-rate",
                           knee.request_rate, options_.max_steps);
  return s;
}

std::string format_sweep_report(const rate_sweep& sweep) {
  const sweep_options& o = sweep.options();
  const sweep_summary sum = sweep.summary();
  std::string out = "============== Request-rate sweep (TTFT SLO: p95 <= " + fmt::format("{:.0f}", o.ttft_slo_ms) + " ms) ==============\n";
  out += fmt::format("{:>10} {:>6} {:>6} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>11}  {}\n", "req/s", "done", "failed", "TTFT p50 ms",
                       "TTFT p95 ms", "ITL p50 ms", "ITL p95 ms", "in tok/s", "out tok/s", "total tok/s", "verdict");
  for (size_t i : sweep.by_rate()) {
    const sweep_step& s = sweep.steps()[i];
    const std::string verdict = std::string(verdict_name(sweep.verdicts()[i])) + (sum.knee == i ? " <- knee" : "");
    out += fmt::format("{:10.2f} {:6} {:6} {:11.1f} {:11.1f} {:10.1f} {:10.1f} {:10.1f} {:10.1f} {:11.1f}  {}\n", s.request_rate,
                         static_cast<long long>(s.completed), static_cast<long long>(s.failed), s.ttft_p50_ms, s.ttft_p95_ms,
                         s.itl_p50_ms, s.itl_p95_ms, s.input_tokens_per_s, s.output_tokens_per_s, s.total_tokens_per_s,
                         verdict.c_str());
  }
  out += "Sweep ended (" + std::string(sweep_end_name(sum.end)) + "): " + sum.reason + "\n";
  if (sum.knee) {
    const sweep_step& k = sweep.steps()[*sum.knee];
    out += fmt::format("Knee: {:.2f} req/s, TTFT p95 {:.1f} ms\n", k.request_rate, k.ttft_p95_ms);
    out += fmt::format("Sustained capacity C: {:.1f} output tokens/s, {:.1f} total tokens/s (input {:.1f})\n", k.output_tokens_per_s,
                         k.total_tokens_per_s, k.input_tokens_per_s);
  } else {
    out += "Knee: none\n";
  }
  out += std::string(60, '=') + "\n";
  return out;
}

std::string sweep_json(const rate_sweep& sweep, const std::string& workload) {
  using ordered_json = nlohmann::ordered_json;
  const sweep_options& o = sweep.options();
  const sweep_summary sum = sweep.summary();
  auto step_json = [&](size_t i) {
    const sweep_step& s = sweep.steps()[i];
    return ordered_json{{"request_rate", s.request_rate},
                        {"completed", s.completed},
                        {"failed", s.failed},
                        {"duration", s.duration_s},
                        {"p50_ttft_ms", s.ttft_p50_ms},
                        {"p95_ttft_ms", s.ttft_p95_ms},
                        {"p50_itl_ms", s.itl_p50_ms},
                        {"p95_itl_ms", s.itl_p95_ms},
                        {"input_throughput", s.input_tokens_per_s},
                        {"output_throughput", s.output_tokens_per_s},
                        {"total_token_throughput", s.total_tokens_per_s},
                        {"verdict", verdict_name(sweep.verdicts()[i])}};
  };
  ordered_json j;
  j["ttft_slo_ms"] = o.ttft_slo_ms;
  j["start_rate"] = o.start_rate;
  j["factor"] = o.factor;
  j["max_steps"] = o.max_steps;
  j["refine_steps"] = o.refine_steps;
  j["min_growth"] = o.min_growth;
  j["workload"] = ordered_json::parse(workload);
  ordered_json steps = ordered_json::array();
  for (size_t i : sweep.by_rate()) steps.push_back(step_json(i));
  j["steps"] = std::move(steps);
  j["end"] = sweep_end_name(sum.end);
  j["reason"] = sum.reason;
  if (sum.knee) {
    const sweep_step& k = sweep.steps()[*sum.knee];
    j["knee"] = step_json(*sum.knee);
    j["capacity"] = ordered_json{{"output_tokens_per_s", k.output_tokens_per_s},
                                 {"total_tokens_per_s", k.total_tokens_per_s},
                                 {"input_tokens_per_s", k.input_tokens_per_s}};
  } else {
    j["knee"] = nullptr;
    j["capacity"] = nullptr;
  }
  return j.dump(2);
}

} // namespace troupe
