// The Llama-3.1-70B and -405B shape folders scripts/gpu/tp.sh serves with dummy weights on 2, 4 and 8 GPUs
// (issues 16 and 17): their config.json reads as the real models', splits 2, 4 and 8 ways with the per-shard
// shapes below, and fits an H200 (but not an H100) exactly where tp.sh runs it. No weights are made: 140 GB
// and 810 GB are the GPU machines' to hold.

#include <gtest/gtest.h>

#include <string>

#include "runtime/error.hpp"
#include "runtime/model/memory_plan.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/model/sharding_plan.hpp"

using namespace troupe;

namespace {

model_config shape_folder(const std::string& name) {
  return model_config::from_dir(std::string(TROUPE_TEST_DATA) + "/../../scripts/gpu/" + name);
}

constexpr int64_t MiB = int64_t{1} << 20;
constexpr int64_t h200_memory = 143771 * MiB;  // what nvidia-smi reports for an H200
constexpr int64_t h100_memory = 81559 * MiB;

// Bytes of one rank's bf16 weights, as the engine checks them before loading (num_parameters of its local config).
int64_t bf16_bytes_per_rank(const model_config& c, int64_t tp) {
  return local_config(c, sharding_plan::make(c, tp, tp - 1)).num_parameters() * 2;
}

bool fits(int64_t weight_bytes, int64_t memory) {
  try {
    check_weights_fit(weight_bytes, "bfloat16", memory, memory, 0.9);
    return true;
  } catch (const user_error&) {
    return false;
  }
}

} // namespace

TEST(llama_3_1_shape_configs, the_70b_folder_reads_as_llama_3_1_70b) {
  const model_config c = shape_folder("llama-3.1-70b-shape");
  EXPECT_EQ(c.arch, architecture::llama);
  EXPECT_EQ(c.hidden_size, 8192);
  EXPECT_EQ(c.num_layers, 80);
  EXPECT_EQ(c.num_heads, 64);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate_size, 28672);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.rope.type, rope_config::kind::llama3);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.num_parameters(), 70553706496);  // Meta's 70.55B
  EXPECT_EQ(derived_max_model_len(c), 131072);
}

TEST(llama_3_1_shape_configs, the_405b_folder_reads_as_llama_3_1_405b) {
  const model_config c = shape_folder("llama-3.1-405b-shape");
  EXPECT_EQ(c.hidden_size, 16384);
  EXPECT_EQ(c.num_layers, 126);
  EXPECT_EQ(c.num_heads, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate_size, 53248);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.rope.type, rope_config::kind::llama3);
  EXPECT_EQ(c.num_parameters(), 405853388800);  // Meta's 405.85B
}

TEST(llama_3_1_shape_configs, the_70b_splits_two_four_and_eight_ways_with_these_shards) {
  const model_config c = shape_folder("llama-3.1-70b-shape");
  EXPECT_EQ(valid_tensor_parallel_sizes(c), (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64}));
  for (const int64_t tp : {2, 4, 8}) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    const sharding_plan p = sharding_plan::make(c, tp, tp - 1);
    EXPECT_EQ(p.num_local_heads, 64 / tp);
    EXPECT_EQ(p.num_local_kv_heads, 8 / tp);
    EXPECT_EQ(p.num_kv_head_replicas, 1);
    EXPECT_EQ(p.local_intermediate, 28672 / tp);
    EXPECT_EQ(p.padded_vocab_size, 128256);
    EXPECT_EQ(p.vocab_end - p.vocab_begin, 128256 / tp);
    EXPECT_EQ(p.slice("model.layers.79.self_attn.q_proj.weight").local_shape, (std::vector<int64_t>{8192 / tp, 8192}));
    EXPECT_EQ(p.slice("model.layers.79.self_attn.k_proj.weight").local_shape, (std::vector<int64_t>{1024 / tp, 8192}));
    EXPECT_EQ(p.slice("model.layers.79.self_attn.o_proj.weight").local_shape, (std::vector<int64_t>{8192, 8192 / tp}));
    EXPECT_EQ(p.slice("model.layers.79.mlp.gate_proj.weight").local_shape, (std::vector<int64_t>{28672 / tp, 8192}));
    EXPECT_EQ(p.slice("model.layers.79.mlp.down_proj.weight").local_shape, (std::vector<int64_t>{8192, 28672 / tp}));
    EXPECT_EQ(p.slice("lm_head.weight").local_shape, (std::vector<int64_t>{128256 / tp, 8192}));
    // The embedding's all-reduce, o_proj's and down_proj's in each layer, the LM head's gather.
    EXPECT_EQ(p.collectives.size(), 1 + 2u * 80 + 1);
  }
  EXPECT_EQ(bf16_bytes_per_rank(c, 2), 70555025408);  // 65.71 GiB: a TPOT floor of 16.8 ms at 4.14 TB/s
  EXPECT_EQ(bf16_bytes_per_rank(c, 4), 35278831616);
  EXPECT_EQ(bf16_bytes_per_rank(c, 8), 17640734720);
  // A KV block (16 tokens, bf16, every layer, K and V) of one rank.
  EXPECT_EQ(kv_block_bytes(80, 16, sharding_plan::make(c, 8, 0).num_local_kv_heads, 128, 2), 655360);
}

TEST(llama_3_1_shape_configs, the_405b_splits_eight_ways_and_replicates_kv_heads_beyond) {
  const model_config c = shape_folder("llama-3.1-405b-shape");
  const sharding_plan p = sharding_plan::make(c, 8, 7);
  EXPECT_EQ(p.num_local_heads, 16);
  EXPECT_EQ(p.num_local_kv_heads, 1);
  EXPECT_EQ(p.first_kv_head, 7);
  EXPECT_EQ(p.local_intermediate, 6656);
  EXPECT_EQ(p.slice("model.layers.125.mlp.down_proj.weight").local_shape, (std::vector<int64_t>{16384, 6656}));
  EXPECT_EQ(p.slice("model.embed_tokens.weight").local_shape, (std::vector<int64_t>{16032, 16384}));
  EXPECT_EQ(bf16_bytes_per_rank(c, 8), 101470601216);  // 94.50 GiB: a TPOT floor of 24.4 ms at 4.14 TB/s
  EXPECT_EQ(sharding_plan::make(c, 16, 5).num_kv_head_replicas, 2);
}

TEST(llama_3_1_shape_configs, tp_sh_runs_each_where_the_weights_fit_an_h200_at_utilization_0_9) {
  const model_config b70 = shape_folder("llama-3.1-70b-shape"), b405 = shape_folder("llama-3.1-405b-shape");
  EXPECT_FALSE(fits(bf16_bytes_per_rank(b70, 1), h200_memory));
  EXPECT_TRUE(fits(bf16_bytes_per_rank(b70, 2), h200_memory));
  EXPECT_TRUE(fits(bf16_bytes_per_rank(b70, 2), h100_memory));  // with about 5 GiB left for the cache
  EXPECT_FALSE(fits(bf16_bytes_per_rank(b405, 4), h200_memory));
  EXPECT_TRUE(fits(bf16_bytes_per_rank(b405, 8), h200_memory));
  EXPECT_FALSE(fits(bf16_bytes_per_rank(b405, 8), h100_memory));  // 8 H100s cannot hold it: needs_h200
}
