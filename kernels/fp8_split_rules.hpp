#pragma once
// How the FP8 warpgroup-MMA GEMM (kernels/cuda/linear_fp8_wgmma.cu) splits K over blockIdx.z, apart from CUDA so CI
// pins it (tests/fp8_split_rules_test.cpp). Header only: the CUDA library includes it without linking anything.

#include <algorithm>
#include <cstdint>

namespace troupe {

constexpr int kFp8MinSplitStages = 4;  // a split runs at least this many stages of K (where K is split at all)
constexpr int kFp8MaxSplits = 8;

struct fp8_split_plan {
  int splits = 1, stages_per_split = 0;
};

// `tiles` output tiles over `total` stages of K, `wave` blocks running at once (one an SM): where the tiles are fewer
// than the wave, the most splits (up to kFp8MaxSplits) whose blocks still fit one wave, each of kFp8MinSplitStages
// stages or more (the last possibly shorter), none empty; otherwise none. So a split product never runs more than one
// wave, and its partials never exceed one wave of tiles.
constexpr fp8_split_plan plan_fp8_split_k(int64_t tiles, int total, int wave) {
  wave = std::max(wave, 1);
  tiles = std::max<int64_t>(tiles, 1);
  total = std::max(total, 1);
  const int64_t fit = std::min<int64_t>({kFp8MaxSplits, wave / tiles, total / kFp8MinSplitStages});
  const int want = static_cast<int>(std::max<int64_t>(fit, 1));
  const int per_split = (total + want - 1) / want;
  return {(total + per_split - 1) / per_split, per_split};
}

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
