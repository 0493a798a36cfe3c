// `troupe plan`: the GPUs a demand in tokens needs, per pool, from a per-GPU capacity C (a number, or the
// JSON `troupe bench serve --sweep --json` wrote) at a utilization target. The arithmetic is
// runtime/router/capacity_plan.hpp; this file turns flags and sweep files into its input.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "launch/commands.hpp"
#include "runtime/error.hpp"
#include "runtime/router/capacity_plan.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

struct plan_flags {
  std::string tokens, input_tokens, output_tokens, requests;
  double mean_input_len = 0, mean_output_len = 0;
  std::string capacity, output_capacity;
  double utilization = 0.75;
  std::vector<std::string> pools;
};

// C from a sweep's JSON: its knee's output and total tokens/s.
gpu_capacity capacity_from_sweep(const std::string& file) {
  std::ifstream in(file);
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("capacity"))
    throw user_error("--capacity " + file + ": not the JSON of `troupe bench serve --sweep --json` (no \"capacity\")");
  if (j["capacity"].is_null())
    throw user_error("--capacity " + file + ": that sweep found no knee (" + j.value("reason", std::string("no rate held")) +
                     "); sweep again from a lower --request-rate");
  const json& c = j["capacity"];
  if (!c.contains("total_tokens_per_s") || !c["total_tokens_per_s"].is_number() || !c.contains("output_tokens_per_s") ||
      !c["output_tokens_per_s"].is_number())
    throw user_error("--capacity " + file + ": \"capacity\" lacks total_tokens_per_s and output_tokens_per_s");
  gpu_capacity g;
  g.total_tokens_per_s = c["total_tokens_per_s"].get<double>();
  g.output_tokens_per_s = c["output_tokens_per_s"].get<double>();
  char knee[128] = "";
  if (j.contains("knee") && j["knee"].is_object())
    std::snprintf(knee, sizeof knee, " (knee at %.2f req/s, TTFT p95 %.1f ms)", j["knee"].value("request_rate", 0.0),
                  j["knee"].value("p95_ttft_ms", 0.0));
  g.source = file + knee;
  return g;
}

// C as given: a sweep's JSON file, else total tokens/s per GPU; output_capacity adds (or replaces) the output figure.
gpu_capacity resolve_capacity(const std::string& capacity, const std::string& output_capacity, const std::string& flag) {
  gpu_capacity g;
  if (capacity.empty() && output_capacity.empty())
    throw user_error("give the capacity of one GPU: --capacity C (total tokens/s at the knee) or --capacity SWEEP.json "
                     "(what `troupe bench serve --sweep --json` wrote)");
  if (!capacity.empty()) {
    if (std::filesystem::is_regular_file(capacity)) g = capacity_from_sweep(capacity);
    else if (capacity.ends_with(".json")) throw user_error(flag + " " + capacity + ": no such file (a sweep's JSON, or a number of tokens/s)");
    else {
      g.total_tokens_per_s = parse_per_second(capacity, flag);
      g.source = flag + " " + capacity;
    }
  }
  if (!output_capacity.empty()) {
    g.output_tokens_per_s = parse_per_second(output_capacity, "--output-capacity");
    g.source += (g.source.empty() ? "" : " ") + std::string("--output-capacity ") + output_capacity;
  }
  return g;
}

token_demand resolve_demand(const plan_flags& f) {
  const std::string one_way = "give the demand one way: --tokens [with --output-tokens], --input-tokens with --output-tokens, "
                              "or --requests with --mean-input-len and --mean-output-len";
  token_demand d;
  if (!f.requests.empty()) {
    if (!f.tokens.empty() || !f.input_tokens.empty() || !f.output_tokens.empty()) throw user_error(one_way);
    if (!(f.mean_input_len > 0) || !(f.mean_output_len > 0))
      throw user_error("--requests needs --mean-input-len and --mean-output-len (tokens per request, above 0)");
    const double r = parse_per_second(f.requests, "--requests");
    d.total_tokens_per_s = r * (f.mean_input_len + f.mean_output_len);
    d.output_tokens_per_s = r * f.mean_output_len;
    return d;
  }
  if (f.mean_input_len > 0 || f.mean_output_len > 0) throw user_error("--mean-input-len and --mean-output-len go with --requests");
  if (!f.tokens.empty() && !f.input_tokens.empty()) throw user_error(one_way);
  if (!f.input_tokens.empty() && f.output_tokens.empty()) throw user_error("--input-tokens needs --output-tokens (the total is their sum)");
  if (!f.output_tokens.empty()) d.output_tokens_per_s = parse_per_second(f.output_tokens, "--output-tokens");
  if (!f.tokens.empty()) d.total_tokens_per_s = parse_per_second(f.tokens, "--tokens");
  if (!f.input_tokens.empty()) d.total_tokens_per_s = parse_per_second(f.input_tokens, "--input-tokens") + *d.output_tokens_per_s;
  if (!d.total_tokens_per_s && !d.output_tokens_per_s) throw user_error("no demand: " + one_way);
  return d;
}

void run_plan(const plan_flags& f) {
  capacity_plan_input in;
  in.demand = resolve_demand(f);
  in.utilization = f.utilization;
  if (f.pools.empty()) {
    in.pools.push_back({.name = "all", .max_tokens = 0, .share = 1,
                        .capacity = resolve_capacity(f.capacity, f.output_capacity, "--capacity")});
  }
  for (const std::string& spec : f.pools) {
    const plan_pool_spec p = parse_plan_pool_spec(spec);
    const gpu_capacity c = p.capacity.empty() ? resolve_capacity(f.capacity, f.output_capacity, "--capacity")
                                              : resolve_capacity(p.capacity, "", "--pool " + p.name + " capacity=");
    in.pools.push_back({.name = p.name, .max_tokens = p.max_tokens, .share = p.share, .capacity = c});
  }
  const capacity_plan plan = plan_capacity(in);
  std::fputs(format_capacity_plan(plan).c_str(), stdout);
  if (plan.pools.size() > 1) {
    std::string flags;
    for (const pool_plan& p : plan.pools)
      flags += " --pool " + p.name + (p.max_tokens ? ":" + std::to_string(p.max_tokens) : std::string());
    std::printf("troupe router%s, with that many workers (one a GPU) in each pool\n", flags.c_str());
  }
  std::fflush(stdout);
}

} // namespace

void register_plan(CLI::App& app) {
  auto f = std::make_shared<plan_flags>();
  CLI::App* cmd = app.add_subcommand("plan", "GPUs for a demand in tokens, per pool, from the capacity C of one GPU at the knee");
  cmd->footer(
      "GPUs = ceil(demand tokens/s / (C x --utilization)), for total tokens and, when the demand and C both give them,\n"
      "for output tokens (decode bound); the larger count is the pool's, the fleet needs the sum over pools. Rates are\n"
      "NUMBER[K|M|G][/s|/min|/h], e.g. 1M/min. C is measured by `troupe bench serve --sweep --json FILE`.");
  cmd->add_option("--tokens", f->tokens, "Total (input + output) tokens asked of the fleet, e.g. 1M/min");
  cmd->add_option("--input-tokens", f->input_tokens, "Input (prompt) tokens asked, with --output-tokens");
  cmd->add_option("--output-tokens", f->output_tokens, "Output (generated) tokens asked");
  cmd->add_option("--requests", f->requests, "Requests asked, e.g. 20/s, with --mean-input-len and --mean-output-len");
  cmd->add_option("--mean-input-len", f->mean_input_len, "Mean prompt tokens of a request (with --requests)");
  cmd->add_option("--mean-output-len", f->mean_output_len, "Mean generated tokens of a request (with --requests)");
  cmd->add_option("--capacity", f->capacity,
                  "C of one GPU: total tokens/s at the knee, or the JSON `troupe bench serve --sweep --json` wrote (its knee's "
                  "total and output tokens/s)");
  cmd->add_option("--output-capacity", f->output_capacity, "C of one GPU in output tokens/s (a sweep's JSON has it)");
  cmd->add_option("--utilization", f->utilization, "Fraction of C to plan for, 0.70 to 0.85 (headroom for bursts)")
      ->capture_default_str();
  cmd->add_option("--pool", f->pools,
                  "A pool NAME[:MAX_TOKENS],share=F[,capacity=C|FILE] (repeatable, in the router's bucket order): its share "
                  "of the demand and, if it differs, its own C (default: one pool with all the demand)");
  cmd->callback([f] { run_plan(*f); });
}

} // namespace troupe
