#pragma once
// int4_fp8_rows() (runtime/model/fp8_formats.hpp: the step size from which both backends run 4-bit products in their
// FP8 form, W4A8) pinned for a scope. A test of the W4A16 arithmetic pins 0, so that it holds whatever
// TROUPE_INT4_FP8_ROWS or the default says (CI runs green with TROUPE_INT4_FP8_ROWS=1); a test of the FP8 form pins the
// row count it exercises.

#include <cstdint>

#include "runtime/model/fp8_formats.hpp"

namespace troupe::testing {

class int4_fp8_rows_pinned {
 public:
  explicit int4_fp8_rows_pinned(int64_t rows) : before_(int4_fp8_rows()) { int4_fp8_rows() = rows; }
  ~int4_fp8_rows_pinned() { int4_fp8_rows() = before_; }
  int4_fp8_rows_pinned(const int4_fp8_rows_pinned&) = delete;
  int4_fp8_rows_pinned& operator=(const int4_fp8_rows_pinned&) = delete;

 private:
  int64_t before_;
};

} // namespace troupe::testing
