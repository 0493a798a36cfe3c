// The tensor-parallel forward on the CPU: a model split over N ranks (threads of this process, joined by
// the thread communicator) computes what the whole model computes — the same greedy tokens, logits within
// float rounding — on every reference checkpoint and size its heads allow, with KV heads split and replicated.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "tests/support/scoped_value.hpp"
#include "tests/support/quantized_copy.hpp"
#include "tests/support/reference_steps.hpp"
#include "tests/support/split_model.hpp"

using namespace troupe;
namespace fs = std::filesystem;
using troupe::testing::first_difference;
using troupe::testing::greedy_tokens;
using troupe::testing::make_step;
using troupe::testing::relative_error;
using troupe::testing::reference_limits;
using troupe::testing::split_model;

namespace {

// The whole model (tp 1) or the model split over `tp` CPU ranks joined by the thread communicator. With no
// checkpoint, the weights are dummy_weight_source(7)'s, each rank making only its slices.
// With `packed_4_bit`, a quantized config's linear weights stay in 4 bits (linear_int4), as on a GPU.
split_model on_cpus(const model_config& config, int tp, const checkpoint* ckpt,
                    const model_limits& limits = reference_limits(), bool packed_4_bit = false) {
  std::vector<std::unique_ptr<ops>> backends;
  for (int r = 0; r < tp; ++r) backends.push_back(std::make_unique<cpu_ops>());
  return split_model(config, std::move(backends),
                     tp > 1 ? make_thread_communicators(tp) : std::vector<std::unique_ptr<communicator>>{}, ckpt, 7,
                     dtype::f32, limits, packed_4_bit);
}


// Greedy continuations of `prompts`, all decoded together in one batch, `steps` tokens each, taken from
// rank 0 after checking every rank agrees.
std::vector<std::vector<int32_t>> greedy(split_model& m, const std::vector<std::vector<int32_t>>& prompts, int steps) {
  const auto tokens = greedy_tokens(m, prompts, steps);
  for (size_t r = 1; r < tokens.size(); ++r)
    EXPECT_EQ(first_difference(tokens[r], tokens[0]), "") << "rank " << r << " against rank 0";
  return tokens[0];
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

// The model split over `tp` CPU ranks gives the whole model's logits on every rank (all ranks alike) for
// some prompts, and its greedy tokens over 12 steps.
void expect_split_gives_the_whole_models_output(const model_config& config, int tp, const checkpoint* ckpt) {
  split_model whole = on_cpus(config, 1, ckpt), split = on_cpus(config, tp, ckpt);
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
  split_model whole_again = on_cpus(config, 1, ckpt), split_again = on_cpus(config, tp, ckpt);
  EXPECT_EQ(greedy(split_again, prompts, 12), greedy(whole_again, prompts, 12));
}

struct case_name {
  std::string checkpoint;
  int tp;
};

class split_reference_model : public ::testing::TestWithParam<case_name> {};

} // namespace

TEST_P(split_reference_model, gives_the_whole_models_greedy_tokens_and_logits) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / GetParam().checkpoint;
  const checkpoint ckpt = checkpoint::open(dir);
  expect_split_gives_the_whole_models_output(model_config::from_dir(dir), GetParam().tp, &ckpt);
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
  split_model whole = on_cpus(config, 1, nullptr), split = on_cpus(config, 3, nullptr);
  EXPECT_EQ(split.plan(2).vocab_end - split.plan(2).vocab_begin, 192);
  EXPECT_EQ(split.plan(2).padded_vocab_size, 576);
  const auto prompts = some_prompts(config.vocab_size);
  std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
  for (const auto& p : prompts) seqs.push_back({p, 0});
  const auto expected = whole.forward(make_step(seqs))[0];
  const auto got = split.forward(make_step(seqs));
  ASSERT_EQ(got[2].size(), expected.size());
  EXPECT_LT(relative_error(got[2], expected), 1e-5);

  split_model whole_again = on_cpus(config, 1, nullptr), split_again = on_cpus(config, 3, nullptr);
  EXPECT_EQ(greedy(split_again, prompts, 10), greedy(whole_again, prompts, 10));
}

TEST(split_model, a_qwen3_split_over_two_ranks_gives_the_whole_models_tokens_with_its_norms_on_every_rank) {
  // head_dim 32 while hidden / heads is 16; 4 q heads and 2 KV heads split 2 ways; q_norm and k_norm whole.
  model_config config = model_config::from_json(
      R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 96,
          "vocab_size": 300, "max_position_embeddings": 256, "tie_word_embeddings": true})",
      "test");
  ASSERT_TRUE(config.qk_norm);
  expect_split_gives_the_whole_models_output(config, 2, nullptr);
}

// Issue 17's split on the CPU: 8 query heads over 8 ranks, one each, with 2 KV heads each replicated on 4
// ranks; the 192 intermediate columns 24 a rank; the 500-token vocabulary padded to 8 slices of 64 rows.
TEST(split_model, eight_ranks_with_replicated_kv_heads_give_the_whole_models_logits_and_tokens) {
  model_config config = model_config::from_json(
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 192, "vocab_size": 500,
          "max_position_embeddings": 256, "tie_word_embeddings": false})",
      "test");
  expect_split_gives_the_whole_models_output(config, 8, nullptr);
}

TEST(split_model, a_step_that_samples_no_row_runs_on_every_rank) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / "llama_f32";
  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  split_model split = on_cpus(config, 2, &ckpt);
  step_input chunk = make_step({{{1, 2, 3, 4}, 0}});
  chunk.logits_indices.clear();
  for (const auto& logits : split.forward(chunk)) EXPECT_TRUE(logits.empty());
}

// The CPU twin of the GPU check's NCCL of size 1 (tools/gpu_check_tp.cpp): one rank on the sharded path (a
// plan of size 1, local_config, a communicator of one) is the whole model.
TEST(split_model, one_rank_on_the_sharded_path_gives_the_whole_models_tokens) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / "mistral_head_dim";
  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  std::vector<std::unique_ptr<ops>> one;
  one.push_back(std::make_unique<cpu_ops>());
  split_model sharded(config, std::move(one), make_thread_communicators(1), &ckpt, 7, dtype::f32, reference_limits());
  EXPECT_EQ(sharded.plan(0).tp_size, 1);
  split_model whole = on_cpus(config, 1, &ckpt);
  const auto prompts = some_prompts(config.vocab_size);
  EXPECT_EQ(greedy(sharded, prompts, 12), greedy(whole, prompts, 12));
}

// Prompts that overflow one step's token budget prefill over several steps, each sequence in its own
// blocks, and then decode together: the tokens of the one-step prefill (the GPU check's timings prefill
// 256 sequences so).
TEST(split_model, prompts_over_one_steps_budget_prefill_in_chunks_to_the_same_tokens) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / "llama_f32";
  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < 5; ++p) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 40 + 7 * p; ++i) tokens.push_back(static_cast<int32_t>((29 * i + 53 * p + 1) % config.vocab_size));
    prompts.push_back(tokens);
  }
  model_limits small = reference_limits();
  small.max_num_tokens = 100;  // the prompts of 40 and 47 tokens in one step, the others one a step
  for (const int tp : {1, 2}) {
    split_model chunked = on_cpus(config, tp, &ckpt, small), at_once = on_cpus(config, tp, &ckpt);
    int decode_steps = 0;
    const auto got = greedy_tokens(chunked, prompts, 6, [&](int step, const std::function<void()>& run) {
      EXPECT_EQ(step, decode_steps + 1);
      ++decode_steps;
      run();
    });
    EXPECT_EQ(decode_steps, 5);
    const auto want = greedy_tokens(at_once, prompts, 6);
    for (size_t r = 0; r < got.size(); ++r) EXPECT_EQ(first_difference(got[r], want[r]), "") << "tp " << tp << " rank " << r;
  }
}

TEST(split_model, first_difference_names_the_prompt_and_step) {
  EXPECT_EQ(first_difference({{1, 2}, {3, 4}}, {{1, 2}, {3, 4}}), "");
  EXPECT_EQ(first_difference({{1, 2}, {3, 5}}, {{1, 2}, {3, 4}}), "prompt 1 step 1: 5 instead of 4");
  EXPECT_EQ(first_difference({{1}}, {{1, 2}}), "prompt 0 step 1: no token");
}

// A split model keeps its 4-bit weights packed, as a GPU does, each rank loading only its slices: the logits of
// the same split with those weights dequantized, bit for bit, and the whole model's greedy tokens. Group -1 (one
// group per row) splits these checkpoints' 96 intermediate columns; row-parallel ranks share its scales. rtn's
// groups of 64 are cut to 16 inputs per rank at 4 ranks.
TEST(split_model, keeps_4_bit_weights_packed_with_its_dequantized_splits_logits_and_the_whole_models_tokens) {
  // The 4-bit products as W4A16, whatever the step.
  const troupe::testing::scoped_value<int64_t> w4a16(int4_fp8_rows(), 0);
  quantization_config awq, gptq, rtn;
  awq.group_size = gptq.group_size = -1;
  gptq.method = quant_method::gptq;
  gptq.symmetric = true;
  rtn.method = quant_method::rtn;
  const fs::path reference = fs::path(TROUPE_TEST_DATA) / "reference";
  for (const auto& [name, q] : {std::pair{"llama_f32", awq}, std::pair{"mistral_head_dim", gptq},
                                std::pair{"llama3_rope_bf16", rtn}}) {
    SCOPED_TRACE(std::string(name) + " " + std::string(troupe::name(q.method)));
    troupe::testing::temp_folder packed("tp_packed");
    fs::path dir = reference / name;
    if (q.method != quant_method::rtn) {
      troupe::testing::write_quantized_copy(dir, packed.path(), q, true);
      dir = packed.path();
    }
    model_config config = model_config::from_dir(dir);
    config.quantization = q;
    const checkpoint ckpt = checkpoint::open(dir);
    const auto prompts = some_prompts(config.vocab_size);
    std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
    for (const auto& p : prompts) seqs.push_back({p, 0});
    for (int tp : {2, 4}) {
      SCOPED_TRACE("tp " + std::to_string(tp));
      split_model kept = on_cpus(config, tp, &ckpt, reference_limits(), true), dequantized = on_cpus(config, tp, &ckpt);
      EXPECT_EQ(kept.forward(make_step(seqs)), dequantized.forward(make_step(seqs)));
      split_model kept_again = on_cpus(config, tp, &ckpt, reference_limits(), true), whole = on_cpus(config, 1, &ckpt);
      EXPECT_EQ(greedy(kept_again, prompts, 12), greedy(whole, prompts, 12));
    }
  }
}
