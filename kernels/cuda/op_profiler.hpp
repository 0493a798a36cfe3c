#pragma once
// Times every op of a step with CUDA events when TROUPE_CUDA_PROFILE=1, so a step's device time can be
// split into GEMMs, attention, other kernels, copies and the idle gaps between ops (launch and host
// overhead). Events add about a microsecond of host time per op, so profiled steps run eagerly (no CUDA
// graphs) and read a little slower than unprofiled ones. Included only by kernels/cuda/*.

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace troupe {

class op_profiler {
public:
  enum category { gemm, attention, other, copy, num_categories };

  // Reads TROUPE_CUDA_PROFILE; a disabled profiler records nothing.
  op_profiler();
  ~op_profiler();
  bool enabled() const { return enabled_; }
  bool in_step() const { return in_step_; }

  // Steps with the same label are summed together.
  void begin_step(std::string label);
  // Returns the op's index in the step, for name_op.
  size_t begin_op(category c, cudaStream_t stream, const char* name);
  void end_op(cudaStream_t stream);
  // Names op `index` of the step (a linear layer's name carries its shape and the path its launcher took) and
  // counts its floating-point operations (0: not a GEMM), so the ops table can say what rate each name ran at.
  void name_op(size_t index, std::string name, double flop);
  // Needs the stream synchronized (every event recorded has completed).
  void end_step();
  // A table of mean milliseconds per step, one row per label, then, for the labels that took the most device time,
  // their ops by name; empty when nothing was recorded.
  std::string report() const;

private:
  struct op_mark {
    cudaEvent_t start = nullptr, end = nullptr;
    category cat = other;
    std::string name;
    double flop = 0;
  };
  struct op_totals {
    int64_t calls = 0;
    double ms = 0, flop = 0;
  };
  struct totals {
    int64_t steps = 0, ops = 0;
    double wall_ms = 0, span_ms = 0, gaps_ms = 0;
    double cat_ms[num_categories] = {};
    std::map<std::string, op_totals> by_name;
  };
  cudaEvent_t next_event();
  double total_span_ms() const;  // every label's device span, summed (1 when none)
  static constexpr size_t kNamedLabels = 3, kNamedOps = 16;

  bool enabled_ = false;
  bool in_step_ = false;
  std::vector<cudaEvent_t> pool_;
  size_t used_ = 0;
  std::vector<op_mark> marks_;
  std::string label_;
  std::chrono::steady_clock::time_point started_;
  std::map<std::string, totals> buckets_;
};

// Times one op of the current step (when profiling and inside a step).
class op_scope {
public:
  op_scope(op_profiler& p, op_profiler::category c, cudaStream_t s, const char* name)
      : p_(p), s_(s), on_(p.enabled() && p.in_step()) {
    if (on_) index_ = p_.begin_op(c, s_, name);
  }
  bool on() const { return on_; }
  // A name made after the op ran (its path), only worth making when on(); flop as name_op.
  void rename(std::string name, double flop = 0) {
    if (on_) p_.name_op(index_, std::move(name), flop);
  }
  ~op_scope() {
    if (on_) p_.end_op(s_);
  }
  op_scope(const op_scope&) = delete;
  op_scope& operator=(const op_scope&) = delete;

private:
  op_profiler& p_;
  cudaStream_t s_;
  bool on_;
  size_t index_ = 0;
};

} // namespace troupe
