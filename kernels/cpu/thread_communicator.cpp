#include "kernels/cpu/thread_communicator.hpp"

#include <barrier>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu/collective_rules.hpp"

namespace troupe {
namespace {

// What a rank brings to a collective; every rank reads every slot, so every rank reaches the same verdict
// (collective_mismatch reads only the slots, which no rank writes until all have passed the collective's last
// barrier).
using slot = collective_call;

class thread_group {
public:
  explicit thread_group(int size) : slots_(size), barrier_(size) {}

  int size() const { return static_cast<int>(slots_.size()); }

  // Runs one collective for `rank`: publish, agree, move data, and leave only when no rank still reads.
  void run(int rank, const slot& mine) {
    slots_[rank] = mine;
    barrier_.arrive_and_wait();  // every slot written
    if (std::string why = collective_mismatch(slots_); !why.empty()) {
      barrier_.arrive_and_wait();  // every rank has read the slots before any writes its next one
      throw std::invalid_argument(why);
    }
    if (mine.in.numel() == 0) {
      barrier_.arrive_and_wait();
      return;
    }
    switch (mine.op) {
      case collective::all_reduce_sum: return all_reduce_sum(rank);
      case collective::all_gather_last_dim: return all_gather_last_dim(rank);
      case collective::broadcast: return broadcast(rank);
    }
  }

private:
  // Reduce-scatter then all-gather: rank r sums chunk r of every rank's tensor into its own chunk r, then
  // copies chunk c from rank c. Each element is summed once, in rank order, so every rank gets the same bits.
  void all_reduce_sum(int rank) {
    const int size = this->size();
    if (size == 1) return;  // the sum of one tensor is itself, bit for bit
    const int64_t n = slots_[0].in.numel();
    auto chunk_begin = [&](int r) { return n * r / size; };
    // Phase 1 writes only chunk `rank` of this rank's tensor, which only this rank reads.
    std::vector<const void*> inputs;
    for (const slot& s : slots_) inputs.push_back(s.in.data);
    sum_in_rank_order(inputs, slots_[0].in.type, chunk_begin(rank), chunk_begin(rank + 1), slots_[rank].in.data);
    barrier_.arrive_and_wait();
    const size_t elem = size_in_bytes(slots_[0].in.type);
    auto* dst = static_cast<std::byte*>(slots_[rank].in.data);
    for (int c = 0; c < size; ++c) {
      if (c == rank) continue;
      const auto* src = static_cast<const std::byte*>(slots_[c].in.data);
      std::memcpy(dst + chunk_begin(c) * elem, src + chunk_begin(c) * elem, (chunk_begin(c + 1) - chunk_begin(c)) * elem);
    }
    barrier_.arrive_and_wait();  // no rank changes its chunk (or starts the next collective) while others copy it
  }

  void all_gather_last_dim(int rank) {
    const tensor& in = slots_[rank].in;
    const int64_t rows = in.numel() / in.dim(-1);
    const size_t row_bytes = static_cast<size_t>(in.dim(-1)) * size_in_bytes(in.type);
    auto* out = static_cast<std::byte*>(slots_[rank].out.data);
    const int size = this->size();
    for (int64_t row = 0; row < rows; ++row)
      for (int c = 0; c < size; ++c)
        std::memcpy(out + (row * size + c) * row_bytes,
                    static_cast<const std::byte*>(slots_[c].in.data) + row * row_bytes, row_bytes);
    barrier_.arrive_and_wait();  // every rank has read every input
  }

  void broadcast(int rank) {
    const slot& root = slots_[slots_[rank].root];
    if (rank != slots_[rank].root) std::memcpy(slots_[rank].in.data, root.in.data, root.in.num_bytes());
    barrier_.arrive_and_wait();  // the root's tensor stays unchanged until every rank has copied it
  }

  std::vector<slot> slots_;
  std::barrier<> barrier_;
};

class thread_communicator final : public communicator {
public:
  thread_communicator(std::shared_ptr<thread_group> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  void all_reduce_sum(const tensor& t) override { group_->run(rank_, make_collective_call(collective::all_reduce_sum, t, {}, 0)); }
  void all_gather_last_dim(const tensor& in, const tensor& out) override {
    group_->run(rank_, make_collective_call(collective::all_gather_last_dim, in, out, 0));
  }
  void broadcast(const tensor& t, int root) override { group_->run(rank_, make_collective_call(collective::broadcast, t, {}, root)); }

private:
  std::shared_ptr<thread_group> group_;
  int rank_;
};

} // namespace

std::vector<std::unique_ptr<communicator>> make_thread_communicators(int size) {
  if (size < 1)
    throw std::invalid_argument("a communicator group needs at least 1 rank, not " + std::to_string(size));
  auto group = std::make_shared<thread_group>(size);
  std::vector<std::unique_ptr<communicator>> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(std::make_unique<thread_communicator>(group, r));
  return ranks;
}

} // namespace troupe
