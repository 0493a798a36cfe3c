#pragma once
// runtime/model/: a checkpoint on disk and what is derived from it alone: config.json, safetensors
// (reader, writer, checkpoints), weight names, dtypes, rope tables, the GPU memory plan, the tensor-parallel
// sharding plan, and the random model `troupe make-model` writes. May include runtime/error.hpp and
// runtime/tokenizer/ (the random model trains its tokenizer).
//
// The shape of a Hugging Face decoder model (Llama, Mistral, Qwen2, Qwen3), read from its config.json.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/model/quantization.hpp"

namespace troupe {

enum class architecture { llama, mistral, qwen2, qwen3 };

// Rotary embedding settings, from `rope_theta` + `rope_scaling` (most Hub checkpoints) or
// `rope_parameters` (transformers 5).
struct rope_config {
  enum class kind { default_, linear, llama3 };
  kind type = kind::default_;
  double theta = 10000.0;
  double factor = 1.0;                              // linear and llama3
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct model_config {
  architecture arch = architecture::llama;
  std::string architecture_name;  // as config.json spells it, e.g. "Qwen2ForCausalLM"
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // explicit `head_dim` when given; it may differ from hidden_size / num_heads
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 always; Llama when `attention_bias`
  bool o_bias = false;    // Llama and Qwen3 when `attention_bias` (Qwen2 has none on o_proj)
  // Qwen3: an RMS norm of each q and k head (q_norm, k_norm weights of head_dim) after the projections,
  // before RoPE.
  bool qk_norm = false;
  std::optional<int64_t> sliding_window;  // Mistral; attention sees this many most recent positions
  rope_config rope;
  std::string torch_dtype = "bfloat16";  // the checkpoint's declared dtype
  std::vector<int32_t> eos_token_ids;    // from config.json / generation_config.json
  std::optional<int32_t> bos_token_id;
  // The 4-bit quantization the linear weights load with: config.json's quantization_config, or what the
  // engine resolved from --quantization (resolve_quantization); none for plain weights.
  std::optional<quantization_config> quantization;

  int64_t q_size() const { return num_heads * head_dim; }
  int64_t kv_size() const { return num_kv_heads * head_dim; }
  int64_t num_parameters() const;

  // Parses config.json text; `where` names the file in messages. Throws user_error naming the
  // unsupported architecture or setting.
  static model_config from_json(std::string_view json_text, const std::string& where);
  // Reads <dir>/config.json, and eos/bos ids from <dir>/generation_config.json when present.
  static model_config from_dir(const std::filesystem::path& dir);
  // The config.json text that from_json reads back to this config (used by make-model).
  std::string to_json() const;
};

std::string_view architecture_name(architecture arch);

// The longest context the model was trained for, as vLLM derives it: max_position_embeddings, times the
// factor of a linear rope_scaling (llama3 scaling keeps the length).
int64_t derived_max_model_len(const model_config& c);

struct max_model_len_choice {
  int64_t value = 0;
  std::string warning;  // set when a length beyond the model's was allowed
};

// The context length to serve: `requested`, or the derived length when 0. A length beyond the derived one
// is refused with vLLM's message unless allow_long (vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN=1), which takes it
// with a warning. Throws user_error.
max_model_len_choice resolve_max_model_len(const model_config& c, int64_t requested, bool allow_long);

// The whole file at `path` (a config.json and the like); throws user_error naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

} // namespace troupe
