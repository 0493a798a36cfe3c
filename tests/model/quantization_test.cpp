// quantization_config from config.json, and how the checkpoint's method and --quantization combine
// (runtime/model/quantization.hpp).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/error.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/model/quantization.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

// What Qwen/Qwen2.5-7B-Instruct-AWQ and Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4 hold in config.json (the GPTQ one
// as optimum writes it, with many fields troupe ignores).
const char* hub_awq = R"({"bits": 4, "group_size": 128, "modules_to_not_convert": null, "quant_method": "awq",
  "version": "gemm", "zero_point": true})";
// What neuralmagic/Meta-Llama-3-8B-Instruct-FP8 (AutoFP8) and RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8-dynamic
// (llm-compressor's FP8_DYNAMIC scheme) hold in config.json.
const char* hub_fp8 = R"({"activation_scheme": "static", "ignored_layers": ["lm_head"], "quant_method": "fp8"})";
const char* hub_compressed_tensors = R"({"config_groups": {"group_0": {"input_activations": {"actorder": null,
  "block_structure": null, "dynamic": true, "group_size": null, "num_bits": 8, "observer": null, "observer_kwargs": {},
  "strategy": "token", "symmetric": true, "type": "float"}, "output_activations": null, "targets": ["Linear"],
  "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": null, "num_bits": 8,
  "observer": "minmax", "observer_kwargs": {}, "strategy": "channel", "symmetric": true, "type": "float"}}},
  "format": "float-quantized", "global_compression_ratio": 1.2405, "ignore": ["lm_head"], "kv_cache_scheme": null,
  "quant_method": "compressed-tensors", "quantization_status": "compressed"})";
const char* hub_gptq = R"({"batch_size": 1, "bits": 4, "block_name_to_quantize": null, "cache_block_outputs": true,
  "damp_percent": 0.01, "dataset": null, "desc_act": false, "exllama_config": {"version": 1}, "group_size": 128,
  "max_input_length": null, "model_seqlen": null, "module_name_preceding_first_block": null,
  "modules_in_block_to_quantize": null, "pad_token_id": null, "quant_method": "gptq", "sym": true,
  "tokenizer": null, "true_sequential": true, "use_cuda_fp16": false, "use_exllama": true})";

std::string error_of(const std::string& json) {
  try {
    quantization_config::from_json(json, "config.json");
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

std::string resolve_error(const std::optional<quantization_config>& ckpt, const std::string& flag, const fs::path& dir = "m") {
  try {
    resolve_quantization(ckpt, flag, dir);
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

class temp_folder {
public:
  temp_folder() : path_(fs::temp_directory_path() / ("troupe_quant_" + std::to_string(::getpid()))) {
    fs::create_directories(path_);
  }
  ~temp_folder() { fs::remove_all(path_); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path_ / name) << text; }
  const fs::path& path() const { return path_; }

private:
  fs::path path_;
};

} // namespace

TEST(quantization_config, reads_autoawqs_gemm_config_as_the_hub_holds_it) {
  const auto q = quantization_config::from_json(hub_awq, "config.json");
  EXPECT_EQ(q.method, quant_method::awq);
  EXPECT_EQ(q.group_size, 128);
  EXPECT_FALSE(q.symmetric);
  EXPECT_TRUE(q.modules_to_not_convert.empty());
}

TEST(quantization_config, reads_a_gptq_config_as_optimum_writes_it) {
  const auto q = quantization_config::from_json(hub_gptq, "config.json");
  EXPECT_EQ(q.method, quant_method::gptq);
  EXPECT_EQ(q.group_size, 128);
  EXPECT_TRUE(q.symmetric);
  EXPECT_FALSE(q.gptq_v2);
  EXPECT_TRUE(quantization_config::from_json(R"({"quant_method": "gptq", "bits": 4, "group_size": 64,
    "desc_act": false, "sym": false, "checkpoint_format": "gptq_v2"})", "c").gptq_v2);
}

TEST(quantization_config, reads_old_autoawq_spellings_and_group_minus_one_as_the_whole_input) {
  const auto q = quantization_config::from_json(R"({"zero_point": true, "q_group_size": -1, "w_bit": 4,
    "version": "GEMM"})", "quant_config.json", quant_method::awq);
  EXPECT_EQ(q.group_size, -1);
  EXPECT_EQ(q.group_for(4096), 4096);
}

TEST(quantization_config, refuses_what_troupe_does_not_read_naming_the_field_and_value) {
  EXPECT_EQ(error_of(R"({"quant_method": "awq", "bits": 8, "group_size": 128, "version": "gemm"})"),
            "config.json: 'bits' 8 is not supported for awq; troupe supports 4");
  EXPECT_EQ(error_of(R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true})"),
            "config.json: GPTQ 'desc_act' true (act-order) is not supported; troupe reads GPTQ checkpoints with "
            "desc_act false");
  for (const char* version : {"gemv", "gemv_fast", "marlin", "exllama"})
    EXPECT_EQ(error_of(std::string(R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": ")") + version + "\"}"),
              std::string("config.json: AWQ 'version' \"") + version +
                  "\" is not supported; troupe reads AutoAWQ's GEMM layout (\"gemm\") only");
  EXPECT_EQ(error_of(R"({"quant_method": "bitsandbytes", "load_in_4bit": true})"),
            "config.json: 'quant_method' \"bitsandbytes\" is not supported; supported: awq (AutoAWQ, GEMM), gptq "
            "(AutoGPTQ / GPTQModel), fp8, compressed-tensors (float-quantized, FP8)");
  EXPECT_EQ(error_of(R"({"quant_method": "gptq", "bits": 4, "group_size": 256})"),
            "config.json: 'group_size' 256 is not supported for gptq; supported: 32, 64, 128 and -1 (the whole input "
            "dimension)");
  EXPECT_EQ(error_of(R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"})"),
            "config.json: GPTQ 'checkpoint_format' \"marlin\" is not supported; supported: gptq, gptq_v2");
  EXPECT_EQ(error_of(R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "lm_head": true})"),
            "config.json: a quantized lm_head ('lm_head': true) is not supported; troupe quantizes the decoder "
            "layers' linear weights");
  EXPECT_EQ(error_of(R"({"quant_method": "awq", "group_size": 128})"), "config.json: quantization config has no 'bits'");
}

TEST(quantization_config, quantizes_the_decoder_layers_linear_weights_only) {
  quantization_config q = quantization_config::from_json(hub_awq, "c");
  EXPECT_TRUE(q.quantizes("model.layers.3.self_attn.o_proj.weight"));
  EXPECT_TRUE(q.quantizes("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_FALSE(q.quantizes("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(q.quantizes("model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(q.quantizes("model.embed_tokens.weight"));
  EXPECT_FALSE(q.quantizes("lm_head.weight"));
  q.modules_to_not_convert = {"layers.1.mlp"};
  EXPECT_FALSE(q.quantizes("model.layers.1.mlp.down_proj.weight"));
  EXPECT_TRUE(q.quantizes("model.layers.1.self_attn.k_proj.weight"));
}

TEST(quantization_config, rtn_groups_by_128_or_the_largest_of_64_and_32_that_divides) {
  quantization_config q;
  q.method = quant_method::rtn;
  EXPECT_EQ(q.group_for(4096), 128);
  EXPECT_EQ(q.group_for(64), 64);
  EXPECT_EQ(q.group_for(96), 32);
  EXPECT_EQ(q.group_for(40), 40);
}

TEST(quantization_config, survives_a_round_trip_through_config_json_and_is_checked_there) {
  const char* base = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 10, "quantization_config": )";
  for (const char* q : {hub_awq, hub_gptq}) {
    const model_config c = model_config::from_json(std::string(base) + q + "}", "c");
    const model_config again = model_config::from_json(c.to_json(), "again");
    ASSERT_TRUE(again.quantization);
    EXPECT_EQ(again.quantization->to_json(), c.quantization->to_json());
  }
  try {
    model_config::from_json(std::string(base) + R"({"quant_method": "gptq", "bits": 3, "group_size": 128}})", "config.json");
    FAIL() << "no error";
  } catch (const user_error& e) {
    EXPECT_STREQ(e.what(), "config.json: quantization_config: 'bits' 3 is not supported for gptq; troupe supports 4");
  }
}

TEST(resolve_quantization, a_quantized_checkpoint_is_quantized_whatever_the_flag_says_when_it_agrees) {
  const auto awq = quantization_config::from_json(hub_awq, "c");
  EXPECT_EQ(resolve_quantization(awq, "", "m")->method, quant_method::awq);
  EXPECT_EQ(resolve_quantization(awq, "awq", "m")->method, quant_method::awq);
  EXPECT_FALSE(resolve_quantization(std::nullopt, "", "m"));
  EXPECT_EQ(resolve_quantization(std::nullopt, "rtn", "m")->method, quant_method::rtn);
}

TEST(resolve_quantization, a_flag_naming_another_method_is_vllms_error_naming_both) {
  const auto awq = quantization_config::from_json(hub_awq, "c");
  EXPECT_EQ(resolve_error(awq, "gptq"),
            "Quantization method specified in the model config (awq) does not match the quantization method "
            "specified in the `quantization` argument (gptq); the checkpoint is already quantized with awq: drop "
            "--quantization or give --quantization awq");
  EXPECT_EQ(resolve_error(awq, "rtn"),
            "Quantization method specified in the model config (awq) does not match the quantization method "
            "specified in the `quantization` argument (rtn); the checkpoint is already quantized with awq: drop "
            "--quantization or give --quantization awq");
  EXPECT_EQ(resolve_error(std::nullopt, "int8"), "--quantization must be awq, gptq, rtn, fp8 or compressed-tensors, got 'int8'");
}

TEST(resolve_quantization, awq_on_an_unquantized_checkpoint_is_vllms_cannot_find_the_config_file) {
  const temp_folder dir;
  EXPECT_EQ(resolve_error(std::nullopt, "awq", dir.path()),
            "Cannot find the config file for awq: --quantization awq needs a checkpoint quantized with awq, and " +
                dir.path().string() +
                " has no quantization_config in config.json (nor a quant_config.json or quantize_config.json); for "
                "4-bit weights made at load, use --quantization rtn");
  // Old AutoAWQ folders keep the config beside config.json; vLLM reads it when asked for awq.
  dir.write("quant_config.json", R"({"zero_point": true, "q_group_size": 64, "w_bit": 4, "version": "GEMM"})");
  const auto q = resolve_quantization(std::nullopt, "awq", dir.path());
  ASSERT_TRUE(q);
  EXPECT_EQ(q->group_size, 64);
  EXPECT_FALSE(resolve_quantization(std::nullopt, "", dir.path()));
}

TEST(quantization_config, reads_fp8_checkpoints_as_autofp8_and_llm_compressor_write_them) {
  const auto fp8 = quantization_config::from_json(hub_fp8, "config.json");
  EXPECT_EQ(fp8.method, quant_method::fp8);
  EXPECT_TRUE(fp8.fp8() && !fp8.four_bit() && fp8.fp8_serialized && fp8.fp8_static_input);
  EXPECT_EQ(fp8.modules_to_not_convert, std::vector<std::string>{"lm_head"});
  EXPECT_FALSE(quantization_config::from_json(R"({"quant_method": "fp8", "activation_scheme": "dynamic"})", "c").fp8_static_input);
  const auto ct = quantization_config::from_json(hub_compressed_tensors, "config.json");
  EXPECT_EQ(ct.method, quant_method::compressed_tensors);
  EXPECT_TRUE(ct.fp8_serialized && ct.fp8_channel_scales);
  EXPECT_FALSE(ct.fp8_static_input);
  EXPECT_TRUE(ct.quantizes("model.layers.0.mlp.down_proj.weight"));
  EXPECT_FALSE(ct.quantizes("lm_head.weight"));
  // llm-compressor's FP8 scheme (static per-tensor activations and weights).
  std::string fp8_static = hub_compressed_tensors;
  fp8_static.replace(fp8_static.find("\"dynamic\": true"), 15, "\"dynamic\": false");
  fp8_static.replace(fp8_static.find("\"token\""), 7, "\"tensor\"");
  fp8_static.replace(fp8_static.find("\"channel\""), 9, "\"tensor\"");
  const auto st = quantization_config::from_json(fp8_static, "c");
  EXPECT_TRUE(st.fp8_static_input);
  EXPECT_FALSE(st.fp8_channel_scales);
}

TEST(quantization_config, refuses_fp8_schemes_troupe_does_not_run_naming_the_field) {
  EXPECT_EQ(error_of(R"({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]})"),
            "config.json: FP8 'weight_block_size' [128,128] (block-wise scales, weight_scale_inv) is not supported; "
            "troupe reads FP8 checkpoints with per-tensor or per-channel weight_scale");
  EXPECT_EQ(error_of(R"({"quant_method": "fp8"})"), "config.json: quantization config has no 'activation_scheme' (dynamic or static)");
  EXPECT_EQ(error_of(R"({"quant_method": "fp8", "activation_scheme": "per_token"})"),
            "config.json: FP8 'activation_scheme' \"per_token\" is not supported; supported: dynamic, static");
  const auto ct_error = [](const std::string& from, const std::string& to) {
    std::string j = hub_compressed_tensors;
    j.replace(j.find(from), from.size(), to);
    return error_of(j);
  };
  EXPECT_EQ(ct_error("\"channel\"", "\"block\""),
            "config.json: compressed-tensors weights strategy \"block\" is not supported; supported: tensor, channel "
            "(block and group scales are not)");
  EXPECT_EQ(ct_error("float-quantized", "pack-quantized"),
            "config.json: compressed-tensors 'format' \"pack-quantized\" is not supported; troupe reads "
            "\"float-quantized\" (FP8 weights and activations)");
  EXPECT_EQ(ct_error("\"dynamic\": false, \"group_size\": null, \"num_bits\": 8,", "\"dynamic\": false, \"group_size\": null, \"num_bits\": 4,"),
            "config.json: compressed-tensors 'weights' of 4-bit float are not supported; troupe reads FP8 (num_bits 8, "
            "type float) weights and activations");
  EXPECT_EQ(ct_error("\"input_activations\": {", "\"input_activations\": null, \"unused\": {"),
            "config.json: compressed-tensors weight-only FP8 ('input_activations' null, vLLM's W8A16 through Marlin) is "
            "not supported; troupe runs FP8 weights with FP8 activations");
  EXPECT_EQ(ct_error("[\"Linear\"]", "[\"re:.*mlp.*\"]"),
            "config.json: compressed-tensors group 'group_0' targets [\"re:.*mlp.*\"]; troupe reads a group whose "
            "targets are [\"Linear\"]");
  EXPECT_EQ(ct_error("\"group_0\": {", "\"group_1\": {\"targets\": [\"Linear\"]}, \"group_0\": {"),
            "config.json: compressed-tensors 'config_groups' with 2 groups (mixed schemes) are not supported; troupe "
            "reads one group");
  EXPECT_EQ(ct_error("\"strategy\": \"token\"", "\"strategy\": \"token\", \"dynamic_x\": 0"), "");  // unknown keys pass
  std::string static_token = hub_compressed_tensors;
  static_token.replace(static_token.find("\"dynamic\": true"), 15, "\"dynamic\": false");
  EXPECT_EQ(error_of(static_token),
            "config.json: compressed-tensors static input_activations of strategy \"token\" are not supported; static "
            "activations have one scale per tensor (strategy tensor)");
}

TEST(quantization_config, fp8_ignores_layers_named_exactly_or_by_a_re_pattern_from_their_start) {
  quantization_config q = quantization_config::from_json(
      R"({"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head",
      "model.layers.0.mlp.down_proj", "re:.*layers\\.1\\.self_attn\\.(q|k|v)_proj$"], "config_groups": {"g": {"targets":
      ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"}, "input_activations": {"num_bits": 8,
      "type": "float", "dynamic": true}}}})",
      "c");
  EXPECT_FALSE(q.quantizes("model.layers.0.mlp.down_proj.weight"));
  EXPECT_TRUE(q.quantizes("model.layers.10.mlp.down_proj.weight"));  // not a substring match, as AWQ's is
  EXPECT_FALSE(q.quantizes("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_TRUE(q.quantizes("model.layers.1.self_attn.o_proj.weight"));
  EXPECT_TRUE(q.quantizes("model.layers.11.self_attn.k_proj.weight"));
  EXPECT_EQ(error_of(R"({"quant_method": "fp8", "activation_scheme": "dynamic", "ignored_layers": ["re:(("]})"),
            "config.json: the module pattern \"re:((\" is not a regular expression troupe can read");
}

TEST(quantization_config, fp8_configs_survive_a_round_trip_through_config_json_and_fp8_made_at_load_is_not_written) {
  const char* base = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 10, "quantization_config": )";
  for (const char* q : {hub_fp8, hub_compressed_tensors}) {
    const model_config c = model_config::from_json(std::string(base) + q + "}", "c");
    const model_config again = model_config::from_json(c.to_json(), "again");
    ASSERT_TRUE(again.quantization);
    EXPECT_EQ(again.quantization->to_json(), c.quantization->to_json());
    EXPECT_EQ(again.quantization->fp8_static_input, c.quantization->fp8_static_input);
    EXPECT_EQ(again.quantization->fp8_channel_scales, c.quantization->fp8_channel_scales);
  }
  model_config c = model_config::from_json(std::string(base) + "null}", "c");
  c.quantization = resolve_quantization(std::nullopt, "fp8", "m");
  EXPECT_FALSE(model_config::from_json(c.to_json(), "again").quantization);
}

TEST(resolve_quantization, fp8_on_an_unquantized_checkpoint_quantizes_at_load_per_channel_with_dynamic_activations) {
  const auto q = resolve_quantization(std::nullopt, "fp8", "m");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->method, quant_method::fp8);
  EXPECT_TRUE(q->fp8_channel_scales && q->made_at_load());
  EXPECT_FALSE(q->fp8_serialized || q->fp8_static_input);
  const auto fp8 = quantization_config::from_json(hub_fp8, "c");
  EXPECT_TRUE(resolve_quantization(fp8, "fp8", "m")->fp8_serialized);
  const auto ct = quantization_config::from_json(hub_compressed_tensors, "c");
  EXPECT_EQ(resolve_quantization(ct, "compressed-tensors", "m")->method, quant_method::compressed_tensors);
  EXPECT_EQ(resolve_error(ct, "fp8"),
            "Quantization method specified in the model config (compressed-tensors) does not match the quantization "
            "method specified in the `quantization` argument (fp8); the checkpoint is already quantized with "
            "compressed-tensors: drop --quantization or give --quantization compressed-tensors");
  EXPECT_EQ(resolve_error(std::nullopt, "compressed-tensors", "m"),
            "Cannot find the config file for compressed-tensors: --quantization compressed-tensors needs a checkpoint "
            "quantized with llm-compressor, and m has no quantization_config in config.json; for FP8 weights made at "
            "load, use --quantization fp8");
}
