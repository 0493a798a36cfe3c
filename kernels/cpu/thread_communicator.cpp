#include "kernels/cpu/thread_communicator.hpp"

#include <barrier>
#include <cstring>
#include <stdexcept>
#include <string>

namespace troupe {
namespace {

enum class collective { all_reduce_sum, all_gather_last_dim, broadcast };

const char* collective_name(collective c) {
  switch (c) {
    case collective::all_reduce_sum: return "all_reduce_sum";
    case collective::all_gather_last_dim: return "all_gather_last_dim";
    case collective::broadcast: return "broadcast";
  }
  return "?";
}

std::string describe(const tensor& t) { return t.shape_string() + " " + std::string(troupe::name(t.type)); }

bool same_layout(const tensor& a, const tensor& b) {
  if (a.type != b.type || a.rank != b.rank) return false;
  for (int i = 0; i < a.rank; ++i)
    if (a.dims[i] != b.dims[i]) return false;
  return true;
}

// What a rank brings to a collective; every rank reads every slot, so every rank reaches the same verdict.
struct slot {
  collective op{};
  tensor in;   // the tensor reduced, broadcast, or gathered from
  tensor out;  // all_gather_last_dim's output
  int root = 0;
};

// Element-wise sums in rank order, for the elements [begin, end) of every rank's tensor, written into `dst`.
template <class Load, class Store>
void sum_in_rank_order(const std::vector<slot>& slots, int64_t begin, int64_t end, Load load, Store store,
                       void* dst) {
  for (int64_t i = begin; i < end; ++i) {
    float acc = load(slots[0].in.data, i);
    for (size_t r = 1; r < slots.size(); ++r) acc += load(slots[r].in.data, i);
    store(dst, i, acc);
  }
}

void sum_range(const std::vector<slot>& slots, int64_t begin, int64_t end, void* dst) {
  switch (slots[0].in.type) {
    case dtype::f32:
      return sum_in_rank_order(
          slots, begin, end, [](const void* p, int64_t i) { return static_cast<const float*>(p)[i]; },
          [](void* p, int64_t i, float v) { static_cast<float*>(p)[i] = v; }, dst);
    case dtype::bf16:
      return sum_in_rank_order(
          slots, begin, end,
          [](const void* p, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(p)[i]); },
          [](void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); }, dst);
    case dtype::f16:
      return sum_in_rank_order(
          slots, begin, end,
          [](const void* p, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(p)[i]); },
          [](void* p, int64_t i, float v) { static_cast<uint16_t*>(p)[i] = f32_to_f16(v); }, dst);
    default: break;
  }
}

// The reason every rank throws, or "" when the ranks agree and the shapes fit. Reads only the slots, which no
// rank writes until all have passed the collective's last barrier.
std::string mismatch(const std::vector<slot>& slots) {
  const slot& first = slots[0];
  const std::string what = collective_name(first.op);
  for (size_t r = 1; r < slots.size(); ++r) {
    const slot& s = slots[r];
    const std::string at = "rank " + std::to_string(r);
    if (s.op != first.op)
      return what + " on rank 0 met " + collective_name(s.op) + " on " + at + ": every rank must call the same collective";
    if (!same_layout(s.in, first.in))
      return what + ": rank 0 has " + describe(first.in) + " but " + at + " has " + describe(s.in) +
             ": every rank must pass the same shape and dtype";
    if (s.root != first.root)
      return what + ": rank 0 names root " + std::to_string(first.root) + " but " + at + " names root " +
             std::to_string(s.root);
  }
  const int size = static_cast<int>(slots.size());
  switch (first.op) {
    case collective::all_reduce_sum:
      if (first.in.type != dtype::f32 && first.in.type != dtype::bf16 && first.in.type != dtype::f16)
        return what + " sums F32, BF16 or F16, not " + std::string(troupe::name(first.in.type));
      break;
    case collective::broadcast:
      if (first.root < 0 || first.root >= size)
        return what + ": root " + std::to_string(first.root) + " is not a rank of a group of " +
               std::to_string(size);
      break;
    case collective::all_gather_last_dim:
      for (int r = 0; r < size; ++r) {
        const slot& s = slots[r];
        tensor expected = s.in;
        if (expected.rank > 0) expected.dims[expected.rank - 1] *= size;
        if (s.in.rank == 0 || !same_layout(s.out, expected))
          return what + ": rank " + std::to_string(r) + " gathers " + describe(s.in) + " into " + describe(s.out) +
                 "; the output must be " + describe(expected) + " (the last dimension times " +
                 std::to_string(size) + ")";
        const auto* in = static_cast<const std::byte*>(s.in.data);
        const auto* out = static_cast<const std::byte*>(s.out.data);
        if (s.in.numel() > 0 && in < out + s.out.num_bytes() && out < in + s.in.num_bytes())
          return what + ": rank " + std::to_string(r) + "'s output overlaps its input";
      }
      break;
  }
  return "";
}

class thread_group {
public:
  explicit thread_group(int size) : slots_(size), barrier_(size) {}

  int size() const { return static_cast<int>(slots_.size()); }

  // Runs one collective for `rank`: publish, agree, move data, and leave only when no rank still reads.
  void run(int rank, const slot& mine) {
    slots_[rank] = mine;
    barrier_.arrive_and_wait();  // every slot written
    if (std::string why = mismatch(slots_); !why.empty()) {
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
    sum_range(slots_, chunk_begin(rank), chunk_begin(rank + 1), slots_[rank].in.data);
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

  void all_reduce_sum(const tensor& t) override { group_->run(rank_, {collective::all_reduce_sum, t, {}, 0}); }
  void all_gather_last_dim(const tensor& in, const tensor& out) override {
    group_->run(rank_, {collective::all_gather_last_dim, in, out, 0});
  }
  void broadcast(const tensor& t, int root) override { group_->run(rank_, {collective::broadcast, t, {}, root}); }

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
