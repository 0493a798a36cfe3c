// How a model is split over tensor-parallel ranks (runtime/model/sharding_plan): the slice of every
// checkpoint tensor each rank reads, its local counts, the collectives, and the refusal of shapes that
// cannot be split. Shapes follow real checkpoints; two layers keep the tensor lists short.

#include <gtest/gtest.h>

#include <functional>

#include "runtime/error.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/weight_names.hpp"

using namespace troupe;

namespace {

model_config shape(int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t hidden, int64_t inter,
                   int64_t vocab) {
  model_config c;
  c.arch = architecture::qwen2;
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.vocab_size = vocab;
  return c;
}

model_config qwen2_5_7b() {
  model_config c = shape(28, 4, 128, 3584, 18944, 152064);
  c.qkv_bias = true;
  return c;
}

model_config llama3_8b() {
  model_config c = shape(32, 8, 128, 4096, 14336, 128256);
  c.arch = architecture::llama;
  return c;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST(sharding_plan, splits_qwen2_5_7b_over_two_ranks_by_heads_and_intermediate) {
  const sharding_plan p = sharding_plan::make(qwen2_5_7b(), 2, 1);
  EXPECT_EQ(p.num_local_heads, 14);
  EXPECT_EQ(p.num_local_kv_heads, 2);
  EXPECT_EQ(p.first_kv_head, 2);
  EXPECT_EQ(p.num_kv_head_replicas, 1);
  EXPECT_EQ(p.local_intermediate, 9472);
  EXPECT_EQ(p.local_kv_size, 256);
  EXPECT_EQ(p.padded_vocab_size, 152064);
  EXPECT_EQ(p.vocab_begin, 76032);
  EXPECT_EQ(p.vocab_end, 152064);

  const weight_slice& q = p.slice("model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(q.dim, 0);
  EXPECT_EQ(q.begin, 1792);
  EXPECT_EQ(q.length, 1792);
  EXPECT_EQ(q.local_shape, (std::vector<int64_t>{1792, 3584}));
  const weight_slice& v = p.slice("model.layers.1.self_attn.v_proj.weight");
  EXPECT_EQ(v.begin, 256);
  EXPECT_EQ(v.length, 256);
  EXPECT_TRUE(v.split);
  const weight_slice& o = p.slice("model.layers.1.self_attn.o_proj.weight");
  EXPECT_EQ(o.dim, 1);
  EXPECT_EQ(o.begin, 1792);
  EXPECT_EQ(o.local_shape, (std::vector<int64_t>{3584, 1792}));
  const weight_slice& up = p.slice("model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(up.dim, 0);
  EXPECT_EQ(up.begin, 9472);
  EXPECT_EQ(up.length, 9472);
  const weight_slice& down = p.slice("model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(down.dim, 1);
  EXPECT_EQ(down.begin, 9472);
  EXPECT_EQ(down.local_shape, (std::vector<int64_t>{3584, 9472}));
  const weight_slice& head = p.slice("lm_head.weight");
  EXPECT_EQ(head.begin, 76032);
  EXPECT_EQ(head.length, 76032);
  const weight_slice& norm = p.slice("model.layers.0.input_layernorm.weight");
  EXPECT_FALSE(norm.split);
  EXPECT_EQ(norm.length, 3584);
}

TEST(sharding_plan, gives_each_of_four_qwen2_5_7b_ranks_one_kv_head) {
  const sharding_plan p = sharding_plan::make(qwen2_5_7b(), 4, 3);
  EXPECT_EQ(p.num_local_heads, 7);
  EXPECT_EQ(p.num_local_kv_heads, 1);
  EXPECT_EQ(p.first_kv_head, 3);
  EXPECT_EQ(p.num_kv_head_replicas, 1);
  EXPECT_EQ(p.local_intermediate, 4736);
  EXPECT_EQ(p.local_kv_size, 128);
  EXPECT_EQ(p.vocab_begin, 114048);
  EXPECT_EQ(p.vocab_end, 152064);
  EXPECT_EQ(p.slice("model.layers.0.self_attn.q_proj.weight").begin, 21 * 128);
  EXPECT_EQ(p.slice("model.layers.0.self_attn.k_proj.weight").begin, 384);
  EXPECT_EQ(p.slice("model.layers.0.self_attn.k_proj.bias").begin, 384);
}

TEST(sharding_plan, refuses_qwen2_5_7b_at_eight_because_28_heads_do_not_split_eight_ways) {
  EXPECT_EQ(message_of([] { sharding_plan::make(qwen2_5_7b(), 8, 0); }),
            "--tensor-parallel-size 8 does not divide the 28 attention heads of this model; 1, 2 or 4 would");
  EXPECT_EQ(message_of([] { sharding_plan::make(qwen2_5_7b(), 3, 0); }),
            "--tensor-parallel-size 3 does not divide the 28 attention heads of this model; 1, 2 or 4 would");
}

TEST(sharding_plan, replicates_kv_heads_when_ranks_outnumber_them_as_vllm_does) {
  // Llama-3-8B at 16: 8 KV heads, two ranks per KV head; rank r holds KV head r / 2.
  const sharding_plan p = sharding_plan::make(llama3_8b(), 16, 5);
  EXPECT_EQ(p.num_local_heads, 2);
  EXPECT_EQ(p.num_local_kv_heads, 1);
  EXPECT_EQ(p.num_kv_head_replicas, 2);
  EXPECT_EQ(p.first_kv_head, 2);
  EXPECT_EQ(p.local_kv_size, 128);
  const weight_slice& k = p.slice("model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(k.begin, 256);
  EXPECT_EQ(k.length, 128);
  EXPECT_FALSE(k.split);
  EXPECT_EQ(p.slice("model.layers.0.self_attn.q_proj.weight").begin, 10 * 128);

  // Four ranks over 2 KV heads: ranks 0 and 1 hold head 0, ranks 2 and 3 hold head 1.
  const model_config tiny = shape(4, 2, 8, 32, 16, 128);
  std::vector<int64_t> kv_heads;
  for (int64_t r = 0; r < 4; ++r) kv_heads.push_back(sharding_plan::make(tiny, 4, r).first_kv_head);
  EXPECT_EQ(kv_heads, (std::vector<int64_t>{0, 0, 1, 1}));
}

TEST(sharding_plan, names_the_kv_heads_and_the_intermediate_size_when_they_cannot_split) {
  EXPECT_EQ(message_of([] { sharding_plan::make(shape(12, 8, 8, 96, 64, 128), 3, 0); }),
            "--tensor-parallel-size 3 neither divides nor is a multiple of the 8 key-value heads of this model; "
            "1, 2 or 4 would");
  EXPECT_EQ(message_of([] { sharding_plan::make(shape(4, 4, 8, 32, 6, 128), 4, 0); }),
            "--tensor-parallel-size 4 does not divide the intermediate size 6 of this model; 1 or 2 would");
  EXPECT_EQ(message_of([] { sharding_plan::make(shape(4, 4, 8, 32, 8, 128), 0, 0); }),
            "--tensor-parallel-size must be at least 1, not 0");
}

TEST(sharding_plan, is_the_identity_at_one_rank) {
  for (const model_config& c : {qwen2_5_7b(), llama3_8b()}) {
    const sharding_plan p = sharding_plan::make(c, 1, 0);
    EXPECT_EQ(p.num_local_heads, c.num_heads);
    EXPECT_EQ(p.num_local_kv_heads, c.num_kv_heads);
    EXPECT_EQ(p.local_intermediate, c.intermediate_size);
    EXPECT_EQ(p.vocab_end, c.vocab_size);
    EXPECT_TRUE(p.collectives.empty());
    const std::vector<weight_spec> specs = hf_weight_specs(c);
    ASSERT_EQ(p.slices.size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      const weight_slice& s = p.slices[i];
      EXPECT_EQ(s.name, specs[i].name);
      EXPECT_EQ(s.local_shape, specs[i].shape) << s.name;
      EXPECT_EQ(s.begin, 0) << s.name;
      EXPECT_EQ(s.length, specs[i].shape[static_cast<size_t>(s.dim)]) << s.name;
      EXPECT_FALSE(s.split) << s.name;
      EXPECT_FALSE(s.add_on_rank_0_only) << s.name;
    }
  }
}

TEST(sharding_plan, pads_the_vocabulary_to_64_and_zero_fills_rows_past_the_checkpoint) {
  // 100 tokens pad to 128: rank 1 owns rows [64, 128) and reads the 36 that exist.
  const sharding_plan p = sharding_plan::make(shape(4, 2, 8, 32, 16, 100), 2, 1);
  EXPECT_EQ(p.padded_vocab_size, 128);
  EXPECT_EQ(p.vocab_begin, 64);
  EXPECT_EQ(p.vocab_end, 128);
  const weight_slice& e = p.slice("model.embed_tokens.weight");
  EXPECT_EQ(e.begin, 64);
  EXPECT_EQ(e.length, 36);
  EXPECT_EQ(e.local_shape, (std::vector<int64_t>{64, 32}));
  // Where 3 does not divide vLLM's 32000 (a multiple of 64), the padding grows to a multiple of 192.
  EXPECT_EQ(sharding_plan::make(shape(3, 1, 8, 24, 24, 32000), 3, 0).padded_vocab_size, 32064);
  EXPECT_EQ(sharding_plan::make(shape(32, 8, 8, 256, 64, 32000), 8, 0).padded_vocab_size, 32000);
}

TEST(sharding_plan, keeps_qwen3s_per_head_q_and_k_norms_whole_on_every_rank) {
  // Qwen3-8B: 32 heads over 8 KV heads of 128, the norms act on each head alone.
  model_config c = shape(32, 8, 128, 4096, 12288, 151936);
  c.arch = architecture::qwen3;
  c.qk_norm = true;
  for (int64_t r = 0; r < 2; ++r) {
    const sharding_plan p = sharding_plan::make(c, 2, r);
    for (const char* norm : {"q_norm", "k_norm"}) {
      const weight_slice& s = p.slice(std::string("model.layers.1.self_attn.") + norm + ".weight");
      EXPECT_EQ(s.shape, std::vector<int64_t>{128}) << norm;
      EXPECT_EQ(s.local_shape, std::vector<int64_t>{128}) << norm;
      EXPECT_EQ(s.begin, 0) << norm;
      EXPECT_FALSE(s.split) << norm;
    }
    EXPECT_EQ(p.slice("model.layers.1.self_attn.q_proj.weight").length, 16 * 128);
  }
}

TEST(sharding_plan, gives_biases_the_slice_of_their_weights) {
  model_config c = shape(8, 4, 8, 64, 32, 128);
  c.qkv_bias = true;
  c.o_bias = true;
  for (int64_t r = 0; r < 4; ++r) {
    const sharding_plan p = sharding_plan::make(c, 4, r);
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      const std::string base = std::string("model.layers.1.self_attn.") + proj;
      const weight_slice& w = p.slice(base + ".weight");
      const weight_slice& b = p.slice(base + ".bias");
      EXPECT_EQ(b.dim, 0);
      EXPECT_EQ(b.begin, w.begin) << base;
      EXPECT_EQ(b.length, w.length) << base;
      EXPECT_EQ(b.split, w.split) << base;
    }
    // o_proj's bias is whole everywhere and added once, by rank 0, before the all-reduce.
    const weight_slice& ob = p.slice("model.layers.1.self_attn.o_proj.bias");
    EXPECT_EQ(ob.length, 64);
    EXPECT_FALSE(ob.split);
    EXPECT_TRUE(ob.add_on_rank_0_only);
  }
}

TEST(sharding_plan, all_reduces_after_embedding_o_proj_and_down_proj_and_gathers_logits) {
  const sharding_plan p = sharding_plan::make(shape(4, 2, 8, 32, 16, 128), 2, 0);
  std::vector<std::string> after;
  for (const collective_point& c : p.collectives)
    after.push_back(c.after + (c.op == collective_point::kind::all_reduce ? " all_reduce" : " all_gather"));
  EXPECT_EQ(after, (std::vector<std::string>{
                       "model.embed_tokens all_reduce", "model.layers.0.self_attn.o_proj all_reduce",
                       "model.layers.0.mlp.down_proj all_reduce", "model.layers.1.self_attn.o_proj all_reduce",
                       "model.layers.1.mlp.down_proj all_reduce", "lm_head all_gather"}));
  EXPECT_TRUE(p.all_reduce_after("model.layers.1.mlp.down_proj"));
  EXPECT_FALSE(p.all_reduce_after("model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(p.all_reduce_after("lm_head"));
}

TEST(sharding_plan, slices_of_all_ranks_tile_every_tensor) {
  // Split tensors: every checkpoint index read by exactly one rank. Replicated KV heads: by exactly
  // num_kv_head_replicas ranks. Whole tensors: by every rank.
  model_config biased = shape(8, 2, 4, 32, 24, 100);
  biased.qkv_bias = true;
  biased.o_bias = true;
  model_config tied = shape(6, 6, 4, 24, 12, 70);
  tied.tie_word_embeddings = true;
  for (const model_config& c : {biased, tied, shape(12, 4, 4, 48, 36, 129)}) {
    for (int64_t n : valid_tensor_parallel_sizes(c)) {
      std::vector<sharding_plan> plans;
      for (int64_t r = 0; r < n; ++r) plans.push_back(sharding_plan::make(c, n, r));
      for (size_t i = 0; i < plans[0].slices.size(); ++i) {
        const weight_slice& first = plans[0].slices[i];
        const bool kv = first.name.find("k_proj") != std::string::npos ||
                        first.name.find("v_proj") != std::string::npos;
        const int64_t copies = first.split ? 1 : kv ? plans[0].num_kv_head_replicas : n;
        std::vector<int64_t> reads(static_cast<size_t>(first.shape[static_cast<size_t>(first.dim)]), 0);
        for (const sharding_plan& p : plans) {
          const weight_slice& s = p.slices[i];
          ASSERT_EQ(s.name, first.name);
          ASSERT_EQ(s.dim, first.dim);
          ASSERT_EQ(s.split, first.split);
          ASSERT_LE(s.begin + s.length, static_cast<int64_t>(reads.size())) << s.name;
          for (int64_t j = s.begin; j < s.begin + s.length; ++j) ++reads[static_cast<size_t>(j)];
        }
        for (size_t j = 0; j < reads.size(); ++j)
          ASSERT_EQ(reads[j], copies) << first.name << " index " << j << " at N = " << n;
      }
    }
  }
}

TEST(sharding_plan, lists_the_sizes_that_split_a_model) {
  EXPECT_EQ(valid_tensor_parallel_sizes(qwen2_5_7b()), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(valid_tensor_parallel_sizes(llama3_8b()), (std::vector<int64_t>{1, 2, 4, 8, 16, 32}));
}

// vLLM's awq.py and gptq.py create_weights refuse a row-parallel layer whose inputs per rank are not whole
// groups, and a column-parallel one whose outputs per rank are not whole packed words of 8: Llama-2-7B's 11008
// intermediate columns at 4 ranks are 2752, 21.5 groups of 128.
TEST(sharding_plan, refuses_a_split_that_cuts_a_4_bit_group_or_word_naming_the_layer) {
  model_config llama2_7b = shape(32, 32, 128, 4096, 11008, 32000);
  llama2_7b.arch = architecture::llama;
  llama2_7b.quantization = quantization_config{};  // awq, group 128
  EXPECT_EQ(message_of([&] { sharding_plan::make(llama2_7b, 4, 0); }),
            "--tensor-parallel-size 4 gives each rank 2752 of the 11008 inputs of model.layers.0.mlp.down_proj, not a "
            "whole number of its awq groups of 128; 1 or 2 would");
  EXPECT_EQ(valid_tensor_parallel_sizes(llama2_7b), (std::vector<int64_t>{1, 2}));

  model_config narrow_heads = shape(4, 4, 12, 48, 64, 128);  // 12 query rows per rank at 4 ranks
  narrow_heads.quantization = quantization_config{};
  narrow_heads.quantization->method = quant_method::gptq;
  narrow_heads.quantization->group_size = -1;
  EXPECT_EQ(message_of([&] { sharding_plan::make(narrow_heads, 4, 0); }),
            "--tensor-parallel-size 4 gives each rank 12 of the 48 outputs of model.layers.0.self_attn.q_proj, not a "
            "whole number of the 8 outputs one gptq word packs; 1 or 2 would");
  // rtn packs nothing and rounds each rank's part from the groups that cover it: every split the heads allow.
  narrow_heads.quantization->method = quant_method::rtn;
  llama2_7b.quantization->method = quant_method::rtn;
  EXPECT_EQ(valid_tensor_parallel_sizes(narrow_heads), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(valid_tensor_parallel_sizes(llama2_7b), valid_tensor_parallel_sizes(shape(32, 32, 128, 4096, 11008, 32000)));
}
