#include "kernels/cuda/op_profiler.hpp"

#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/check.hpp"

namespace troupe {

using cuda::check;

op_profiler::op_profiler() {
  const char* v = std::getenv("TROUPE_CUDA_PROFILE");
  enabled_ = v && *v && std::string(v) != "0";
}

op_profiler::~op_profiler() {
  for (cudaEvent_t e : pool_) cudaEventDestroy(e);
}

cudaEvent_t op_profiler::next_event() {
  if (used_ == pool_.size()) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "profiler event");
    pool_.push_back(e);
  }
  return pool_[used_++];
}

void op_profiler::begin_step(std::string label) {
  if (!enabled_) return;
  label_ = std::move(label);
  marks_.clear();
  used_ = 0;
  in_step_ = true;
  started_ = std::chrono::steady_clock::now();
}

void op_profiler::begin_op(category c, cudaStream_t stream) {
  op_mark m;
  m.start = next_event();
  m.cat = c;
  check(cudaEventRecord(m.start, stream), "profiler event");
  marks_.push_back(m);
}

void op_profiler::end_op(cudaStream_t stream) {
  marks_.back().end = next_event();
  check(cudaEventRecord(marks_.back().end, stream), "profiler event");
}

void op_profiler::end_step() {
  if (!enabled_ || !in_step_) return;
  in_step_ = false;
  const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
  if (marks_.empty()) return;
  totals& t = buckets_[label_];
  t.steps += 1;
  t.ops += static_cast<int64_t>(marks_.size());
  t.wall_ms += wall;
  float ms = 0;
  check(cudaEventElapsedTime(&ms, marks_.front().start, marks_.back().end), "profiler elapsed");
  t.span_ms += ms;
  for (size_t i = 0; i < marks_.size(); ++i) {
    check(cudaEventElapsedTime(&ms, marks_[i].start, marks_[i].end), "profiler elapsed");
    t.cat_ms[marks_[i].cat] += ms;
    if (i > 0) {
      check(cudaEventElapsedTime(&ms, marks_[i - 1].end, marks_[i].start), "profiler elapsed");
      t.gaps_ms += ms;
    }
  }
}

std::string op_profiler::report() const {
  if (buckets_.empty()) return {};
  std::string s =
      "troupe cuda profile (TROUPE_CUDA_PROFILE=1), mean ms per step:\n"
      "| step | steps | ops | host wall | device span | GEMMs | attention | other kernels | copies | gaps |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  char line[512];
  for (const auto& [label, t] : buckets_) {
    const double n = static_cast<double>(t.steps);
    std::snprintf(line, sizeof line, "| %s | %lld | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                  label.c_str(), static_cast<long long>(t.steps), t.ops / n, t.wall_ms / n, t.span_ms / n,
                  t.cat_ms[gemm] / n, t.cat_ms[attention] / n, t.cat_ms[other] / n, t.cat_ms[copy] / n, t.gaps_ms / n);
    s += line;
  }
  return s;
}

} // namespace troupe
