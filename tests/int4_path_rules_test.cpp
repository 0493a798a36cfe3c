// Which CUDA kernel runs a 4-bit product (kernels/int4_path_rules.hpp): the row ranges at each edge, the shapes each
// kernel refuses, and the switches. The kernels themselves need a GPU: troupe_gpu_check's 4-bit rows.

#include <gtest/gtest.h>

#include <string>

#include "kernels/int4_path_rules.hpp"

using namespace troupe;

namespace {

std::string name(int4_path p) {
  switch (p) {
  case int4_path::wgmma: return "wgmma";
  case int4_path::gemm: return "gemm";
  case int4_path::decode: return "decode";
  case int4_path::cuda_cores: return "cuda_cores";
  case int4_path::dequantize: return "dequantize";
  case int4_path::fp8: return "fp8";
  }
  return "?";
}

// The path of a bf16 product at Qwen2.5-7B's gate_up shape (K 3584, groups of 128) unless told otherwise.
std::string path(int64_t rows, int4_path_switches s = {}, int64_t k = 3584, int64_t group = 128, bool f32 = false,
                 bool aligned = true, bool splits = false) {
  return name(choose_int4_path(int4_product{rows, k, group, f32, aligned}, s, [&] { return splits; }));
}

TEST(Int4PathRules, by_default_each_row_range_has_its_kernel_and_the_edges_fall_where_timed) {
  for (const int64_t rows : {1, 8, 9, 16}) EXPECT_EQ(path(rows), "decode") << rows;
  for (const int64_t rows : {17, 32, 33, 48}) EXPECT_EQ(path(rows), "gemm") << rows;
  for (const int64_t rows : {49, 64, 65, 256, 1024}) EXPECT_EQ(path(rows), "wgmma") << rows;
  for (const int64_t rows : {1025, 16384}) EXPECT_EQ(path(rows), "dequantize") << rows;
}

TEST(Int4PathRules, without_the_wgmma_gemm_the_shared_memory_gemm_ends_at_64_rows) {
  const int4_path_switches off{.wgmma = 0};
  EXPECT_EQ(path(49, off), "gemm");
  EXPECT_EQ(path(64, off), "gemm");
  EXPECT_EQ(path(65, off), "dequantize");
  EXPECT_EQ(path(16, off), "decode");
}

TEST(Int4PathRules, the_wgmma_gemm_needs_k_a_multiple_of_64_and_groups_a_power_of_two) {
  // Per-channel groups (the whole row, 3584) are not a power of two: the shared-memory GEMM to 64 rows, then cuBLAS.
  EXPECT_EQ(path(49, {}, 3584, 3584), "gemm");
  EXPECT_EQ(path(256, {}, 3584, 3584), "dequantize");
  for (const int64_t group : {32, 64, 128}) EXPECT_EQ(path(256, {}, 3584, group), "wgmma") << group;
  // K a multiple of 64 but not of 128: neither GEMM below 49 rows beyond the decode kernels' 32.
  EXPECT_EQ(path(32, {}, 1088, 64), "decode");
  EXPECT_EQ(path(40, {}, 1088, 64), "dequantize");
  EXPECT_EQ(path(49, {}, 1088, 64), "wgmma");
  // K a multiple of 32 only: the decode kernels, then cuBLAS.
  EXPECT_EQ(path(8, {}, 1056, 32), "decode");
  EXPECT_EQ(path(256, {}, 1056, 32), "dequantize");
}

TEST(Int4PathRules, f32_and_unaligned_products_take_what_takes_them) {
  for (const int64_t rows : {1, 4}) EXPECT_EQ(path(rows, {}, 3584, 128, true), "cuda_cores") << rows;
  for (const int64_t rows : {5, 256}) EXPECT_EQ(path(rows, {}, 3584, 128, true), "dequantize") << rows;
  const int4_path_switches every{.wgmma = 2};
  EXPECT_EQ(path(256, every, 3584, 128, true), "dequantize");  // no f32 on the tensor cores
  for (const int64_t rows : {1, 49, 256}) EXPECT_EQ(path(rows, {}, 3584, 128, false, false), "dequantize") << rows;
  // Groups not a multiple of 32 go to cuBLAS whatever the rows.
  EXPECT_EQ(path(1, {}, 3584, 16), "dequantize");
}

TEST(Int4PathRules, the_switches_move_the_edges) {
  EXPECT_EQ(path(1, {.wgmma = 2}), "wgmma");
  EXPECT_EQ(path(16384, {.wgmma = 2}), "wgmma");
  EXPECT_EQ(path(4096, {.wgmma_max_rows = 0}), "wgmma");
  EXPECT_EQ(path(512, {.wgmma_max_rows = 256}), "dequantize");
  EXPECT_EQ(path(20, {.gemm = 0}), "decode");
  EXPECT_EQ(path(40, {.gemm = 0}), "dequantize");
  EXPECT_EQ(path(512, {.wgmma = 0, .gemm = 1}), "gemm");
  EXPECT_EQ(path(513, {.wgmma = 0, .gemm = 1}), "dequantize");
  EXPECT_EQ(path(5, {.gemm = 1}), "gemm");  // forced, before the decode kernels
}

TEST(Int4PathRules, no_split_rows_sends_only_products_that_would_split_above_them_to_cublas) {
  const int4_path_switches no_split{.wgmma_no_split_rows = 128};
  EXPECT_EQ(path(256, no_split, 3584, 128, false, true, true), "dequantize");
  EXPECT_EQ(path(256, no_split, 3584, 128, false, true, false), "wgmma");
  EXPECT_EQ(path(128, no_split, 3584, 128, false, true, true), "wgmma");  // not above the rows
  EXPECT_EQ(path(256, {}, 3584, 128, false, true, true), "wgmma");        // off by default
  // The split question is asked only where its answer decides.
  int asked = 0;
  auto count = [&] { ++asked; return true; };
  choose_int4_path(int4_product{256, 3584, 128}, {}, count);
  choose_int4_path(int4_product{100, 3584, 128}, no_split, count);
  choose_int4_path(int4_product{16, 3584, 128}, no_split, count);
  EXPECT_EQ(asked, 0);
  choose_int4_path(int4_product{256, 3584, 128}, no_split, count);
  EXPECT_EQ(asked, 1);
}

} // namespace

TEST(Int4PathRules, the_fp8_form_takes_every_product_from_its_rows_on_and_none_by_default) {
  for (const int64_t rows : {1, 256, 1024, 1025, 16384}) EXPECT_NE(path(rows), "fp8") << rows;
  const int4_path_switches from_129{.fp8_rows = 129};
  EXPECT_EQ(path(128, from_129), "wgmma");  // one short of the edge: what takes it without the switch
  EXPECT_EQ(path(129, from_129), "fp8");
  EXPECT_EQ(path(16384, from_129), "fp8");
  EXPECT_EQ(path(1, int4_path_switches{.fp8_rows = 1}), "fp8");
  // Any product: linear_fp8 takes every shape and dtype, as the CPU backend's FP8 form does.
  EXPECT_EQ(path(256, from_129, 16 * 97, 16 * 97), "fp8");
  EXPECT_EQ(path(256, from_129, 3576, 8), "fp8");
  EXPECT_EQ(path(256, from_129, 3584, 128, /*f32=*/true), "fp8");
  EXPECT_EQ(path(256, from_129, 3584, 128, false, /*aligned=*/false), "fp8");
  EXPECT_EQ(path(128, from_129, 3576, 8), "dequantize");
}

TEST(Int4PathRules, the_fp8_forms_fused_kernel_takes_16_bit_products_of_up_to_1024_rows_in_128_k_stages) {
  const auto takes = [](int64_t rows, int64_t k, int64_t group, bool f32 = false) {
    return int4_w4a8_shape(int4_product{rows, k, group, f32, true});
  };
  EXPECT_TRUE(takes(1, 3584, 128));
  EXPECT_TRUE(takes(1024, 18944, 128));
  EXPECT_FALSE(takes(1025, 3584, 128));  // one over: the two-kernel form
  EXPECT_FALSE(takes(0, 3584, 128));
  EXPECT_TRUE(takes(256, 1024, 64));
  EXPECT_FALSE(takes(256, 1024, 32));    // a thread's 64 k would span two groups
  EXPECT_FALSE(takes(256, 1024 + 64, 64));  // K not whole stages
  EXPECT_FALSE(takes(256, 3584, 128, true));
}

