#include "kernels/cuda/op_profiler.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>

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

size_t op_profiler::begin_op(category c, cudaStream_t stream, const char* name) {
  op_mark m;
  m.start = next_event();
  m.cat = c;
  m.name = name;
  check(cudaEventRecord(m.start, stream), "profiler event");
  marks_.push_back(std::move(m));
  return marks_.size() - 1;
}

void op_profiler::name_op(size_t index, std::string name, double flop) {
  if (index >= marks_.size()) return;
  marks_[index].name = std::move(name);
  marks_[index].flop = flop;
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
    op_totals& named = t.by_name[marks_[i].name];
    named.calls += 1;
    named.ms += ms;
    named.flop += marks_[i].flop;
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
  // The ops of the labels with the most device time in all (steps x span), by name, the costliest first.
  std::vector<std::pair<double, const std::string*>> heaviest;
  for (const auto& [label, t] : buckets_) heaviest.emplace_back(t.span_ms, &label);
  std::sort(heaviest.begin(), heaviest.end(), std::greater<>());
  if (heaviest.size() > kNamedLabels) heaviest.resize(kNamedLabels);
  for (const auto& [total, label] : heaviest) {
    const totals& t = buckets_.at(*label);
    const double n = static_cast<double>(t.steps);
    std::snprintf(line, sizeof line, "\nops of \"%s\" (%.0f%% of the profiled device time), mean per step:\n",
                  label->c_str(), 100.0 * total / total_span_ms());
    s += line;
    s += "| op | calls | ms | share of the span | TFLOP/s |\n|---|---|---|---|---|\n";
    std::vector<std::pair<double, const std::string*>> ops;
    for (const auto& [name, o] : t.by_name) ops.emplace_back(o.ms, &name);
    std::sort(ops.begin(), ops.end(), std::greater<>());
    if (ops.size() > kNamedOps) ops.resize(kNamedOps);
    for (const auto& [ms, name] : ops) {
      const op_totals& o = t.by_name.at(*name);
      char rate[32] = "-";
      if (o.flop > 0 && ms > 0) std::snprintf(rate, sizeof rate, "%.0f", o.flop / (ms * 1e-3) / 1e12);
      std::snprintf(line, sizeof line, "| %s | %.1f | %.3f | %.1f%% | %s |\n", name->c_str(),
                    static_cast<double>(o.calls) / n, ms / n, 100.0 * ms / t.span_ms, rate);
      s += line;
    }
  }
  return s;
}

double op_profiler::total_span_ms() const {
  double sum = 0;
  for (const auto& [label, t] : buckets_) sum += t.span_ms;
  return sum > 0 ? sum : 1.0;
}

} // namespace troupe
