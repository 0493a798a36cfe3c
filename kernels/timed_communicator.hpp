#pragma once
// A communicator that counts the host time its calls take, around the one that does the work: what
// troupe:collective_time_per_step_seconds reports. On the CPU that is the collective itself, waiting for
// the other ranks included; on a GPU (NCCL) only the time to enqueue it.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "kernels/communicator.hpp"

namespace troupe {

class timed_communicator final : public communicator {
public:
  explicit timed_communicator(std::unique_ptr<communicator> inner) : inner_(std::move(inner)) {}

  // Nanoseconds spent in collectives since construction (read from any thread).
  int64_t busy_ns() const { return busy_ns_.load(std::memory_order_relaxed); }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool capturable() const override { return inner_->capturable(); }
  void all_reduce_sum(const tensor& t) override {
    timed([&] { inner_->all_reduce_sum(t); });
  }
  void all_gather_last_dim(const tensor& in, const tensor& out) override {
    timed([&] { inner_->all_gather_last_dim(in, out); });
  }
  void broadcast(const tensor& t, int root) override {
    timed([&] { inner_->broadcast(t, root); });
  }

private:
  template <class F>
  void timed(F&& f) {
    const auto start = std::chrono::steady_clock::now();
    struct add_on_exit {  // counted when the collective throws, too
      timed_communicator* self;
      std::chrono::steady_clock::time_point start;
      ~add_on_exit() {
        self->busy_ns_.fetch_add(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count(),
            std::memory_order_relaxed);
      }
    } guard{this, start};
    f();
  }

  std::unique_ptr<communicator> inner_;
  std::atomic<int64_t> busy_ns_{0};
};

} // namespace troupe
