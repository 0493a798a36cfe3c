// How GPU memory is shared out (runtime/model/memory_plan): the arithmetic, and errors that say by how much a
// model does not fit and what to change. The measuring itself runs on the GPU (scripts/gpu/check.sh).

#include <gtest/gtest.h>

#include <cstdint>

#include "runtime/error.hpp"
#include "runtime/model/memory_plan.hpp"
#include "runtime/model/model_config.hpp"

using namespace troupe;

namespace {

constexpr int64_t GiB = int64_t{1} << 30;

gpu_memory_profile h100_7b() {
  gpu_memory_profile p;
  p.total = 80 * GiB;
  p.weight_bytes = 15 * GiB;
  p.workspace_bytes = 3 * GiB;
  p.profiled_kv_bytes = 1 << 20;  // one block
  p.block_bytes = 1 << 20;
  p.free_before_loading = p.total - GiB;  // the CUDA context
  p.free_after_profile = p.free_before_loading - p.weight_bytes - p.workspace_bytes - p.profiled_kv_bytes;
  p.block_size = 16;
  p.max_model_len = 32768;
  p.profile_tokens = 16384;
  p.utilization = 0.9;
  return p;
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

TEST(memory_plan, the_kv_cache_gets_what_is_left_under_the_utilization_cap) {
  const gpu_memory_profile p = h100_7b();
  // 0.9 × 80 GiB = 72 GiB; this process took 15 + 3 = 18 GiB (its CUDA context is outside, as in vLLM);
  // 54 GiB of 1 MiB blocks.
  EXPECT_EQ(plan_kv_blocks(p), 54 * 1024);
  gpu_memory_profile lower = p;
  lower.utilization = 0.5;
  EXPECT_EQ(plan_kv_blocks(lower), 22 * 1024);
}

// The plan's log line says what each part takes, and how long the weights took to load where that was measured.
TEST(memory_plan, the_line_says_each_part_and_the_load_time_where_measured) {
  gpu_memory_profile p = h100_7b();
  const std::string unmeasured = describe(p, 54 * 1024);
  EXPECT_NE(unmeasured.find("weights 15.00 GiB, step workspaces 3.00 GiB"), std::string::npos) << unmeasured;
  EXPECT_EQ(unmeasured.find("loaded in"), std::string::npos) << unmeasured;
  p.load_seconds = 38.26;
  const std::string measured = describe(p, 54 * 1024);
  EXPECT_NE(measured.find("weights 15.00 GiB (loaded in 38.3 s), step workspaces"), std::string::npos) << measured;
  EXPECT_NE(measured.find("55296 blocks of 16 tokens"), std::string::npos) << measured;
}

// Issue 13: on one GPU the same weights and step workspaces leave the same bytes for the cache, which an FP8
// cache cuts into blocks of half bf16's bytes. Qwen2.5-7B: 28 layers, 4 KV heads of 128, blocks of 16.
TEST(memory_plan, an_fp8_cache_gets_twice_the_blocks_of_a_bf16_one) {
  EXPECT_EQ(kv_block_bytes(28, 16, 4, 128, 2), 917504);  // 2 (K, V) × 28 × 16 × 4 × 128 × 2 bytes
  EXPECT_EQ(kv_block_bytes(28, 16, 4, 128, 1), 458752);
  auto profile = [](int64_t elem_bytes) {  // as the engine measures it, over a one-block profiling cache
    gpu_memory_profile p;
    p.total = 140 * GiB;
    p.weight_bytes = 15 * GiB;
    p.workspace_bytes = 3 * GiB;
    p.block_bytes = p.profiled_kv_bytes = kv_block_bytes(28, 16, 4, 128, elem_bytes);
    p.free_before_loading = p.total - GiB;
    p.free_after_profile = p.free_before_loading - p.weight_bytes - p.workspace_bytes - p.profiled_kv_bytes;
    p.max_model_len = 32768;
    return p;
  };
  // 0.9 × 140 GiB less the 18 GiB this process took = 115,964,116,992 bytes: 126,390.9 bf16 blocks, 252,781.7 FP8 ones.
  EXPECT_EQ(plan_kv_blocks(profile(2)), 126390);
  EXPECT_EQ(plan_kv_blocks(profile(1)), 252781);
}

// vLLM V1's meaning: the utilization is this instance's share, so memory another process held before it
// started does not count against it; but the cache never takes more than is free.
TEST(memory_plan, another_process_using_memory_does_not_count_against_the_cap_but_the_cache_stays_within_free_memory) {
  gpu_memory_profile p = h100_7b();
  p.free_before_loading -= 30 * GiB;  // someone else held 30 GiB before this process started
  p.free_after_profile -= 30 * GiB;
  // The cap leaves 72 - 18 = 54 GiB, but only 31 GiB are free (the profiling block included).
  EXPECT_EQ(plan_kv_blocks(p), 31 * 1024);
  p.utilization = 0.3;  // 24 GiB, 18 taken: 6 GiB
  EXPECT_EQ(plan_kv_blocks(p), 6 * 1024);
}

TEST(memory_plan, two_servers_at_045_share_one_gpu_each_with_its_own_cache) {
  gpu_memory_profile first = h100_7b();
  first.utilization = 0.45;  // 36 GiB, 18 taken: 18 GiB of cache
  EXPECT_EQ(plan_kv_blocks(first), 18 * 1024);
  gpu_memory_profile second = first;  // starts once the first holds its 36 GiB (and its context, 1 GiB)
  second.free_before_loading = first.total - GiB - 36 * GiB - GiB;
  second.free_after_profile = second.free_before_loading - second.weight_bytes - second.workspace_bytes - second.profiled_kv_bytes;
  EXPECT_EQ(plan_kv_blocks(second), 18 * 1024);
}

TEST(memory_plan, a_cache_too_small_for_one_sequence_says_by_how_much_and_what_to_change) {
  gpu_memory_profile p = h100_7b();
  p.utilization = 0.25;  // 20 GiB cap, 15 + 4 taken: 1 GiB = 1024 blocks = 16384 tokens < 32768
  p.workspace_bytes += GiB;
  p.free_after_profile -= GiB;
  const std::string m = message_of([&] { plan_kv_blocks(p); });
  EXPECT_NE(m.find("16384 tokens of context, fewer than --max-model-len 32768"), std::string::npos) << m;
  EXPECT_NE(m.find("short by 1.00 GiB"), std::string::npos) << m;
  EXPECT_NE(m.find("lower --max-model-len"), std::string::npos) << m;
  EXPECT_NE(m.find("--gpu-memory-utilization 0.25"), std::string::npos) << m;
  p.max_model_len = 16384;
  EXPECT_EQ(plan_kv_blocks(p), 1024);
}

TEST(memory_plan, nothing_left_at_all_is_an_error_too) {
  gpu_memory_profile p = h100_7b();
  p.utilization = 0.1;  // 8 GiB cap, 18 taken
  const std::string m = message_of([&] { plan_kv_blocks(p); });
  EXPECT_NE(m.find("leaves 0.00 GiB for the KV cache"), std::string::npos) << m;
}

TEST(memory_plan, weights_that_do_not_fit_say_by_how_much) {
  EXPECT_NO_THROW(check_weights_fit(15 * GiB, "bfloat16", 79 * GiB, 80 * GiB, 0.9));
  const std::string m = message_of([&] { check_weights_fit(140 * GiB, "bfloat16", 79 * GiB, 80 * GiB, 0.9); });
  EXPECT_NE(m.find("the weights take 140.00 GiB in bfloat16"), std::string::npos) << m;
  EXPECT_NE(m.find("leaves 72.00 GiB"), std::string::npos) << m;
  EXPECT_NE(m.find("short by 68.00 GiB"), std::string::npos) << m;
  // Another process's 40 GiB do not count against the cap, but what is free bounds it.
  EXPECT_NO_THROW(check_weights_fit(30 * GiB, "bfloat16", 39 * GiB, 80 * GiB, 0.45));
  EXPECT_THROW(check_weights_fit(40 * GiB, "bfloat16", 39 * GiB, 80 * GiB, 0.9), user_error);
  EXPECT_NE(m.find("--tensor-parallel-size"), std::string::npos) << m;
  EXPECT_THROW(check_weights_fit(GiB, "bfloat16", 79 * GiB, 80 * GiB, 1.5), user_error);
}

// Seen on the H200 (2026-12-05): a process on the same GPU exited while a server loaded, the weights measured
// -10.42 GiB, the cache was planned on memory the graphs then needed, and the server died allocating. Now it
// refuses at planning, naming what happened and what to do.
TEST(memory_plan, memory_freed_by_another_process_during_the_load_is_refused_not_planned_on) {
  gpu_memory_profile p = h100_7b();
  p.free_after_profile += 20 * GiB;  // the other process's 20 GiB came back after the baseline
  p.weight_bytes -= 20 * GiB;
  const std::string m = message_of([&] { plan_kv_blocks(p); });
  EXPECT_NE(m.find("another process on this GPU freed memory"), std::string::npos) << m;
  EXPECT_NE(m.find("-5.00 GiB"), std::string::npos) << m;  // the weights as measured
  EXPECT_NE(m.find("--num-gpu-blocks-override"), std::string::npos) << m;
  // Within the load's own figures (freed memory smaller than what this process took) it still plans.
  gpu_memory_profile small = h100_7b();
  small.free_after_profile += 2 * GiB;
  EXPECT_GT(plan_kv_blocks(small), 0);
}

// Seen on an H100 (2026-12-07): the last server's memory came back while this one loaded, less than this one took, so
// nothing measured negative; its 8.2 GiB of FP8 weights measured 1.07, the cache was planned 7 GiB too large, and the
// first decode graph found no memory. Weights measured under their own size (less 1/16) are refused too.
TEST(memory_plan, weights_measured_under_their_own_size_mean_memory_was_freed_under_the_load) {
  gpu_memory_profile p = h100_7b();
  p.least_weight_bytes = 14 * GiB;  // the codes alone; measured 15
  EXPECT_EQ(plan_kv_blocks(p), 54 * 1024);
  p.least_weight_bytes = 16 * GiB;  // measured 1/16 under: the shapes' rounding
  EXPECT_EQ(plan_kv_blocks(p), 54 * 1024);
  gpu_memory_profile freed = h100_7b();
  freed.least_weight_bytes = 14 * GiB;
  freed.free_after_profile += 7 * GiB;  // 7 GiB came back during the load: weights measured 8
  freed.weight_bytes -= 7 * GiB;
  const std::string m = message_of([&] { plan_kv_blocks(freed); });
  EXPECT_NE(m.find("another process on this GPU freed memory"), std::string::npos) << m;
  EXPECT_NE(m.find("8.00 GiB"), std::string::npos) << m;
  EXPECT_NE(m.find("--num-gpu-blocks-override"), std::string::npos) << m;
}

TEST(memory_plan, the_flags_give_the_override_or_the_cpu_bytes_in_blocks_within_32_bit_block_ids) {
  EXPECT_EQ(kv_blocks_from_flags(64, GiB, 1 << 20), 64);          // the override wins
  EXPECT_EQ(kv_blocks_from_flags(0, GiB, 1 << 20), 1024);         // else the bytes in blocks
  EXPECT_EQ(kv_blocks_from_flags(0, GiB + 5, 1 << 20), 1024);     // whole blocks only
  EXPECT_EQ(kv_blocks_from_flags(INT32_MAX, 0, 1), INT32_MAX);    // the largest a block id names
  const std::string over = message_of([] { kv_blocks_from_flags(int64_t{INT32_MAX} + 1, 0, 1); });
  EXPECT_NE(over.find("--num-gpu-blocks-override must be between 1 and 2147483647 (0: planned from memory), got "
                      "2147483648"),
            std::string::npos)
      << over;
  EXPECT_NE(message_of([] { kv_blocks_from_flags(-1, GiB, 1); }).find("got -1"), std::string::npos);
  const std::string bytes = message_of([] { kv_blocks_from_flags(0, int64_t{1} << 40, 16); });
  EXPECT_NE(bytes.find("--kv-cache-memory 1099511627776 makes 68719476736 KV blocks, more than the 2147483647"),
            std::string::npos)
      << bytes;
}

TEST(memory_plan, the_log_line_gives_blocks_and_tokens_of_context) {
  const std::string line = describe(h100_7b(), 1000);
  EXPECT_NE(line.find("1000 blocks of 16 tokens (16000 tokens of context)"), std::string::npos) << line;
  EXPECT_NE(line.find("weights 15.00 GiB"), std::string::npos) << line;
}

// Qwen2.5-7B's shapes: 28 layers of q/k/v 3584 → 4608, o_proj 3584 → 3584, gate/up 3584 → 2 × 18944, down
// 18944 → 3584: 6.53e9 linear weights. In bf16 13.05 GB; in FP8 a byte each plus an f32 scale per output row
// (28 × 46080); in 4 bits half a byte plus a bf16 scale and zero per group of 32.
TEST(memory_plan, fp8_linear_layers_take_a_byte_a_weight_and_a_scale_per_output_channel) {
  model_config c;
  c.num_layers = 28;
  c.hidden_size = 3584;
  c.num_heads = 28;
  c.num_kv_heads = 4;
  c.head_dim = 128;
  c.intermediate_size = 18944;
  const int64_t weights = 28 * (4608 * int64_t{3584} + 3584 * int64_t{3584} + 3 * 3584 * int64_t{18944});
  EXPECT_EQ(weights, 6525288448);
  EXPECT_EQ(linear_weights_in_memory(c, 2).kept, 2 * weights);
  EXPECT_EQ(linear_weights_in_memory(c, 2).dense, 2 * weights);
  EXPECT_EQ(linear_weights_in_memory(c, 2).least, 2 * weights);
  c.quantization = resolve_quantization(std::nullopt, "fp8", "m");
  EXPECT_EQ(linear_weights_in_memory(c, 2).kept, weights + 4 * 28 * (4608 + 3584 + 2 * 18944 + 3584));
  EXPECT_EQ(linear_weights_in_memory(c, 2).dense, 2 * weights);
  EXPECT_EQ(linear_weights_in_memory(c, 2).least, weights);  // the codes alone
  c.quantization = resolve_quantization(std::nullopt, "rtn", "m");
  EXPECT_EQ(linear_weights_in_memory(c, 2).kept, weights / 2 + weights * 4 / 32);
  EXPECT_EQ(linear_weights_in_memory(c, 2).least, weights / 2);
}
