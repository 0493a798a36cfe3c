// Every CPU op at the edge sizes a step can have: 0 rows (a step part of whose work is empty, e.g. a
// prefill chunk that samples nothing) and 1 row. The same table (tests/support/op_cases.hpp) runs on
// the GPU in troupe_gpu_check, against these CPU results.

#include <gtest/gtest.h>

#include <cctype>

#include "kernels/cpu/cpu_ops.hpp"
#include "tests/support/op_cases.hpp"

using namespace troupe;
using namespace troupe::testing;

namespace {

class op_rows : public ::testing::TestWithParam<op_case> {};

TEST_P(op_rows, zero_rows_write_nothing) {
  cpu_ops cpu;
  for (const op_case_output& o : GetParam().run(cpu, 0, dtype::f32)) EXPECT_EQ(o.after, o.before) << o.name;
}

TEST_P(op_rows, one_row_writes_what_the_same_row_of_a_larger_step_writes) {
  cpu_ops cpu;
  const auto one = GetParam().run(cpu, 1, dtype::f32);
  const auto all = GetParam().run(cpu, kCapacity, dtype::f32);
  ASSERT_EQ(one.size(), all.size());
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].before, all[i].before) << one[i].name;
    size_t written = 0;
    for (size_t e = 0; e < one[i].after.size(); ++e) {
      if (one[i].after[e] == one[i].before[e]) continue;
      ++written;
      EXPECT_EQ(one[i].after[e], all[i].after[e]) << one[i].name << " element " << e;
    }
    // The op wrote something at one row (outputs start from values no op produces by chance)...
    EXPECT_GT(written, 0u) << one[i].name;
    // ...and the larger step wrote more.
    size_t written_all = 0;
    for (size_t e = 0; e < all[i].after.size(); ++e) written_all += all[i].after[e] != all[i].before[e];
    EXPECT_GE(written_all, written) << one[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(every_op, op_rows, ::testing::ValuesIn(op_cases()), [](const auto& info) {
  std::string name;
  for (char c : info.param.name) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
});

} // namespace
