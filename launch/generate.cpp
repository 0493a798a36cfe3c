// `troupe generate`: complete one or many prompts through the engine (batched continuously) and print
// the results in the prompts' order.

#include <chrono>
#include <fstream>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "launch/distributed.hpp"
#include "launch/engine_flags.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

struct generate_options {
  engine_options engine;
  sampling_params params;
  std::vector<std::string> prompts;
  std::string prompt_token_ids;
  std::string prompts_file;
  int32_t num_prompts = 0;
  int32_t input_len = 0;
  bool json = false;
};

std::vector<int32_t> parse_token_ids(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw user_error("--prompt-token-ids: '" + item + "' is not a token id; give comma-separated integers like 1,2,3");
    }
    pos = end + 1;
  }
  if (ids.empty()) throw user_error("--prompt-token-ids is empty");
  return ids;
}

std::vector<prompt_input> collect_prompts(const generate_options& o, int64_t vocab_size) {
  const int sources = !o.prompts.empty() + !o.prompt_token_ids.empty() + !o.prompts_file.empty() + (o.num_prompts > 0);
  if (sources != 1)
    throw user_error("give exactly one of --prompt TEXT, --prompt-token-ids 1,2,3, --prompts-file FILE or "
                     "--num-prompts N --input-len L");
  std::vector<prompt_input> prompts;
  for (const auto& p : o.prompts) prompts.push_back({p, {}});
  if (!o.prompt_token_ids.empty()) prompts.push_back({"", parse_token_ids(o.prompt_token_ids)});
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) throw user_error("--prompts-file " + o.prompts_file + ": cannot be read");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) prompts.push_back({line, {}});
    if (prompts.empty()) throw user_error("--prompts-file " + o.prompts_file + " has no prompts");
  }
  if (o.num_prompts > 0) {
    if (o.input_len <= 0) throw user_error("--num-prompts needs --input-len L (tokens per random prompt)");
    std::mt19937_64 rng(o.params.seed.value_or(0));
    for (int32_t i = 0; i < o.num_prompts; ++i) {
      prompt_input p;
      for (int32_t t = 0; t < o.input_len; ++t) p.token_ids.push_back(static_cast<int32_t>(rng() % vocab_size));
      prompts.push_back(std::move(p));
    }
  }
  return prompts;
}

void run_generate(generate_options o, const CLI::App& cmd) {
  if (run_if_other_rank(o.engine)) return;  // under mpirun: a rank other than 0 runs its shard only
  const auto load_start = std::chrono::steady_clock::now();
  engine e(o.engine);
  spdlog::info("loaded {} ({:.1f}M parameters) in {:.2f} s", e.config().architecture_name, e.config().num_parameters() / 1e6,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count());
  take_generation_defaults(cmd, e, o.params);
  const std::vector<prompt_input> prompts = collect_prompts(o, e.config().vocab_size);
  if (const std::string invalid = o.params.validate(static_cast<int32_t>(e.config().vocab_size)); !invalid.empty())
    throw user_error(invalid);

  const auto start = std::chrono::steady_clock::now();
  const std::vector<completion> results = e.generate(prompts, o.params);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  size_t prompt_tokens = 0, output_tokens = 0;
  for (const auto& r : results) {
    prompt_tokens += r.prompt_token_ids.size();
    output_tokens += r.token_ids.size();
  }
  spdlog::info("{} prompts: {} prompt tokens and {} generated tokens in {:.3f} s ({:.1f} generated tokens/s)",
               results.size(), prompt_tokens, output_tokens, seconds, output_tokens / std::max(seconds, 1e-9));
  const auto errors = std::count_if(results.begin(), results.end(), [](const completion& r) { return !r.error.empty(); });
  if (errors == static_cast<long>(results.size()))
    throw user_error(results.size() == 1 ? results[0].error : "every prompt failed: " + results[0].error);
  for (size_t i = 0; i < results.size(); ++i) {
    const completion& r = results[i];
    if (!r.error.empty()) spdlog::error("prompt {}: {}", i, r.error);
    if (o.json) {
      nlohmann::json j = {{"prompt_token_ids", r.prompt_token_ids},
                          {"token_ids", r.token_ids},
                          {"text", r.text},
                          {"finish_reason", r.finish_reason}};
      if (!r.error.empty()) j["error"] = r.error;
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else if (r.error.empty()) {
      std::cout << r.text << "\n";
    }
  }
  std::cout.flush();
}

} // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<generate_options>();
  CLI::App* cmd = app.add_subcommand("generate", "Complete prompts (batched continuously) and print the results");
  add_engine_flags(cmd, o->engine);
  add_sampling_flags(cmd, o->params);
  add_generation_config_flags(cmd, o->engine);
  cmd->add_option("--prompt", o->prompts, "Prompt text (repeatable)");
  cmd->add_option("--prompt-token-ids", o->prompt_token_ids, "Prompt as comma-separated token ids");
  cmd->add_option("--prompts-file", o->prompts_file, "A file with one prompt a line");
  cmd->add_option("--num-prompts", o->num_prompts, "Random prompts of --input-len token ids");
  cmd->add_option("--input-len", o->input_len, "Tokens per random prompt");
  cmd->add_flag("--json", o->json, "Print one JSON object per prompt, in the prompts' order");
  cmd->callback([o, cmd] { run_generate(*o, *cmd); });
}

} // namespace troupe
