#pragma once
// When the FP8 warpgroup-MMA GEMM (kernels/cuda/linear_fp8_wgmma.cu) takes a product, its tiles, and how it splits K
// over blockIdx.z, apart from CUDA so CI pins them (tests/fp8_wgmma_rules_test.cpp). Header only: the CUDA library
// includes it without linking anything.

#include <algorithm>
#include <cstdint>

namespace troupe {

constexpr int64_t kFp8WgmmaOutputs = 128;  // a block's outputs (two warpgroups of 64)
constexpr int64_t kFp8WgmmaAutoRows = 8;   // chosen only above this: the mma kernel keeps up to 8 rows
constexpr int kFp8MinSplitStages = 4;      // a split runs at least this many stages of K (where K is split at all)
constexpr int kFp8MaxSplits = 8;

// The switches the choice reads (fp8_switches of the same names).
struct fp8_wgmma_switches {
  int wgmma = 0;  // 0 never, 1 products of fewer tiles than SMs, 2 every product, 3 the deep ones of mode 1's
  int wgmma_rows = 128;        // 64: 64-row tiles at any row count; 256: 256 above 128 rows; else 128 above 64 rows
  int64_t wgmma_max_rows = 1024;  // 0: any
};

// The rows of a block's tile for a product of `rows` rows. 256-row tiles (the fast-accumulating kernel's only: the
// promoting one would need two sets of 128 accumulators a thread) read each weight once where the rows are 256.
constexpr int64_t fp8_wgmma_tile_rows(int64_t rows, const fp8_wgmma_switches& s) {
  if (rows <= 64 || s.wgmma_rows == 64) return 64;
  return s.wgmma_rows == 256 && rows > 128 ? 256 : 128;
}
// The output tiles of a product of `rows` x `n_out` in tiles of `bn` rows.
constexpr int64_t fp8_wgmma_tiles_of(int64_t rows, int64_t n_out, int64_t bn) {
  return (n_out + kFp8WgmmaOutputs - 1) / kFp8WgmmaOutputs * ((rows + bn - 1) / bn);
}
// The output tiles of a product of `rows` x `n_out`.
constexpr int64_t fp8_wgmma_tiles(int64_t rows, int64_t n_out, const fp8_wgmma_switches& s) {
  return fp8_wgmma_tiles_of(rows, n_out, fp8_wgmma_tile_rows(rows, s));
}
// A product is deep where its K is at least this many times its outputs (down_proj: 18,944 over 3,584): few tiles, each
// with a long K to split, where cuBLASLt's few-tile GEMM lost most to the wgmma GEMM's TMA form (H100, 2026-12-07).
constexpr int64_t kFp8DeepRatio = 2;

// Whether the launcher chooses the GEMM by itself (not forced) for a product of `rows` x `n_out` over `k` that its
// shape allows, on `sms` SMs.
constexpr bool fp8_wgmma_chosen(int64_t rows, int64_t n_out, int64_t k, int sms, const fp8_wgmma_switches& s) {
  if (s.wgmma <= 0 || rows <= kFp8WgmmaAutoRows || (s.wgmma_max_rows > 0 && rows > s.wgmma_max_rows)) return false;
  if (s.wgmma == 2) return true;
  const bool few = fp8_wgmma_tiles(rows, n_out, s) < sms;
  return s.wgmma == 3 ? few && k >= kFp8DeepRatio * n_out : few;
}

struct fp8_split_plan {
  int splits = 1, stages_per_split = 0;
};

// `tiles` output tiles over `total` stages of K, `wave` blocks running at once (one an SM): where the tiles are fewer
// than the wave, the most splits (up to kFp8MaxSplits) whose blocks still fit one wave, each of kFp8MinSplitStages
// stages or more (the last possibly shorter), none empty; otherwise none. So a split product never runs more than one
// wave, and its partials never exceed one wave of tiles (fp8_split_scratch_floats).
constexpr fp8_split_plan plan_fp8_split_k(int64_t tiles, int total, int wave) {
  wave = std::max(wave, 1);
  tiles = std::max<int64_t>(tiles, 1);
  total = std::max(total, 1);
  const int64_t fit = std::min<int64_t>({kFp8MaxSplits, wave / tiles, total / kFp8MinSplitStages});
  const int want = static_cast<int>(std::max<int64_t>(fit, 1));
  const int per_split = (total + want - 1) / want;
  return {(total + per_split - 1) / per_split, per_split};
}

// The f32 partials any split plan_fp8_split_k makes may need on `wave` SMs: one wave of the largest tiles (128 outputs
// x 256 rows).
constexpr int64_t fp8_split_scratch_floats(int wave) { return int64_t{std::max(wave, 1)} * kFp8WgmmaOutputs * 256; }

// The same plan cut down to what a scratch of `fits(splits)` can hold: fewer splits, each still covering K.
template <class Fits> fp8_split_plan fit_fp8_split(fp8_split_plan plan, int total, Fits&& fits) {
  while (plan.splits > 1 && !fits(plan.splits)) {
    const int fewer = plan.splits - 1, per = (total + fewer - 1) / fewer;
    plan = {(total + per - 1) / per, per};
  }
  if (plan.splits == 1) plan.stages_per_split = total;
  return plan;
}

} // namespace troupe
