// `troupe generate`: complete one prompt on the CPU backend and print the result.
// (The engine issue turns this into batched generation over many prompts.)

#include <chrono>
#include <iostream>
#include <optional>
#include <random>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/sampler.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "launch/commands.hpp"
#include "runtime/error.hpp"
#include "runtime/random_model.hpp"
#include "runtime/safetensors.hpp"
#include "runtime/sampling_params.hpp"
#include "runtime/stop_checker.hpp"
#include "runtime/tokenizer.hpp"

namespace troupe {
namespace fs = std::filesystem;
namespace {

struct generate_options {
  std::string model;
  std::string load_format = "auto";
  std::string prompt;
  std::string prompt_token_ids;
  int64_t max_model_len = 0;
  int64_t max_num_batched_tokens = 2048;
  int32_t block_size = 16;
  bool json = false;
  sampling_params params;
  std::optional<uint64_t> seed;
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

// Builds the step that computes `tokens` at positions [first, first + n) of the single sequence whose
// block table is `table`.
step_input single_sequence_step(std::span<const int32_t> tokens, int32_t first, const std::vector<int32_t>& table,
                                int32_t block_size) {
  step_input in;
  in.max_blocks_per_seq = static_cast<int32_t>(table.size());
  in.block_tables = table;
  in.query_start = {0, static_cast<int32_t>(tokens.size())};
  in.seq_lens = {first + static_cast<int32_t>(tokens.size())};
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t pos = first + static_cast<int32_t>(i);
    in.token_ids.push_back(tokens[i]);
    in.positions.push_back(pos);
    in.slot_mapping.push_back(int64_t(table[pos / block_size]) * block_size + pos % block_size);
  }
  in.logits_indices = {static_cast<int32_t>(tokens.size()) - 1};
  return in;
}

void run_generate(generate_options o) {
  const fs::path dir = o.model.empty() ? default_model_dir() : fs::path(o.model);
  if (!fs::is_directory(dir)) throw user_error("--model " + dir.string() + ": no such folder");
  const model_config config = model_config::from_dir(dir);

  std::optional<tokenizer> tok;
  if (fs::exists(dir / "tokenizer.json")) tok = tokenizer::from_file(dir / "tokenizer.json");
  if (o.prompt.empty() == o.prompt_token_ids.empty())
    throw user_error("give exactly one of --prompt TEXT or --prompt-token-ids 1,2,3");
  std::vector<int32_t> prompt_ids;
  if (!o.prompt_token_ids.empty()) {
    prompt_ids = parse_token_ids(o.prompt_token_ids);
  } else {
    if (!tok) throw user_error(dir.string() + " has no tokenizer.json: give --prompt-token-ids instead of --prompt");
    prompt_ids = tok->encode(o.prompt, true);
  }
  for (int32_t id : prompt_ids)
    if (id >= config.vocab_size)
      throw user_error("prompt token id " + std::to_string(id) + " is outside the vocabulary (size " +
                       std::to_string(config.vocab_size) + ")");

  const int64_t max_model_len = o.max_model_len > 0 ? o.max_model_len : config.max_position_embeddings;
  if (static_cast<int64_t>(prompt_ids.size()) >= max_model_len)
    throw user_error("the prompt is " + std::to_string(prompt_ids.size()) + " tokens, but the maximum context length is " +
                     std::to_string(max_model_len) + "; shorten the prompt or raise --max-model-len");
  const std::string invalid = o.params.validate(static_cast<int32_t>(config.vocab_size));
  if (!invalid.empty()) throw user_error(invalid);

  std::vector<int32_t> eos_ids = config.eos_token_ids;
  if (tok && tok->eos_id() && std::find(eos_ids.begin(), eos_ids.end(), *tok->eos_id()) == eos_ids.end())
    eos_ids.push_back(*tok->eos_id());

  const auto load_start = std::chrono::steady_clock::now();
  cpu_ops backend;
  std::optional<checkpoint> ckpt;
  weight_source source;
  if (o.load_format == "dummy") {
    source = dummy_weight_source(0);
  } else if (o.load_format == "auto" || o.load_format == "safetensors") {
    ckpt.emplace(checkpoint::open(dir));
    source = checkpoint_weight_source(*ckpt, config);
  } else {
    throw user_error("--load-format must be auto, safetensors or dummy, got '" + o.load_format + "'");
  }
  model_limits limits;
  limits.max_model_len = max_model_len;
  limits.max_num_tokens = std::min<int64_t>(o.max_num_batched_tokens, max_model_len);
  limits.max_num_seqs = 1;
  limits.block_size = o.block_size;
  limits.num_blocks = (max_model_len + o.block_size - 1) / o.block_size;
  model m(config, backend, load_model_weights(config, backend, dtype::f32, source), dtype::f32, limits);
  ckpt.reset();
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  spdlog::info("loaded {} ({}, {:.1f}M parameters) in {:.2f} s", dir.string(), config.architecture_name,
               config.num_parameters() / 1e6, load_s);

  std::vector<int32_t> table(static_cast<size_t>(limits.num_blocks));
  for (size_t b = 0; b < table.size(); ++b) table[b] = static_cast<int32_t>(b);
  const uint64_t seed = o.params.seed ? *o.params.seed : std::random_device{}();
  std::vector<int32_t> output_ids;
  std::optional<incremental_detokenizer> detok;
  if (tok) detok.emplace(*tok, prompt_ids, true);
  stop_checker stops(o.params, eos_ids, static_cast<int32_t>(prompt_ids.size()), static_cast<int32_t>(max_model_len));
  std::string text;
  size_t printed = 0;
  stop_decision decision;
  std::vector<float> logits;

  const auto start = std::chrono::steady_clock::now();
  // Prefill in chunks of the step budget, then decode one token a step.
  for (size_t begin = 0; begin < prompt_ids.size(); begin += limits.max_num_tokens) {
    const size_t n = std::min<size_t>(limits.max_num_tokens, prompt_ids.size() - begin);
    m.forward(single_sequence_step(std::span(prompt_ids).subspan(begin, n), static_cast<int32_t>(begin), table,
                                   o.block_size),
              logits);
  }
  const auto first_token = std::chrono::steady_clock::now();
  while (true) {
    const sample_request req{&o.params, prompt_ids, output_ids, seed, eos_ids};
    const int32_t next = sample_cpu(logits, static_cast<int32_t>(config.vocab_size), std::span(&req, 1))[0];
    output_ids.push_back(next);
    if (detok) text += detok->push(next);
    decision = stops.check(next, text);
    if (!o.json && decision.releasable_size > printed) {
      std::cout << text.substr(printed, decision.releasable_size - printed) << std::flush;
      printed = decision.releasable_size;
    }
    if (decision.reason != finish_reason::none) break;
    const int32_t pos = static_cast<int32_t>(prompt_ids.size() + output_ids.size() - 1);
    m.forward(single_sequence_step(std::span(&output_ids.back(), 1), pos, table, o.block_size), logits);
  }
  if (detok && decision.reason == finish_reason::length) {
    text += detok->flush();
    decision.text_size = text.size();
  }
  text.resize(std::min(text.size(), decision.text_size));
  const auto end = std::chrono::steady_clock::now();

  const double prefill_s = std::chrono::duration<double>(first_token - start).count();
  const double decode_s = std::chrono::duration<double>(end - first_token).count();
  spdlog::info("prompt {} tokens in {:.3f} s ({:.1f} tokens/s); generated {} tokens in {:.3f} s ({:.1f} tokens/s)",
               prompt_ids.size(), prefill_s, prompt_ids.size() / std::max(prefill_s, 1e-9), output_ids.size(),
               decode_s, output_ids.size() / std::max(decode_s, 1e-9));

  if (o.json) {
    const nlohmann::json j = {{"prompt_token_ids", prompt_ids},
                              {"token_ids", output_ids},
                              {"text", text},
                              {"finish_reason", std::string(to_string(decision.reason))}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    if (text.size() > printed) std::cout << text.substr(printed);
    std::cout << "\n";
  }
}

} // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<generate_options>();
  CLI::App* cmd = app.add_subcommand("generate", "Complete a prompt");
  cmd->add_option("--model", o->model, "Hugging Face model folder (default: the built-in small model)");
  cmd->add_option("--load-format", o->load_format, "auto, safetensors or dummy (random weights)")->capture_default_str();
  cmd->add_option("--prompt", o->prompt, "Prompt text");
  cmd->add_option("--prompt-token-ids", o->prompt_token_ids, "Prompt as comma-separated token ids");
  cmd->add_option("--max-model-len", o->max_model_len, "Context length (default: the model's)");
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "Tokens per step")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", o->block_size, "KV cache block size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens", o->params.max_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--min-tokens", o->params.min_tokens)->capture_default_str();
  cmd->add_option("--temperature", o->params.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-p", o->params.top_p)->capture_default_str();
  cmd->add_option("--top-k", o->params.top_k, "0: off")->capture_default_str();
  cmd->add_option("--min-p", o->params.min_p)->capture_default_str();
  cmd->add_option("--repetition-penalty", o->params.repetition_penalty)->capture_default_str();
  cmd->add_option("--presence-penalty", o->params.presence_penalty)->capture_default_str();
  cmd->add_option("--frequency-penalty", o->params.frequency_penalty)->capture_default_str();
  cmd->add_option("--seed", o->params.seed, "Seed: the same seed gives the same text");
  cmd->add_option("--stop", o->params.stop, "Stop string (repeatable)");
  cmd->add_option("--stop-token-ids", o->params.stop_token_ids, "Token ids that stop generation")->delimiter(',');
  cmd->add_flag("--ignore-eos", o->params.ignore_eos, "Keep generating past EOS");
  cmd->add_flag("--json", o->json, "Print one JSON object per prompt");
  cmd->callback([o] { run_generate(*o); });
}

} // namespace troupe
