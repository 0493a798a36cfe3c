#include "kernels/cpu/thread_communicator.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/collective_group.hpp"

namespace troupe {
namespace {

class thread_communicator final : public group_communicator {
public:
  using group_communicator::group_communicator;

private:
  // Reduce-scatter then all-gather: rank r sums chunk r of every rank's tensor into its own chunk r, then
  // copies chunk c from rank c. Each element is summed once, in rank order, so every rank gets the same bits.
  void sum(const std::vector<collective_call>& calls) override {
    const int size = this->size(), rank = this->rank();
    const int64_t n = calls[0].in.numel();
    auto chunk_begin = [&](int r) { return n * r / size; };
    // Phase 1 writes only chunk `rank` of this rank's tensor, which only this rank reads.
    std::vector<const void*> inputs;
    for (const collective_call& c : calls) inputs.push_back(c.in.data);
    sum_in_rank_order(inputs, calls[0].in.type, chunk_begin(rank), chunk_begin(rank + 1), calls[rank].in.data);
    group().wait();
    const size_t elem = size_in_bytes(calls[0].in.type);
    auto* dst = static_cast<std::byte*>(calls[rank].in.data);
    for (int c = 0; c < size; ++c) {
      if (c == rank) continue;
      const auto* src = static_cast<const std::byte*>(calls[c].in.data);
      std::memcpy(dst + chunk_begin(c) * elem, src + chunk_begin(c) * elem, (chunk_begin(c + 1) - chunk_begin(c)) * elem);
    }
    group().wait();  // no rank changes its chunk (or starts the next collective) while others copy it
  }

  void gather(const std::vector<collective_call>& calls) override {
    const tensor& in = calls[rank()].in;
    const int64_t rows = in.numel() / in.dim(-1);
    const size_t row_bytes = static_cast<size_t>(in.dim(-1)) * size_in_bytes(in.type);
    auto* out = static_cast<std::byte*>(calls[rank()].out.data);
    const int size = this->size();
    for (int64_t row = 0; row < rows; ++row)
      for (int c = 0; c < size; ++c)
        std::memcpy(out + (row * size + c) * row_bytes,
                    static_cast<const std::byte*>(calls[c].in.data) + row * row_bytes, row_bytes);
    group().wait();  // every rank has read every input
  }

  void copy_root(const std::vector<collective_call>& calls) override {
    const int root = calls[rank()].root;
    if (rank() != root) std::memcpy(calls[rank()].in.data, calls[root].in.data, calls[root].in.num_bytes());
    group().wait();  // the root's tensor stays unchanged until every rank has copied it
  }
};

} // namespace

std::vector<std::unique_ptr<communicator>> make_thread_communicators(int size) {
  if (size < 1)
    throw std::invalid_argument("a communicator group needs at least 1 rank, not " + std::to_string(size));
  auto group = std::make_shared<collective_group>(size);
  std::vector<std::unique_ptr<communicator>> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(std::make_unique<thread_communicator>(group, r));
  return ranks;
}

} // namespace troupe
