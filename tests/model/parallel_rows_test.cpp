#include "runtime/model/parallel_rows.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/model/weight_names.hpp"

namespace troupe {
namespace {

// Every row once, whatever the sizes: 0 rows, 1 row, fewer rows than min_rows, a count that does not divide.
TEST(parallel_rows, visits_every_row_exactly_once) {
  for (int64_t rows : {0, 1, 2, 7, 63, 64, 65, 1000, 100003})
    for (int64_t min_rows : {0, 1, 3, 64, 100000}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(rows));
      std::atomic<int> calls = 0;
      parallel_rows(rows, min_rows, [&](int64_t begin, int64_t end) {
        ASSERT_LT(begin, end);
        ++calls;
        for (int64_t r = begin; r < end; ++r) ++seen[static_cast<size_t>(r)];
      });
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(seen[static_cast<size_t>(r)], 1) << rows << " rows, row " << r;
      EXPECT_EQ(calls > 0, rows > 0);
      if (min_rows > 0) {
        EXPECT_LE(calls, std::max<int64_t>(1, rows / min_rows)) << rows << " rows, min " << min_rows;
      }
    }
}

TEST(parallel_rows, rethrows_a_ranges_exception_after_every_thread_finished) {
  std::atomic<int64_t> done = 0;
  EXPECT_THROW(parallel_rows(1000, 1,
                             [&](int64_t begin, int64_t end) {
                               if (begin == 0) throw std::runtime_error("first range");
                               done += end - begin;
                             }),
               std::runtime_error);
  const int64_t cores = std::max<unsigned>(1, std::thread::hardware_concurrency());
  EXPECT_EQ(done, cores == 1 ? 0 : 1000 - (1000 + cores - 1) / cores);
}

// The load-time conversions split over threads give what one row at a time gives (the thread count of this
// machine: two on CI). 4,096 rows of 1,024 values is four million values, so the work is split.
TEST(parallel_rows, quantization_and_dummy_values_are_the_same_bits_split_or_not) {
  const int64_t out = 4096, in = 1024;
  const weight_spec spec{"model.layers.3.mlp.up_proj.weight", {out, in}, weight_spec::init::matrix};
  std::vector<float> values;
  random_weight_values(spec, 7, values);
  ASSERT_EQ(values.size(), static_cast<size_t>(out * in));
  for (int64_t at : {int64_t{0}, int64_t{1}, out * in / 2 + 3, out * in - 1}) {
    float one = 0;
    random_weight_range(spec, 7, at, 1, &one);
    EXPECT_EQ(one, values[static_cast<size_t>(at)]) << "value " << at;
  }

  const fp8_weight f = quantize_fp8(values, out, in, true);
  std::vector<uint8_t> codes(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    const std::span<const float> row(values.data() + o * in, static_cast<size_t>(in));
    const float scale = fp8_dynamic_scale(row);
    ASSERT_EQ(f.scales[static_cast<size_t>(o)], scale) << "row " << o;
    fp8_quantize_row(row, scale, codes);
    ASSERT_TRUE(std::equal(codes.begin(), codes.end(), f.codes.begin() + o * in)) << "row " << o;
  }

  const int4_weight whole = rtn_quantize(values, out, in, 128, false);
  for (int64_t o : {int64_t{0}, out / 3, out - 1}) {
    const int4_weight row = rtn_quantize(std::span<const float>(values).subspan(static_cast<size_t>(o * in), static_cast<size_t>(in)),
                                         1, in, 128, false);
    ASSERT_TRUE(std::equal(row.q.begin(), row.q.end(), whole.q.begin() + o * in)) << "row " << o;
    ASSERT_TRUE(std::equal(row.scales.begin(), row.scales.end(), whole.scales.begin() + o * (in / 128))) << "row " << o;
    ASSERT_TRUE(std::equal(row.zeros.begin(), row.zeros.end(), whole.zeros.begin() + o * (in / 128))) << "row " << o;
  }
}

} // namespace
} // namespace troupe
