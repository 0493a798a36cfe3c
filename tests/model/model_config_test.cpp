#include <gtest/gtest.h>

#include "runtime/error.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/model/rope_table.hpp"
#include "runtime/model/weight_names.hpp"

using namespace troupe;

namespace {

std::string error_of(const std::string& json) {
  try {
    model_config::from_json(json, "config.json");
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

const char* qwen2_json = R"({
  "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 300,
  "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "eos_token_id": 7
})";

} // namespace

TEST(model_config, reads_a_qwen2_config_with_implicit_bias_and_head_dim) {
  const auto c = model_config::from_json(qwen2_json, "config.json");
  EXPECT_EQ(c.arch, architecture::qwen2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{7});
}

TEST(model_config, reads_a_qwen3_config_with_q_and_k_norms_an_explicit_head_dim_and_no_bias_by_default) {
  // Qwen3-0.6B's shape, smaller: head_dim 128 while hidden / heads is 64.
  const char* qwen3 = R"({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
    "num_hidden_layers": 2, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
    "intermediate_size": 3072, "vocab_size": 151936, "rope_theta": 1000000, "attention_bias": false,
    "use_sliding_window": false, "sliding_window": null, "tie_word_embeddings": true, "rms_norm_eps": 1e-06})";
  const auto c = model_config::from_json(qwen3, "config.json");
  EXPECT_EQ(c.arch, architecture::qwen3);
  EXPECT_EQ(c.architecture_name, "Qwen3ForCausalLM");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_size(), 2048);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.sliding_window.has_value());
  // attention_bias gives q/k/v and o_proj biases, as Qwen3Attention's; a sliding window is refused.
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string j = qwen3;
    return j.replace(j.find(from), from.size(), to);
  };
  const auto biased = model_config::from_json(with("\"attention_bias\": false", "\"attention_bias\": true"), "config.json");
  EXPECT_TRUE(biased.qkv_bias && biased.o_bias);
  EXPECT_EQ(error_of(with("\"use_sliding_window\": false", "\"use_sliding_window\": true")),
            "config.json: 'use_sliding_window': true is not supported for Qwen3ForCausalLM");
  // Written back by make-model, the config reads as the same model.
  const auto again = model_config::from_json(c.to_json(), "again");
  EXPECT_EQ(again.arch, architecture::qwen3);
  EXPECT_TRUE(again.qk_norm);
  EXPECT_EQ(again.head_dim, 128);
  // The norms are checkpoint tensors of head_dim, after o_proj, as transformers saves them.
  std::vector<std::string> attention;
  for (const weight_spec& s : hf_weight_specs(c))
    if (s.name.starts_with("model.layers.0.self_attn.")) attention.push_back(s.name.substr(25) + "[" + std::to_string(s.shape[0]) + "]");
  EXPECT_EQ(attention, (std::vector<std::string>{"q_proj.weight[2048]", "k_proj.weight[1024]", "v_proj.weight[1024]",
                                                 "o_proj.weight[1024]", "q_norm.weight[128]", "k_norm.weight[128]"}));
}

TEST(model_config, explicit_head_dim_overrides_hidden_over_heads) {
  const auto c = model_config::from_json(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "head_dim": 32, "intermediate_size": 8, "vocab_size": 10})", "c");
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.q_size(), 128);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.num_kv_heads, 4);
}

TEST(model_config, reads_llama3_rope_from_rope_scaling_and_from_rope_parameters) {
  const auto old_style = model_config::from_json(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}})", "c");
  const auto new_style = model_config::from_json(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})", "c");
  for (const auto& c : {old_style, new_style}) {
    EXPECT_EQ(c.rope.type, rope_config::kind::llama3);
    EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
    EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
    EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  }
  EXPECT_EQ(rope_inverse_frequencies(old_style), rope_inverse_frequencies(new_style));
}

TEST(model_config, linear_rope_divides_every_frequency_by_the_factor) {
  auto c = model_config::from_json(R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10,
    "rope_scaling": {"type": "linear", "factor": 4.0}, "sliding_window": 4096})", "c");
  EXPECT_EQ(c.sliding_window, 4096);
  const auto scaled = rope_inverse_frequencies(c);
  c.rope.type = rope_config::kind::default_;
  const auto plain = rope_inverse_frequencies(c);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], plain[i] / 4.0f);
}

TEST(model_config, llama3_rope_keeps_high_frequencies_and_slows_low_ones) {
  auto c = model_config::from_json(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 256,
    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 10, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}})", "c");
  const auto scaled = rope_inverse_frequencies(c);
  c.rope.type = rope_config::kind::default_;
  const auto plain = rope_inverse_frequencies(c);
  EXPECT_FLOAT_EQ(scaled.front(), plain.front());
  EXPECT_FLOAT_EQ(scaled.back(), plain.back() / 8.0f);
}

TEST(model_config, refuses_unknown_architectures_by_name) {
  EXPECT_EQ(error_of(R"({"architectures": ["GPT2LMHeadModel"]})"),
            "config.json: architecture 'GPT2LMHeadModel' is not supported; supported: LlamaForCausalLM, "
            "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM");
}

TEST(model_config, refuses_unsupported_settings_by_name) {
  const std::string base = R"("architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10)";
  EXPECT_EQ(error_of("{" + base + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})"),
            "config.json: rope type 'yarn' is not supported; supported: default, linear, llama3");
  EXPECT_EQ(error_of("{" + base + R"(, "hidden_act": "gelu"})"), "config.json: hidden_act 'gelu' is not supported (only silu)");
  EXPECT_EQ(error_of("{" + base + R"(, "num_key_value_heads": 3})"),
            "config.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3");
  EXPECT_EQ(error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})"),
            "config.json: missing 'num_hidden_layers'");
  EXPECT_EQ(error_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": -3})"),
            "config.json: 'hidden_size' must be a positive integer, got -3");
  EXPECT_EQ(error_of("not json"), "config.json: not a JSON object");
}

TEST(model_config, round_trips_through_to_json) {
  const auto c = model_config::from_json(qwen2_json, "config.json");
  const auto back = model_config::from_json(c.to_json(), "x");
  EXPECT_EQ(back.arch, c.arch);
  EXPECT_EQ(back.head_dim, c.head_dim);
  EXPECT_EQ(back.num_parameters(), c.num_parameters());
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
}

TEST(model_config, max_model_len_beyond_the_models_positions_is_refused_with_vllms_message_unless_allowed) {
  model_config c;
  c.max_position_embeddings = 4096;
  EXPECT_EQ(resolve_max_model_len(c, 0, false).value, 4096);
  EXPECT_EQ(resolve_max_model_len(c, 1024, false).value, 1024);
  EXPECT_EQ(resolve_max_model_len(c, 4096, false).warning, "");
  try {
    resolve_max_model_len(c, 32768, false);
    FAIL();
  } catch (const user_error& e) {
    EXPECT_STREQ(e.what(),
                 "User-specified max_model_len (32768) is greater than the derived max_model_len "
                 "(max_position_embeddings=4096 in model's config.json). To allow overriding this maximum, set the env "
                 "var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. Positions beyond the derived length give the model rotary angles "
                 "it was never trained on: expect worse output there.");
  }
  const max_model_len_choice allowed = resolve_max_model_len(c, 32768, true);
  EXPECT_EQ(allowed.value, 32768);
  EXPECT_TRUE(allowed.warning.starts_with("User-specified max_model_len (32768) is greater")) << allowed.warning;
}

TEST(model_config, a_linear_rope_scaling_stretches_the_derived_length_and_llama3_keeps_it) {
  model_config c;
  c.max_position_embeddings = 4096;
  c.rope.type = rope_config::kind::linear;
  c.rope.factor = 4.0;
  EXPECT_EQ(derived_max_model_len(c), 16384);
  EXPECT_EQ(resolve_max_model_len(c, 16384, false).value, 16384);
  c.rope.type = rope_config::kind::llama3;
  c.rope.factor = 8.0;
  EXPECT_EQ(derived_max_model_len(c), 4096);
}
