// When the FP8 warpgroup-MMA GEMM takes a product and how it splits K (kernels/fp8_wgmma_rules.hpp): the row ranges
// and switches of the choice at each edge; the invariants every split plan keeps over a sweep of shapes, the plans of
// Qwen2.5-7B's decode products on an H100's 132 SMs, and the cut to a small scratch. The kernel itself needs a GPU:
// troupe_gpu_check's linear_fp8 "wgmma" rows.

#include <gtest/gtest.h>

#include "kernels/fp8_wgmma_rules.hpp"

using namespace troupe;

namespace {

// Every split covers K, none is empty, none but a lone one is shorter than the minimum, there are at most the maximum.
void expect_valid(fp8_split_plan p, int total, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_GE(p.splits, 1);
  EXPECT_LE(p.splits, kFp8MaxSplits);
  EXPECT_GE(static_cast<int64_t>(p.splits) * p.stages_per_split, total);           // covers K
  EXPECT_LT(static_cast<int64_t>(p.splits - 1) * p.stages_per_split, total);       // the last split is not empty
  if (p.splits > 1) {
    EXPECT_GE(p.stages_per_split, kFp8MinSplitStages);
  } else {
    EXPECT_EQ(p.stages_per_split, total);
  }
}

} // namespace

TEST(Fp8SplitRules, EveryPlanCoversKWithNoEmptySplit) {
  for (const int wave : {1, 7, 78, 114, 132})
    for (int64_t tiles = 1; tiles <= 600; tiles += tiles < 40 ? 1 : 13)
      for (const int total : {1, 2, 3, 4, 7, 8, 9, 16, 28, 31, 148, 1000}) {
        const fp8_split_plan p = plan_fp8_split_k(tiles, total, wave);
        expect_valid(p, total, "tiles " + std::to_string(tiles) + ", stages " + std::to_string(total) + ", wave " +
                                   std::to_string(wave));
        // A split product runs one wave at most: its partials fit the scratch made ready before any capture (one
        // wave of tiles: fp8_split_scratch_floats).
        if (p.splits > 1) {
          EXPECT_LE(tiles * p.splits, wave);
        }
        // A full wave is never split.
        if (tiles >= wave) {
          EXPECT_EQ(p.splits, 1);
        }
        // Splits are only as few as the minimum stages or the maximum count force: one more would overfill the wave.
        if (p.splits < kFp8MaxSplits && total / (p.splits + 1) >= kFp8MinSplitStages && tiles < wave) {
          EXPECT_GT(tiles * (p.splits + 1), wave);
        }
      }
}

TEST(Fp8SplitRules, ShortKNeverSplits) {
  for (int total = 1; total <= kFp8MinSplitStages; ++total) EXPECT_EQ(plan_fp8_split_k(1, total, 132).splits, 1) << total;
  EXPECT_EQ(plan_fp8_split_k(1, 2 * kFp8MinSplitStages, 132).splits, 2);
  // Many tiles: the GPU is full without splitting.
  EXPECT_EQ(plan_fp8_split_k(1000, 1000, 132).splits, 1);
}

TEST(Fp8SplitRules, DecodeProductsOfQwen7BOnAnH100) {
  // 256 rows in 128-row tiles, K in stages of 128: down_proj (3584 outputs, K 18,944) makes 56 tiles, 2 splits fill
  // 112 of the 132 SMs; o_proj (3584, K 3,584: 28 stages) the same 56 tiles; q/k/v (4608) 72 tiles; gate_up (37,888)
  // 592 tiles, no split.
  EXPECT_EQ(plan_fp8_split_k(56, 148, 132).splits, 2);
  EXPECT_EQ(plan_fp8_split_k(56, 148, 132).stages_per_split, 74);
  EXPECT_EQ(plan_fp8_split_k(56, 28, 132).splits, 2);
  EXPECT_EQ(plan_fp8_split_k(592, 28, 132).splits, 1);
  // One tile of 148 stages: the most splits, 8 of 19 stages.
  EXPECT_EQ(plan_fp8_split_k(1, 148, 132).splits, 8);
  EXPECT_EQ(plan_fp8_split_k(1, 148, 132).stages_per_split, 19);
}

TEST(Fp8SplitRules, ASmallScratchCutsTheSplits) {
  const fp8_split_plan p = plan_fp8_split_k(1, 148, 132);
  ASSERT_EQ(p.splits, 8);
  for (int room = 1; room <= 8; ++room) {
    const fp8_split_plan cut = fit_fp8_split(p, 148, [&](int s) { return s <= room; });
    expect_valid(cut, 148, "room for " + std::to_string(room));
    EXPECT_LE(cut.splits, room);
  }
  EXPECT_EQ(fit_fp8_split(p, 148, [](int) { return false; }).splits, 1);
  EXPECT_EQ(fit_fp8_split(p, 148, [](int) { return false; }).stages_per_split, 148);
}

TEST(Fp8SplitRules, ThePartialsOfEverySplitFitTheScratchMadeReady) {
  for (const int wgmma_rows : {64, 128, 256})
    for (const int sms : {78, 132})
      for (const int64_t rows : {9, 64, 65, 128, 129, 256, 300, 1024})
        for (const int64_t n_out : {20, 128, 200, 3584, 4608, 37888})
          for (const int total : {1, 8, 28, 148}) {
            const fp8_wgmma_switches s{2, wgmma_rows, 1024};
            const fp8_split_plan p = plan_fp8_split_k(fp8_wgmma_tiles(rows, n_out, s), total, sms);
            if (p.splits == 1) continue;  // no partials: the output is written directly
            EXPECT_LE(p.splits * rows * n_out, fp8_split_scratch_floats(sms))
                << rows << " x " << n_out << ", " << total << " stages, " << sms << " SMs, tiles of " << wgmma_rows;
          }
}

TEST(Fp8WgmmaRules, TheRowsItTakesByItself) {
  const fp8_wgmma_switches every{2, 128, 1024};
  EXPECT_FALSE(fp8_wgmma_chosen(8, 3584, 3584, 132, every));  // the mma kernel's
  EXPECT_TRUE(fp8_wgmma_chosen(9, 3584, 3584, 132, every));
  EXPECT_TRUE(fp8_wgmma_chosen(1024, 37888, 3584, 132, every));
  EXPECT_FALSE(fp8_wgmma_chosen(1025, 37888, 3584, 132, every));  // prefill: cuBLASLt
  EXPECT_TRUE(fp8_wgmma_chosen(16384, 37888, 3584, 132, fp8_wgmma_switches{2, 128, 0}));  // 0: any
  EXPECT_FALSE(fp8_wgmma_chosen(256, 3584, 3584, 132, fp8_wgmma_switches{0, 128, 1024}));  // off, the default
  EXPECT_FALSE(fp8_wgmma_chosen(256, 3584, 3584, 132, fp8_wgmma_switches{}));
}

TEST(Fp8WgmmaRules, ModeOneTakesOnlyProductsOfFewerTilesThanSms) {
  const fp8_wgmma_switches few{1, 128, 1024};
  // Qwen2.5-7B at 256 rows, 128-row tiles: q/k/v 36 x 2, o_proj and down_proj 28 x 2, gate_up 296 x 2.
  EXPECT_EQ(fp8_wgmma_tiles(256, 4608, few), 72);
  EXPECT_TRUE(fp8_wgmma_chosen(256, 4608, 3584, 132, few));
  EXPECT_TRUE(fp8_wgmma_chosen(256, 3584, 3584, 132, few));
  EXPECT_FALSE(fp8_wgmma_chosen(256, 37888, 3584, 132, few));
  // The edge: 66 output tiles x 2 row tiles = 132 tiles is a full wave on 132 SMs, 65 x 2 is not.
  EXPECT_FALSE(fp8_wgmma_chosen(256, 66 * 128, 3584, 132, few));
  EXPECT_TRUE(fp8_wgmma_chosen(256, 65 * 128, 3584, 132, few));
  // 64-row tiles make twice the tiles.
  EXPECT_EQ(fp8_wgmma_tiles(256, 4608, fp8_wgmma_switches{1, 64, 1024}), 144);
  EXPECT_FALSE(fp8_wgmma_chosen(256, 4608, 3584, 132, fp8_wgmma_switches{1, 64, 1024}));
}

TEST(Fp8WgmmaRules, ModeThreeTakesOnlyTheDeepFewTileProducts) {
  const fp8_wgmma_switches deep{3, 128, 1024};
  // Qwen2.5-7B at 256 rows: down_proj (3,584 outputs over 18,944) is deep; q/k/v and o_proj (over 3,584) are not;
  // gate_up (37,888 outputs) has too many tiles.
  EXPECT_TRUE(fp8_wgmma_chosen(256, 3584, 18944, 132, deep));
  EXPECT_FALSE(fp8_wgmma_chosen(256, 4608, 3584, 132, deep));
  EXPECT_FALSE(fp8_wgmma_chosen(256, 3584, 3584, 132, deep));
  EXPECT_FALSE(fp8_wgmma_chosen(256, 37888, 3584, 132, deep));
  // The edge of deep: K exactly twice the outputs is, one short of it is not.
  EXPECT_TRUE(fp8_wgmma_chosen(256, 3584, 2 * 3584, 132, deep));
  EXPECT_FALSE(fp8_wgmma_chosen(256, 3584, 2 * 3584 - 128, 132, deep));
  // The rows it takes are mode 1's: not 8 or fewer, not past wgmma_max_rows, not a full wave of tiles.
  EXPECT_FALSE(fp8_wgmma_chosen(8, 3584, 18944, 132, deep));
  EXPECT_FALSE(fp8_wgmma_chosen(1025, 3584, 18944, 132, deep));
  EXPECT_FALSE(fp8_wgmma_chosen(256, 66 * 128, 18944 * 4, 132, deep));
}

TEST(Fp8WgmmaRules, TileRows) {
  const fp8_wgmma_switches s{};
  EXPECT_EQ(fp8_wgmma_tile_rows(1, s), 64);
  EXPECT_EQ(fp8_wgmma_tile_rows(64, s), 64);
  EXPECT_EQ(fp8_wgmma_tile_rows(65, s), 128);
  EXPECT_EQ(fp8_wgmma_tile_rows(65, fp8_wgmma_switches{0, 64, 0}), 64);
  EXPECT_EQ(fp8_wgmma_tiles(129, 136, s), 2 * 2);
  EXPECT_EQ(fp8_wgmma_tiles(1, 1, s), 1);
  // 256-row tiles above 128 rows only; W1's down_proj at 256 rows then makes 28 tiles, each weight read once.
  const fp8_wgmma_switches wide{1, 256, 1024};
  EXPECT_EQ(fp8_wgmma_tile_rows(128, wide), 128);
  EXPECT_EQ(fp8_wgmma_tile_rows(129, wide), 256);
  EXPECT_EQ(fp8_wgmma_tile_rows(64, wide), 64);
  EXPECT_EQ(fp8_wgmma_tiles(256, 3584, wide), 28);
  EXPECT_EQ(fp8_wgmma_tiles(300, 3584, wide), 56);
  EXPECT_EQ(fp8_wgmma_tiles_of(256, 3584, 256), fp8_wgmma_tiles(256, 3584, wide));
  EXPECT_EQ(fp8_wgmma_tiles_of(256, 3584, 64), 4 * 28);
}
