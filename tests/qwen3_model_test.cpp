// Qwen3ForCausalLM on the CPU: a random tiny checkpoint that `troupe make-model --arch qwen3` writes loads and
// generates, and its per-head q_norm / k_norm act on the logits. (The op itself, by hand: cpu_ops_test; the
// model against transformers: tests/data/reference/qwen3_*, made on the GPU machine by
// scripts/gpu/make_reference_models.py; split over ranks: tensor_parallel_test.)

#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

#include "actors/engine.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_steps.hpp"
#include "tests/support/run_command.hpp"

using namespace troupe;
namespace fs = std::filesystem;
using troupe::testing::make_step;
using troupe::testing::reference_limits;
using troupe::testing::relative_error;

namespace {

// head_dim 32 while hidden / heads is 16, as the real Qwen3 sizes differ from hidden / heads.
model_config tiny_qwen3() {
  return model_config::from_json(
      R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 96,
          "vocab_size": 128, "max_position_embeddings": 256, "tie_word_embeddings": true})",
      "test");
}

// The logits of one 6-token prompt's last position, with the weights `source` gives.
std::vector<float> last_logits(const model_config& c, const weight_source& source) {
  cpu_ops cpu;
  model m(c, cpu, load_model_weights(c, cpu, dtype::f32, source), dtype::f32, reference_limits(), {});
  std::vector<float> logits;
  m.forward(make_step({{{5, 9, 2, 7, 100, 31}, 0}}), logits);
  return logits;
}

// dummy_weight_source(7) with the tensors whose name ends in `suffix` multiplied by `factor`.
weight_source scaled(const std::string& suffix, float factor) {
  return [base = dummy_weight_source(7), suffix, factor](const weight_spec& spec, std::vector<float>& values) {
    base(spec, values);
    if (spec.name.ends_with(suffix))
      for (float& v : values) v *= factor;
  };
}

} // namespace

TEST(qwen3, make_model_writes_a_tiny_qwen3_that_the_engine_loads_and_generates_from) {
  const fs::path dir = fs::temp_directory_path() / ("troupe_qwen3_" + std::to_string(::getpid()));
  const auto made = troupe::testing::run_command(std::string(TROUPE_BINARY) + " make-model --arch qwen3 --out " +
                                                 dir.string() +
                                                 " --hidden-size 64 --num-heads 4 --num-kv-heads 2 --head-dim 32 "
                                                 "--num-layers 2 --intermediate-size 96 --dtype float32 </dev/null");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const model_config c = model_config::from_dir(dir);
  EXPECT_EQ(c.arch, architecture::qwen3);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias);
  {
    const checkpoint ckpt = checkpoint::open(dir);
    for (const char* norm : {"q_norm", "k_norm"}) {
      const tensor_info* t = ckpt.find(std::string("model.layers.1.self_attn.") + norm + ".weight");
      ASSERT_NE(t, nullptr) << norm;
      EXPECT_EQ(t->shape, std::vector<int64_t>{32}) << norm;
    }
  }
  engine_options o;
  o.model = dir.string();
  o.kv_cache_memory = 4 << 20;
  {
    engine e(o);
    sampling_params greedy;
    greedy.temperature = 0;
    greedy.max_tokens = 8;
    greedy.ignore_eos = true;
    const auto results = e.generate({{"", {1, 2, 3, 4, 5}}, {"Hello there", {}}}, greedy);
    for (const completion& r : results) {
      EXPECT_EQ(r.error, "");
      EXPECT_EQ(r.token_ids.size(), 8u);
      EXPECT_EQ(r.finish_reason, "length");
    }
    // Greedy decoding repeats itself.
    EXPECT_EQ(e.generate({{"", {1, 2, 3, 4, 5}}}, greedy)[0].token_ids, results[0].token_ids);
  }
  fs::remove_all(dir);
}

TEST(qwen3, the_q_and_k_norm_weights_change_the_logits) {
  const model_config c = tiny_qwen3();
  const std::vector<float> base = last_logits(c, dummy_weight_source(7));
  ASSERT_EQ(base.size(), 128u);
  // Scaling q's norm weights sharpens every attention pattern; scaling k's does too, through other products.
  EXPECT_GT(relative_error(last_logits(c, scaled("q_norm.weight", 3.0f)), base), 1e-3);
  EXPECT_GT(relative_error(last_logits(c, scaled("k_norm.weight", 3.0f)), base), 1e-3);
  // The same weights without the norms (a Llama-style attention) give other logits again.
  model_config without = c;
  without.qk_norm = false;
  EXPECT_GT(relative_error(last_logits(without, dummy_weight_source(7)), base), 1e-3);
  // The same weights give the same logits: the differences above are the norms'.
  EXPECT_EQ(last_logits(c, dummy_weight_source(7)), base);
}
