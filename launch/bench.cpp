// `troupe bench throughput`: N prompts of random token ids with fixed input and output lengths (EOS
// ignored), all submitted at once; prints requests/s and tokens/s, and where the step loop's time went.
// With --structured-fraction, that share of the prompts is constrained by a JSON schema, and the time
// spent on their bitmasks per step is printed beside the step time.

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "launch/distributed.hpp"
#include "launch/engine_flags.hpp"
#include "launch/progress_bar.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

struct throughput_options {
  engine_options engine;
  int32_t num_prompts = 1000;
  int32_t input_len = 512;
  int32_t output_len = 128;
  uint64_t seed = 0;
  float temperature = 1.0f;  // 0: greedy (on the GPU the argmax is taken on the device)
  std::string output_json;
  double structured_fraction = 0;  // of the prompts, constrained by structured_schema
  std::string structured_schema;   // a JSON schema file
};

// The file's text. Throws user_error naming the flag when it cannot be read.
std::string read_text(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw user_error(std::string(flag) + " " + path + ": cannot be read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void run_throughput(throughput_options o, const CLI::App& cmd) {
  if (o.num_prompts <= 0 || o.input_len <= 0 || o.output_len <= 0)
    throw user_error("--num-prompts, --input-len and --output-len must be positive");
  if (!(o.structured_fraction >= 0 && o.structured_fraction <= 1))
    throw user_error("--structured-fraction must be in [0, 1]");
  if (o.structured_fraction > 0 && o.structured_schema.empty())
    throw user_error("--structured-fraction needs --structured-schema FILE (a JSON schema)");
  const std::string schema = o.structured_schema.empty() ? "" : read_text(o.structured_schema, "--structured-schema");
  if (run_if_other_rank(o.engine)) return;  // under mpirun: a rank other than 0 runs its shard only
  engine e(o.engine);
  if (o.input_len + o.output_len > e.max_model_len())
    throw user_error("--input-len + --output-len is " + std::to_string(o.input_len + o.output_len) +
                     ", more than the maximum context length " + std::to_string(e.max_model_len()) +
                     "; raise --max-model-len or shorten them");
  std::mt19937_64 rng(o.seed);
  std::vector<prompt_input> prompts(static_cast<size_t>(o.num_prompts));
  for (auto& p : prompts) {
    p.token_ids.resize(static_cast<size_t>(o.input_len));
    for (auto& t : p.token_ids) t = static_cast<int32_t>(rng() % e.config().vocab_size);
  }
  sampling_params params;
  params.temperature = o.temperature;
  params.ignore_eos = true;
  params.max_tokens = o.output_len;
  params.seed = o.seed;
  take_generation_defaults(cmd, e, params, true);
  // The constrained prompts spread evenly (every second one at 0.5), so each step's batch holds the fraction.
  std::vector<sampling_params> per_prompt(prompts.size(), params);
  int32_t num_constrained = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const double share = o.structured_fraction * static_cast<double>(i + 1);
    if (static_cast<int64_t>(share) == static_cast<int64_t>(o.structured_fraction * static_cast<double>(i))) continue;
    per_prompt[i].structured = structured_output{structured_output::kind::json_schema, schema};
    ++num_constrained;
  }

  const engine_stats before = e.stats();
  progress_bar bar(prompts.size());
  const auto start = std::chrono::steady_clock::now();
  const auto results = e.generate(prompts, per_prompt, [&] { bar.tick(); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const engine_stats after = e.stats();

  int64_t in_tokens = 0, out_tokens = 0;
  for (const auto& r : results) {
    if (!r.error.empty()) throw user_error("a request failed: " + r.error);
    in_tokens += static_cast<int64_t>(r.prompt_token_ids.size());
    out_tokens += static_cast<int64_t>(r.token_ids.size());
  }
  const int64_t steps = std::max<int64_t>(1, after.sched.num_steps - before.sched.num_steps);
  auto per_step_us = [&](int64_t a, int64_t b) { return (a - b) / 1e3 / steps; };
  auto mean_us = [](int64_t ns, int64_t n) { return n > 0 ? ns / 1e3 / static_cast<double>(n) : 0.0; };
  const nlohmann::json report = {
      {"backend", o.engine.backend},
      {"dtype", o.engine.dtype},
      {"temperature", params.temperature},
      {"model", e.config().architecture_name},
      {"num_prompts", o.num_prompts},
      {"input_len", o.input_len},
      {"output_len", o.output_len},
      {"max_num_seqs", e.limits().max_num_seqs},
      {"max_num_batched_tokens", e.limits().max_num_batched_tokens},
      {"elapsed_s", seconds},
      {"requests_per_s", o.num_prompts / seconds},
      {"output_tokens_per_s", out_tokens / seconds},
      {"total_tokens_per_s", (in_tokens + out_tokens) / seconds},
      {"num_steps", steps},
      {"tokens_per_step", double(in_tokens + out_tokens) / steps},
      {"step_us", per_step_us(after.step_ns, before.step_ns)},
      {"schedule_us_per_step", per_step_us(after.schedule_ns, before.schedule_ns)},
      {"update_us_per_step", per_step_us(after.update_ns, before.update_ns)},
      {"execute_us_per_step", per_step_us(after.execute_ns, before.execute_ns)},
      {"wall_us_per_step", seconds * 1e6 / steps},
      {"num_decode_steps", after.num_decode_steps - before.num_decode_steps},
      {"decode_step_us", mean_us(after.decode_step_ns - before.decode_step_ns, after.num_decode_steps - before.num_decode_steps)},
      {"other_step_us", mean_us(after.step_ns - before.step_ns - (after.decode_step_ns - before.decode_step_ns),
                                steps - (after.num_decode_steps - before.num_decode_steps))},
      {"num_preemptions", after.sched.num_preemptions - before.sched.num_preemptions},
      {"num_constrained", num_constrained},
      {"mask_us_per_step", per_step_us(after.mask_ns, before.mask_ns)},
      {"mask_wait_us_per_step", per_step_us(after.mask_wait_ns, before.mask_wait_ns)},
  };
  std::printf("%-28s %12.2f\n", "requests/s", report["requests_per_s"].get<double>());
  std::printf("%-28s %12.1f\n", "output tokens/s", report["output_tokens_per_s"].get<double>());
  std::printf("%-28s %12.1f\n", "total tokens/s", report["total_tokens_per_s"].get<double>());
  std::printf("%-28s %12lld\n", "steps", static_cast<long long>(steps));
  std::printf("%-28s %12.1f\n", "tokens per step", report["tokens_per_step"].get<double>());
  std::printf("%-28s %12.1f\n", "us per step (wall)", report["wall_us_per_step"].get<double>());
  std::printf("%-28s %12.1f\n", "  schedule (us/step)", report["schedule_us_per_step"].get<double>());
  std::printf("%-28s %12.1f\n", "  shard execute (us/step)", report["execute_us_per_step"].get<double>());
  std::printf("%-28s %12.1f\n", "  apply results (us/step)", report["update_us_per_step"].get<double>());
  std::printf("%-28s %12.1f\n", "  messaging, other (us/step)",
              report["wall_us_per_step"].get<double>() - report["schedule_us_per_step"].get<double>() -
                  report["execute_us_per_step"].get<double>() - report["update_us_per_step"].get<double>());
  // Decode steps (one token a sequence) apart from the steps carrying prompt tokens: where a workload's time goes
  // between prefill and decode, as the GPU runs it (CUDA graphs and all), without a profiler.
  std::printf("%-28s %12lld, %.1f us each\n", "  decode steps", static_cast<long long>(report["num_decode_steps"].get<int64_t>()),
              report["decode_step_us"].get<double>());
  std::printf("%-28s %12lld, %.1f us each\n", "  steps with prompt tokens",
              static_cast<long long>(steps - report["num_decode_steps"].get<int64_t>()), report["other_step_us"].get<double>());
  std::printf("%-28s %12lld\n", "preemptions", static_cast<long long>(report["num_preemptions"].get<int64_t>()));
  if (num_constrained > 0) {
    // The bitmasks are computed beside the forward pass: only the wait after it adds to the step.
    std::printf("%-28s %12d\n", "constrained prompts", num_constrained);
    std::printf("%-28s %12.3f\n", "  bitmasks (ms/step)", report["mask_us_per_step"].get<double>() / 1e3);
    std::printf("%-28s %12.3f\n", "  waited for them (ms/step)", report["mask_wait_us_per_step"].get<double>() / 1e3);
    std::printf("%-28s %12.3f\n", "  step (ms, wall)", report["wall_us_per_step"].get<double>() / 1e3);
  }
  if (!o.output_json.empty()) {
    std::FILE* f = std::fopen(o.output_json.c_str(), "w");
    if (!f) throw user_error("--output-json " + o.output_json + ": cannot be written");
    std::fputs(report.dump(2).c_str(), f);
    std::fclose(f);
  }
}

} // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto o = std::make_shared<throughput_options>();
  CLI::App* cmd = bench->add_subcommand("throughput", "Offline throughput: N prompts at once, EOS ignored");
  add_engine_flags(cmd, o->engine);
  // vLLM's `bench throughput` sends fixed sampling parameters (temperature 1, top_p 1), so the model's
  // defaults never apply there; bench keeps its figures comparable with vLLM's unless told otherwise.
  o->engine.generation_config = "vllm";
  add_generation_config_flags(cmd, o->engine);
  cmd->add_option("--num-prompts", o->num_prompts)->capture_default_str();
  cmd->add_option("--input-len", o->input_len, "Prompt tokens")->capture_default_str();
  cmd->add_option("--output-len", o->output_len, "Generated tokens per prompt")->capture_default_str();
  cmd->add_option("--seed", o->seed)->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "Sampling temperature; 0: greedy (not given: 1, or the model's with --generation-config auto)")
      ->capture_default_str();
  cmd->add_option("--output-json", o->output_json, "Also write the figures to this file");
  cmd->add_option("--structured-fraction", o->structured_fraction,
                  "Share of the prompts constrained by --structured-schema (structured outputs)")
      ->capture_default_str();
  cmd->add_option("--structured-schema", o->structured_schema, "A JSON schema file for the constrained prompts");
  cmd->callback([o, cmd] { run_throughput(*o, *cmd); });
  register_bench_serve(*bench);
}

} // namespace troupe
