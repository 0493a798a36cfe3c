#include "runtime/router/capacity_plan.hpp"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/router/fleet_config.hpp"

namespace troupe {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A whole double: the text and nothing else; false otherwise.
bool parse_double(std::string_view s, double& out) {
  const std::string text(s);
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size() && std::isfinite(out);
}

// demand / (C x utilization), rounded up; a hair over a whole number (float error) stays that number.
gpu_count count_gpus(double demand, double capacity, double utilization) {
  gpu_count c;
  c.demand = demand;
  c.capacity = capacity;
  c.usable = capacity * utilization;
  c.exact = demand / c.usable;
  c.gpus = static_cast<int64_t>(std::ceil(c.exact - 1e-9));
  return c;
}

void check_capacity(const gpu_capacity& c, const std::string& pool) {
  if (!c.total_tokens_per_s && !c.output_tokens_per_s)
    throw user_error("pool " + pool + " has no capacity: give --capacity C (total tokens/s per GPU) or a sweep's JSON");
  for (const auto& v : {c.total_tokens_per_s, c.output_tokens_per_s})
    if (v && !(*v > 0))
      throw user_error("pool " + pool + ": the capacity (" + c.source + ") must be above 0 tokens/s per GPU");
}

} // namespace

double parse_per_second(std::string_view text, std::string_view flag) {
  const std::string bad = std::string(flag) + " '" + std::string(text) + "': ";
  std::string_view s = trim(text);
  double per = 1;  // seconds per unit of time
  if (const size_t slash = s.find('/'); slash != std::string_view::npos) {
    const std::string_view unit = trim(s.substr(slash + 1));
    if (unit == "s" || unit == "sec") per = 1;
    else if (unit == "min") per = 60;
    else if (unit == "h") per = 3600;
    else throw user_error(bad + "the unit must be /s, /min or /h (e.g. 1M/min)");
    s = trim(s.substr(0, slash));
  }
  double scale = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'k': case 'K': scale = 1e3; break;
      case 'M': scale = 1e6; break;
      case 'G': scale = 1e9; break;
      default: break;
    }
    if (scale != 1) s.remove_suffix(1);
  }
  double v = 0;
  if (!parse_double(trim(s), v)) throw user_error(bad + "give a rate as NUMBER[K|M|G][/s|/min|/h], e.g. 1M/min or 2500/s");
  if (!(v > 0)) throw user_error(bad + "must be above 0");
  return v * scale / per;
}

plan_pool_spec parse_plan_pool_spec(std::string_view spec) {
  const std::string bad = "--pool '" + std::string(spec) + "': ";
  const size_t comma = spec.find(',');
  const pool_config bucket = parse_pool_spec(trim(spec.substr(0, comma)));
  plan_pool_spec p;
  p.name = bucket.name;
  p.max_tokens = bucket.max_tokens;
  bool has_share = false;
  for (std::string_view rest = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1); !rest.empty();) {
    const size_t next = rest.find(',');
    const std::string_view part = trim(rest.substr(0, next));
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 1);
    if (part.starts_with("share=")) {
      if (!parse_double(part.substr(6), p.share) || !(p.share > 0 && p.share <= 1))
        throw user_error(bad + "share must be a fraction in (0, 1] of the demand, e.g. share=0.6");
      has_share = true;
    } else if (part.starts_with("capacity=") && part.size() > 9) {
      p.capacity = std::string(part.substr(9));
    } else {
      throw user_error(bad + "unknown part '" + std::string(part) + "' (a pool is NAME[:MAX_TOKENS],share=F[,capacity=C|FILE])");
    }
  }
  if (!has_share) throw user_error(bad + "give the pool's share of the demand: NAME[:MAX_TOKENS],share=F");
  return p;
}

capacity_plan plan_capacity(const capacity_plan_input& input) {
  if (!(input.utilization >= 0.7 - 1e-12 && input.utilization <= 0.85 + 1e-12))
    throw user_error(fmt::format("--utilization {:g}: plan at 0.70 to 0.85 of C (below wastes GPUs; above leaves no headroom for "
                                   "bursts, and TTFT climbs past the knee)",
                                   input.utilization));
  if (input.pools.empty()) throw user_error("no pool to plan");
  const token_demand& d = input.demand;
  if (!d.total_tokens_per_s && !d.output_tokens_per_s)
    throw user_error("no demand: give --tokens, --input-tokens and --output-tokens, or --requests with mean lengths");
  std::vector<pool_config> buckets;
  double shares = 0;
  for (const auto& p : input.pools) {
    buckets.push_back({p.name, p.max_tokens});
    if (!(p.share > 0 && p.share <= 1)) throw user_error("pool " + p.name + ": its share must be in (0, 1]");
    shares += p.share;
  }
  check_pool_buckets(buckets);
  if (std::abs(shares - 1) > 1e-6) throw user_error(fmt::format("the pools' shares add up to {:g}, not 1", shares));

  capacity_plan plan;
  plan.utilization = input.utilization;
  plan.demand = d;
  for (const auto& p : input.pools) {
    check_capacity(p.capacity, p.name);
    pool_plan pp;
    pp.name = p.name;
    pp.max_tokens = p.max_tokens;
    pp.share = p.share;
    pp.capacity_source = p.capacity.source;
    if (d.total_tokens_per_s && p.capacity.total_tokens_per_s)
      pp.by_total = count_gpus(p.share * *d.total_tokens_per_s, *p.capacity.total_tokens_per_s, input.utilization);
    if (d.output_tokens_per_s && p.capacity.output_tokens_per_s)
      pp.by_output = count_gpus(p.share * *d.output_tokens_per_s, *p.capacity.output_tokens_per_s, input.utilization);
    if (!pp.by_total && !pp.by_output)
      throw user_error("pool " + p.name + ": the demand gives " + (d.total_tokens_per_s ? "total" : "output") +
                       " tokens and the capacity (" + p.capacity.source + ") only " +
                       (p.capacity.total_tokens_per_s ? "total" : "output") +
                       " tokens/s: give both in the same kind (a sweep's JSON has both)");
    const int64_t by_total = pp.by_total ? pp.by_total->gpus : 0, by_output = pp.by_output ? pp.by_output->gpus : 0;
    pp.output_binds = by_output > by_total;
    pp.gpus = std::max(by_total, by_output);
    plan.total_gpus += pp.gpus;
    plan.pools.push_back(std::move(pp));
  }
  return plan;
}

std::string format_capacity_plan(const capacity_plan& plan) {
  std::string out;
  const token_demand& d = plan.demand;
  auto tokens = [](double per_s) { return fmt::format("{:.1f} tokens/s ({:.0f} tokens/min)", per_s, per_s * 60); };
  if (d.total_tokens_per_s) out += "Demand: " + tokens(*d.total_tokens_per_s) + " in total";
  if (d.output_tokens_per_s) out += std::string(d.total_tokens_per_s ? ", " : "Demand: ") + tokens(*d.output_tokens_per_s) + " of output";
  out += fmt::format("\nUtilization target: {:.2f} of C per GPU\n", plan.utilization);
  // demand / (C x utilization) = exact -> GPUs; a pool's demand as its share of the fleet's when there are several.
  auto line = [&](const char* kind, const gpu_count& c, double share, double fleet_demand) {
    const std::string demand = plan.pools.size() > 1 ? fmt::format("({:.2f} x {:.1f} = {:.1f})", share, fleet_demand, c.demand)
                                                     : fmt::format("{:.1f}", c.demand);
    return fmt::format("  {:<14} {} / ({:.1f} x {:.2f} = {:.1f}) = {:.2f} -> {} GPUs\n", kind, demand.c_str(), c.capacity,
                         plan.utilization, c.usable, c.exact, static_cast<long long>(c.gpus));
  };
  std::string sum;
  for (const pool_plan& p : plan.pools) {
    const std::string bucket = plan.pools.size() == 1 ? "every request"
                               : p.max_tokens ? "max_tokens up to " + std::to_string(p.max_tokens)
                                              : std::string("the longer requests");
    out += fmt::format("Pool {} ({}), share {:.2f} of the demand, C from {}:\n", p.name.c_str(), bucket.c_str(), p.share,
                         p.capacity_source.c_str());
    if (p.by_total) out += line("total tokens:", *p.by_total, p.share, *d.total_tokens_per_s);
    if (p.by_output) out += line("output tokens:", *p.by_output, p.share, *d.output_tokens_per_s);
    out += fmt::format("  => {} GPUs{}\n", static_cast<long long>(p.gpus),
                         p.by_total && p.by_output ? (p.output_binds ? " (output tokens bind: decode bound)" : " (total tokens bind)") : "");
    sum += (sum.empty() ? "" : " + ") + std::to_string(p.gpus);
  }
  out += "GPUs needed: " + (plan.pools.size() > 1 ? sum + " = " : std::string()) + std::to_string(plan.total_gpus) + "\n";
  return out;
}

} // namespace troupe
