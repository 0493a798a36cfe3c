#pragma once
// A complete Hugging Face model folder with random weights — config.json,
// generation_config.json, safetensors, and a trained byte-level BPE tokenizer with a chat template
// (what `troupe make-model` writes, and the built-in default model).

#include <cstdint>
#include <filesystem>
#include <string>

namespace troupe {

struct make_model_options {
  std::string architecture = "qwen2";  // qwen2 | qwen3 | llama | mistral
  int64_t hidden_size = 128;
  int64_t num_layers = 4;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  int64_t head_dim = 0;  // 0: hidden_size / num_heads
  int64_t intermediate_size = 384;
  int64_t max_position_embeddings = 4096;
  int64_t vocab_size = 0;  // 0: the tokenizer's size rounded up to 64
  int num_merges = 256;
  std::string dtype = "bfloat16";  // bfloat16 | float16 | float32
  uint64_t seed = 0;
  bool tie_word_embeddings = true;
  int64_t max_shard_bytes = 0;  // 0: one model.safetensors
  // "awq" or "gptq": the decoder layers' linear weights RTN-quantized to 4 bits and packed as AutoAWQ (GEMM,
  // zero points) or AutoGPTQ (sym, v1) write them, with a quantization_config; "fp8" or "compressed-tensors":
  // quantized to FP8 and stored as AutoFP8 (quant_method fp8) or llm-compressor (float-quantized) store them;
  // "" for plain weights.
  std::string quantization;
  int64_t group_size = 128;  // with awq or gptq: 32, 64, 128 or -1
  // With fp8 or compressed-tensors: weight scales per "tensor" or per "channel" ("": tensor for fp8, as AutoFP8
  // writes them, channel for compressed-tensors, as llm-compressor's FP8_DYNAMIC scheme), and "dynamic" or
  // "static" activations (static: every layer's input_scale is fp8_made_input_scale).
  std::string weight_strategy;
  std::string activation_scheme = "dynamic";
};

// The input_scale make-model writes for static FP8 activations: what a calibration would find for activations up
// to 14 (14 / 448): the random models' largest stay below it.
inline constexpr float fp8_made_input_scale = 1.0f / 32.0f;

// Writes the folder; throws user_error on bad options or an unwritable folder.
void write_random_model(const make_model_options& options, const std::filesystem::path& out);

// The small model used when no --model is given: made on first use under $XDG_CACHE_HOME/troupe
// (or ~/.cache/troupe), the same bytes on every machine.
std::filesystem::path default_model_dir();

} // namespace troupe
