// The CPU forward against transformers: last-position logits and greedy continuations recorded by
// scripts/gpu/make_reference_models.py for tiny checkpoints of every supported architecture.

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_steps.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

struct reference {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> last_logits;
  std::vector<std::vector<int32_t>> greedy;
};

reference read_reference(const fs::path& dir) {
  std::ifstream in(dir / "reference.json");
  const auto j = nlohmann::json::parse(in);
  return {j.at("prompts").get<std::vector<std::vector<int32_t>>>(),
          j.at("last_logits").get<std::vector<std::vector<float>>>(),
          j.at("greedy").get<std::vector<std::vector<int32_t>>>()};
}


int32_t argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

using troupe::testing::make_step;
using troupe::testing::relative_error;

class reference_model : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    dir_ = fs::path(TROUPE_TEST_DATA) / "reference" / GetParam();
    config_ = model_config::from_dir(dir_);
    ckpt_ = std::make_unique<checkpoint>(checkpoint::open(dir_));
    ref_ = read_reference(dir_);
    model_ = std::make_unique<model>(config_, ops_,
                                     load_model_weights(config_, ops_, dtype::f32, checkpoint_weight_source(*ckpt_, config_)),
                                     dtype::f32, troupe::testing::reference_limits());
  }

  fs::path dir_;
  model_config config_;
  std::unique_ptr<checkpoint> ckpt_;
  reference ref_;
  cpu_ops ops_;
  std::unique_ptr<model> model_;
};

} // namespace

TEST_P(reference_model, last_position_logits_match_transformers_within_1e_4) {
  std::vector<float> logits;
  for (size_t p = 0; p < ref_.prompts.size(); ++p) {
    model_->forward(make_step({{ref_.prompts[p], 0}}), logits);
    EXPECT_LT(relative_error(logits, ref_.last_logits[p]), 1e-4) << "prompt " << p;
  }
}

TEST_P(reference_model, greedy_continuations_equal_transformers) {
  std::vector<float> logits;
  for (size_t p = 0; p < ref_.prompts.size(); ++p) {
    const auto& prompt = ref_.prompts[p];
    model_->forward(make_step({{prompt, 0}}), logits);
    std::vector<int32_t> out{argmax(logits)};
    while (out.size() < ref_.greedy[p].size()) {
      model_->forward(make_step({{{out.back()}, static_cast<int32_t>(prompt.size() + out.size() - 1)}}), logits);
      out.push_back(argmax(logits));
    }
    EXPECT_EQ(out, ref_.greedy[p]) << "prompt " << p;
  }
}

TEST_P(reference_model, chunked_prefill_gives_the_same_logits_as_one_pass) {
  const auto& prompt = ref_.prompts.back();
  std::vector<float> logits;
  for (size_t begin = 0; begin < prompt.size(); begin += 23) {
    const size_t end = std::min(prompt.size(), begin + 23);
    model_->forward(make_step({{std::vector<int32_t>(prompt.begin() + begin, prompt.begin() + end), int32_t(begin)}}), logits);
  }
  EXPECT_LT(relative_error(logits, ref_.last_logits.back()), 1e-4);
}

TEST_P(reference_model, a_batch_of_all_prompts_gives_each_prompts_logits) {
  std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
  for (const auto& p : ref_.prompts) seqs.push_back({p, 0});
  std::vector<float> logits;
  model_->forward(make_step(seqs), logits);
  const size_t vocab = static_cast<size_t>(config_.vocab_size);
  for (size_t p = 0; p < ref_.prompts.size(); ++p)
    EXPECT_LT(relative_error(std::span<const float>(logits).subspan(p * vocab, vocab), ref_.last_logits[p]), 1e-4)
        << "prompt " << p;
}

INSTANTIATE_TEST_SUITE_P(checkpoints, reference_model,
                         ::testing::Values("llama_f32", "llama3_rope_bf16", "qwen2_sharded_bf16", "mistral_head_dim",
                                           "qwen3_f32", "qwen3_bias_bf16"));

TEST(checkpoint_weights, a_tensor_the_config_does_not_use_is_refused_by_name) {
  // The llama3 checkpoint has q/k/v/o biases; with attention_bias dropped from its config they are unused.
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / "llama3_rope_bf16";
  model_config config = model_config::from_dir(dir);
  config.qkv_bias = config.o_bias = false;
  const checkpoint ckpt = checkpoint::open(dir);
  try {
    checkpoint_weight_source(ckpt, config);
    FAIL() << "no error";
  } catch (const checkpoint_error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "model.safetensors").string() +
                                         ": tensor 'model.layers.0.self_attn.k_proj.bias' is not used by a "
                                         "LlamaForCausalLM with this config.json; the config and the weights disagree");
  }
}
