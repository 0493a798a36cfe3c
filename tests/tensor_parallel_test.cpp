// The tensor-parallel forward on the CPU: a model split over N ranks (threads of this process, joined by
// the thread communicator) computes what the whole model computes — the same greedy tokens, logits within
// float rounding — on every reference checkpoint and size its heads allow, with KV heads split and replicated.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "tests/support/reference_steps.hpp"

using namespace troupe;
namespace fs = std::filesystem;
using troupe::testing::make_step;

namespace {

model_limits reference_limits() {
  model_limits limits;
  limits.max_num_tokens = troupe::testing::reference_max_len * 4;
  limits.max_num_seqs = 8;
  limits.max_model_len = troupe::testing::reference_max_len;
  limits.block_size = troupe::testing::reference_block_size;
  limits.num_blocks = 8 * troupe::testing::reference_max_len / troupe::testing::reference_block_size;
  return limits;
}

// A model split over `tp` ranks, each a cpu backend driven by a thread of its own for every step.
// With no checkpoint, the weights are dummy_weight_source(seed)'s, each rank making only its slices.
class split_model {
public:
  split_model(const model_config& config, int tp, const checkpoint* ckpt, uint64_t seed = 7)
      : comms_(tp > 1 ? make_thread_communicators(tp) : std::vector<std::unique_ptr<communicator>>{}),
        backends_(static_cast<size_t>(tp)) {
    for (int r = 0; r < tp; ++r) plans_.push_back(sharding_plan::make(config, tp, r));
    for (int r = 0; r < tp; ++r) {
      const sharding_plan& plan = plans_[static_cast<size_t>(r)];
      const model_config local = tp > 1 ? local_config(config, plan) : config;
      const weight_source source = ckpt ? (tp > 1 ? sharded_weight_source(*ckpt, config, plan)
                                                  : checkpoint_weight_source(*ckpt, config))
                                        : (tp > 1 ? sharded_dummy_weight_source(seed, plan) : dummy_weight_source(seed));
      shard_context where;
      if (tp > 1) where = {comms_[static_cast<size_t>(r)].get(), plan.vocab_begin, config.vocab_size};
      ops& b = backends_[static_cast<size_t>(r)];
      models_.push_back(std::make_unique<model>(local, b, load_model_weights(local, b, dtype::f32, source), dtype::f32,
                                                reference_limits(), where));
    }
  }

  // Runs one step on every rank at once; returns each rank's logits.
  std::vector<std::vector<float>> forward(const step_input& in) {
    std::vector<std::vector<float>> logits(models_.size());
    std::vector<std::thread> threads;
    for (size_t r = 0; r < models_.size(); ++r) threads.emplace_back([&, r] { models_[r]->forward(in, logits[r]); });
    for (auto& t : threads) t.join();
    return logits;
  }

  // Greedy tokens from every rank at once (forward_greedy: the argmax on the backend).
  std::vector<std::vector<int32_t>> forward_greedy(const step_input& in) {
    std::vector<std::vector<int32_t>> tokens(models_.size());
    std::vector<std::thread> threads;
    for (size_t r = 0; r < models_.size(); ++r)
      threads.emplace_back([&, r] { models_[r]->forward_greedy(in, tokens[r]); });
    for (auto& t : threads) t.join();
    return tokens;
  }

  const sharding_plan& plan(int r) const { return plans_[static_cast<size_t>(r)]; }

private:
  std::vector<std::unique_ptr<communicator>> comms_;
  std::vector<cpu_ops> backends_;
  std::vector<sharding_plan> plans_;
  std::vector<std::unique_ptr<model>> models_;
};

double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

// Greedy continuations of `prompts`, all decoded together in one batch, `steps` tokens each, taken from
// rank 0 after checking every rank agrees.
std::vector<std::vector<int32_t>> greedy(split_model& m, const std::vector<std::vector<int32_t>>& prompts, int steps) {
  std::vector<std::vector<int32_t>> out(prompts.size());
  std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
  for (const auto& p : prompts) seqs.push_back({p, 0});
  for (int s = 0; s < steps; ++s) {
    const auto tokens = m.forward_greedy(make_step(seqs));
    for (size_t r = 1; r < tokens.size(); ++r) EXPECT_EQ(tokens[r], tokens[0]) << "rank " << r << " step " << s;
    for (size_t i = 0; i < prompts.size(); ++i) {
      out[i].push_back(tokens[0][i]);
      seqs[i] = {{tokens[0][i]}, static_cast<int32_t>(prompts[i].size()) + s};
    }
  }
  return out;
}

std::vector<std::vector<int32_t>> some_prompts(int64_t vocab) {
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < 3; ++p) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 5 + 11 * p; ++i) tokens.push_back(static_cast<int32_t>((37 * i + 101 * p + 3) % vocab));
    prompts.push_back(tokens);
  }
  return prompts;
}

struct case_name {
  std::string checkpoint;
  int tp;
};

class split_reference_model : public ::testing::TestWithParam<case_name> {};

} // namespace

TEST_P(split_reference_model, gives_the_whole_models_greedy_tokens_and_logits) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / GetParam().checkpoint;
  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  split_model whole(config, 1, &ckpt), split(config, GetParam().tp, &ckpt);

  const auto prompts = some_prompts(config.vocab_size);
  std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
  for (const auto& p : prompts) seqs.push_back({p, 0});
  const auto expected = whole.forward(make_step(seqs))[0];
  const auto got = split.forward(make_step(seqs));
  for (size_t r = 0; r < got.size(); ++r) {
    ASSERT_EQ(got[r].size(), expected.size()) << "rank " << r;
    EXPECT_LT(relative_error(got[r], expected), 1e-5) << "rank " << r;
    EXPECT_EQ(got[r], got[0]) << "rank " << r << " differs from rank 0";
  }

  split_model whole_again(config, 1, &ckpt), split_again(config, GetParam().tp, &ckpt);
  EXPECT_EQ(greedy(split_again, prompts, 12), greedy(whole_again, prompts, 12));
}

// llama3_rope_bf16 has one KV head (replicated at 2 and 4) and q/k/v/o biases; llama_f32 and
// mistral_head_dim two KV heads (split at 2, replicated at 4); qwen2 ties its embeddings.
INSTANTIATE_TEST_SUITE_P(checkpoints, split_reference_model,
                         ::testing::Values(case_name{"llama_f32", 2}, case_name{"llama_f32", 4},
                                           case_name{"llama3_rope_bf16", 2}, case_name{"llama3_rope_bf16", 4},
                                           case_name{"qwen2_sharded_bf16", 2}, case_name{"qwen2_sharded_bf16", 4},
                                           case_name{"mistral_head_dim", 2}, case_name{"mistral_head_dim", 4}),
                         [](const auto& info) { return info.param.checkpoint + "_tp" + std::to_string(info.param.tp); });

TEST(split_model, a_vocabulary_that_needs_padding_rows_gives_the_whole_models_tokens) {
  // 6 heads over 3 ranks: the 400-token vocabulary pads to a multiple of lcm(64, 3) = 192, 576 rows, so
  // rank 2 holds 16 real rows and 176 padding rows whose logits must never be sampled.
  model_config config = model_config::from_json(
      R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 48, "num_hidden_layers": 2,
          "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 72, "vocab_size": 400,
          "max_position_embeddings": 256, "tie_word_embeddings": false})",
      "test");
  split_model whole(config, 1, nullptr), split(config, 3, nullptr);
  EXPECT_EQ(split.plan(2).vocab_end - split.plan(2).vocab_begin, 192);
  EXPECT_EQ(split.plan(2).padded_vocab_size, 576);
  const auto prompts = some_prompts(config.vocab_size);
  std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
  for (const auto& p : prompts) seqs.push_back({p, 0});
  const auto expected = whole.forward(make_step(seqs))[0];
  const auto got = split.forward(make_step(seqs));
  ASSERT_EQ(got[2].size(), expected.size());
  EXPECT_LT(relative_error(got[2], expected), 1e-5);

  split_model whole_again(config, 1, nullptr), split_again(config, 3, nullptr);
  EXPECT_EQ(greedy(split_again, prompts, 10), greedy(whole_again, prompts, 10));
}

TEST(split_model, a_step_that_samples_no_row_runs_on_every_rank) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / "llama_f32";
  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  split_model split(config, 2, &ckpt);
  step_input chunk = make_step({{{1, 2, 3, 4}, 0}});
  chunk.logits_indices.clear();
  for (const auto& logits : split.forward(chunk)) EXPECT_TRUE(logits.empty());
}
