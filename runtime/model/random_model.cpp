#include "runtime/model/random_model.hpp"

#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "runtime/tokenizer/bpe_trainer.hpp"
#include "runtime/model/dtype.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/error.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/weight_names.hpp"

namespace troupe {
namespace fs = std::filesystem;
namespace {

const char* chatml_template =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw user_error(path.string() + ": cannot be written");
}

model_config config_for(const make_model_options& o, int64_t vocab_size, int32_t eos_id) {
  std::string arch = o.architecture == "qwen2"     ? "Qwen2ForCausalLM"
                     : o.architecture == "qwen3"   ? "Qwen3ForCausalLM"
                     : o.architecture == "llama"   ? "LlamaForCausalLM"
                     : o.architecture == "mistral" ? "MistralForCausalLM"
                                                   : "";
  if (arch.empty())
    throw user_error("--architecture must be qwen2, qwen3, llama or mistral, got '" + o.architecture + "'");
  nlohmann::json j = {{"architectures", {arch}},
                      {"hidden_size", o.hidden_size},
                      {"num_hidden_layers", o.num_layers},
                      {"num_attention_heads", o.num_heads},
                      {"num_key_value_heads", o.num_kv_heads},
                      {"intermediate_size", o.intermediate_size},
                      {"vocab_size", vocab_size},
                      {"max_position_embeddings", o.max_position_embeddings},
                      {"tie_word_embeddings", o.tie_word_embeddings},
                      {"torch_dtype", o.dtype},
                      {"eos_token_id", eos_id}};
  if (o.head_dim > 0) j["head_dim"] = o.head_dim;
  return model_config::from_json(j.dump(), "make-model options");
}

// The packed tensors of random weight `spec` with `values`: RTN-quantized as int4_formats describes, with a
// zero point of at least 1 for GPTQ v1, which stores zero − 1.
packed_int4 pack_random_weight(const quantization_config& q, const weight_spec& spec, std::span<const float> values) {
  const int64_t out = spec.shape[0], in = spec.shape[1], group = q.group_for(in);
  if (in % group != 0)
    throw user_error("--group-size " + std::to_string(q.group_size) + " does not divide the " + std::to_string(in) +
                     " inputs of '" + spec.name + "'");
  const int min_zero = q.method == quant_method::gptq && !q.gptq_v2 ? 1 : 0;
  return pack_int4(rtn_quantize(values, out, in, group, q.symmetric, min_zero), q);
}

} // namespace

void write_random_model(const make_model_options& o, const fs::path& out) {
  dtype type;
  if (o.dtype == "bfloat16") type = dtype::bf16;
  else if (o.dtype == "float16") type = dtype::f16;
  else if (o.dtype == "float32") type = dtype::f32;
  else throw user_error("--dtype must be bfloat16, float16 or float32, got '" + o.dtype + "'");

  const trained_bpe bpe = train_byte_level_bpe(default_training_text(), o.num_merges,
                                               {"<|endoftext|>", "<|im_start|>", "<|im_end|>"});
  const int64_t tokenizer_size = static_cast<int64_t>(bpe.vocab.size() + bpe.special_tokens.size());
  const int64_t vocab_size = o.vocab_size > 0 ? o.vocab_size : (tokenizer_size + 63) / 64 * 64;
  if (vocab_size < tokenizer_size)
    throw user_error("--vocab-size " + std::to_string(vocab_size) + " is smaller than the tokenizer's " +
                     std::to_string(tokenizer_size) + " tokens");
  const int32_t endoftext = static_cast<int32_t>(bpe.vocab.size());
  const int32_t im_end = endoftext + 2;
  model_config config = config_for(o, vocab_size, im_end);
  if (o.quantization == "awq" || o.quantization == "gptq") {
    // Parsed as a checkpoint's would be, so the group size is checked the same way.
    config.quantization = quantization_config::from_json(
        nlohmann::json({{"quant_method", o.quantization}, {"bits", 4}, {"group_size", o.group_size}}).dump(),
        "make-model options");
  } else if (o.quantization == "fp8" || o.quantization == "compressed-tensors") {
    quantization_config q;
    q.method = o.quantization == "fp8" ? quant_method::fp8 : quant_method::compressed_tensors;
    q.fp8_serialized = true;
    const std::string strategy = o.weight_strategy.empty() ? (o.quantization == "fp8" ? "tensor" : "channel") : o.weight_strategy;
    if (strategy != "tensor" && strategy != "channel")
      throw user_error("--weight-strategy must be tensor or channel, got '" + o.weight_strategy + "'");
    if (o.activation_scheme != "dynamic" && o.activation_scheme != "static")
      throw user_error("--activation-scheme must be dynamic or static, got '" + o.activation_scheme + "'");
    q.fp8_channel_scales = strategy == "channel";
    q.fp8_static_input = o.activation_scheme == "static";
    // Written and read back as a checkpoint's would be.
    config.quantization = quantization_config::from_json(q.to_json(), "make-model options");
  } else if (!o.quantization.empty()) {
    throw user_error("--quantization must be awq, gptq, fp8 or compressed-tensors, got '" + o.quantization + "'");
  }

  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw user_error(out.string() + ": cannot create the folder: " + ec.message());

  write_file(out / "config.json", config.to_json());
  write_file(out / "generation_config.json",
             nlohmann::json({{"eos_token_id", {im_end, endoftext}}, {"do_sample", false}}).dump(2));
  write_file(out / "tokenizer.json", byte_level_tokenizer_json(bpe));
  write_file(out / "tokenizer_config.json",
             nlohmann::json({{"eos_token", "<|im_end|>"},
                             {"pad_token", "<|endoftext|>"},
                             {"bos_token", nullptr},
                             {"model_max_length", o.max_position_embeddings},
                             {"chat_template", chatml_template}})
                 .dump(2));

  std::vector<std::vector<std::byte>> storage;
  std::vector<packed_int4> packed;  // moving a packed_int4 keeps its buffers, which `tensors` points into
  std::vector<packed_fp8> packed8;  // likewise
  std::vector<tensor_to_write> tensors;
  std::vector<float> values;
  const auto specs = hf_weight_specs(config);
  storage.reserve(specs.size());
  for (const weight_spec& spec : specs) {
    random_weight_values(spec, o.seed, values);
    if (config.quantization && config.quantization->fp8() && config.quantization->quantizes(spec.name)) {
      const quantization_config& q = *config.quantization;
      fp8_weight w = quantize_fp8(values, spec.shape[0], spec.shape[1], q.fp8_channel_scales);
      if (q.fp8_static_input) w.input_scale = fp8_made_input_scale;
      packed8.push_back(pack_fp8(w, q));
      for (tensor_to_write& t : packed_tensors(spec.name.substr(0, spec.name.size() - 7), packed8.back()))
        tensors.push_back(std::move(t));
      continue;
    }
    if (config.quantization && config.quantization->quantizes(spec.name)) {
      packed.push_back(pack_random_weight(*config.quantization, spec, values));
      for (tensor_to_write& t : packed_tensors(spec.name.substr(0, spec.name.size() - 7), packed.back()))
        tensors.push_back(std::move(t));
      continue;
    }
    std::vector<std::byte> bytes(values.size() * size_in_bytes(type));
    for (size_t i = 0; i < values.size(); ++i) {
      if (type == dtype::f32) {
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
      } else {
        const uint16_t bits = type == dtype::bf16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &bits, 2);
      }
    }
    storage.push_back(std::move(bytes));
    tensors.push_back({spec.name, type, spec.shape, storage.back()});
  }
  if (o.max_shard_bytes > 0) write_sharded_safetensors(out, tensors, static_cast<size_t>(o.max_shard_bytes));
  else write_safetensors(out / "model.safetensors", tensors, {{"format", "pt"}});
}

fs::path default_model_dir() {
  fs::path cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) cache = xdg;
  else if (const char* home = std::getenv("HOME"); home && *home) cache = fs::path(home) / ".cache";
  else cache = fs::temp_directory_path();
  const fs::path dir = cache / "troupe" / "default-model-v1";
  if (fs::exists(dir / "model.safetensors")) return dir;
  spdlog::info("making the default model (random weights) in {}", dir.string());
  // Written beside, then renamed, so a half-written folder is never taken for a model.
  const fs::path tmp = dir.string() + ".tmp" + std::to_string(::getpid());
  write_random_model(make_model_options{}, tmp);
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec && !fs::exists(dir / "model.safetensors")) throw user_error(dir.string() + ": cannot be created: " + ec.message());
  fs::remove_all(tmp, ec);
  return dir;
}

} // namespace troupe
