// `troupe make-model`: flags for runtime/model/random_model.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "runtime/model/random_model.hpp"

namespace troupe {

void register_make_model(CLI::App& app) {
  auto options = std::make_shared<make_model_options>();
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("make-model", "Write a Hugging Face model folder with random weights and a tokenizer");
  cmd->add_option("--out", *out, "Folder to write")->required();
  cmd->add_option("--architecture,--arch", options->architecture, "qwen2, qwen3, llama or mistral")->capture_default_str();
  cmd->add_option("--hidden-size", options->hidden_size)->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--num-layers", options->num_layers)->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--num-heads", options->num_heads)->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--num-kv-heads", options->num_kv_heads)->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", options->head_dim, "0: hidden size / heads")->capture_default_str();
  cmd->add_option("--intermediate-size", options->intermediate_size)->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-position-embeddings", options->max_position_embeddings)->capture_default_str();
  cmd->add_option("--vocab-size", options->vocab_size, "0: the tokenizer's size rounded up to 64")->capture_default_str();
  cmd->add_option("--num-merges", options->num_merges, "BPE merges of the tokenizer")->capture_default_str();
  cmd->add_option("--dtype", options->dtype, "bfloat16, float16 or float32")->capture_default_str();
  cmd->add_option("--seed", options->seed)->capture_default_str();
  cmd->add_option("--max-shard-bytes", options->max_shard_bytes, "0: one file")->capture_default_str();
  cmd->add_option("--quantization", options->quantization,
                  "awq or gptq: the layers' linear weights RTN-quantized to 4 bits and packed as AutoAWQ (GEMM, zero "
                  "points) or AutoGPTQ (sym) write them; fp8 or compressed-tensors: quantized to FP8 (F8_E4M3 with "
                  "weight_scale) as AutoFP8 (quant_method fp8) or llm-compressor (float-quantized) store them");
  cmd->add_option("--group-size", options->group_size, "Inputs per 4-bit group with --quantization awq|gptq: 32, 64, 128 or -1")
      ->capture_default_str();
  cmd->add_option("--weight-strategy", options->weight_strategy,
                  "FP8 weight scales: tensor or channel (default: tensor for fp8, channel for compressed-tensors)");
  cmd->add_option("--activation-scheme", options->activation_scheme,
                  "FP8 activations: dynamic (per token) or static (an input_scale per layer, 1/32)")
      ->capture_default_str();
  cmd->add_flag("--tie-word-embeddings,!--no-tie-word-embeddings", options->tie_word_embeddings)->capture_default_str();
  cmd->callback([options, out] {
    write_random_model(*options, *out);
    spdlog::info("wrote {}", *out);
  });
}

} // namespace troupe
