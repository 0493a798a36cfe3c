#pragma once
// Sets a setting while it lives, then puts back what was there (the value an environment variable gave it, when the
// run started with one): a kernel switch (kernels/cuda/launchers.hpp's fp8_settings().path, int4_settings().async,
// attention_settings()'s fields) in troupe_gpu_check, or a rule both backends take (int4_fp8_rows(),
// runtime/model/fp8_formats.hpp) in a test. A test of the W4A16 arithmetic pins int4_fp8_rows() to 0 so that it holds
// whatever TROUPE_INT4_FP8_ROWS or the default says (CI runs green with TROUPE_INT4_FP8_ROWS=1).

#include <utility>

namespace troupe::testing {

template <class T> class scoped_value {
public:
  scoped_value(T& slot, T value) : slot_(slot), before_(slot) { slot_ = std::move(value); }
  ~scoped_value() { slot_ = std::move(before_); }
  scoped_value(const scoped_value&) = delete;
  scoped_value& operator=(const scoped_value&) = delete;

private:
  T& slot_;
  T before_;
};

} // namespace troupe::testing
