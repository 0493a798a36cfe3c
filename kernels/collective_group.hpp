#pragma once
// Where ranks that are threads of one process meet for a collective: each publishes the call it makes,
// all wait at one barrier, and all check every rank's call the same way, so they reach the same verdict
// (and throw the same message together) without any further exchange. The thread communicator
// (kernels/cpu/) and the shared-GPU communicator (kernels/cuda/) are group_communicators below: they
// share the meeting and differ only in how they move the data afterwards.
//
// NOTE: header-only, since the CUDA library uses it and must not link troupe_kernels (which links it).

#include <barrier>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/tensor.hpp"

namespace troupe {

enum class collective { all_reduce_sum, all_gather_last_dim, broadcast };

inline const char* collective_name(collective c) {
  switch (c) {
    case collective::all_reduce_sum: return "all_reduce_sum";
    case collective::all_gather_last_dim: return "all_gather_last_dim";
    case collective::broadcast: return "broadcast";
  }
  return "?";
}

// What a rank brings to a collective.
struct collective_call {
  collective op{};
  tensor in;   // the tensor reduced, broadcast, or gathered from
  tensor out;  // all_gather_last_dim's output
  int root = 0;
};

namespace detail {

inline std::string describe(const tensor& t) { return t.shape_string() + " " + std::string(troupe::name(t.type)); }

inline bool same_layout(const tensor& a, const tensor& b) {
  if (a.type != b.type || a.rank != b.rank) return false;
  for (int i = 0; i < a.rank; ++i)
    if (a.dims[i] != b.dims[i]) return false;
  return true;
}

} // namespace detail

// The reason rank `rank`'s call is wrong in a group of `size` whatever the other ranks pass, or "": a
// sum of a dtype it cannot add, a root outside the group, a gather's output of the wrong shape or
// overlapping its input (pointers compared in one address space: host, or one process's devices).
inline std::string collective_call_error(const collective_call& call, int rank, int size) {
  using detail::describe;
  const std::string what = collective_name(call.op);
  switch (call.op) {
    case collective::all_reduce_sum:
      if (call.in.type != dtype::f32 && call.in.type != dtype::bf16 && call.in.type != dtype::f16)
        return what + " sums F32, BF16 or F16, not " + std::string(troupe::name(call.in.type));
      break;
    case collective::broadcast:
      if (call.root < 0 || call.root >= size)
        return what + ": root " + std::to_string(call.root) + " is not a rank of a group of " + std::to_string(size);
      break;
    case collective::all_gather_last_dim: {
      tensor expected = call.in;
      if (expected.rank > 0) expected.dims[expected.rank - 1] *= size;
      if (call.in.rank == 0 || !detail::same_layout(call.out, expected))
        return what + ": rank " + std::to_string(rank) + " gathers " + describe(call.in) + " into " + describe(call.out) +
               "; the output must be " + describe(expected) + " (the last dimension times " + std::to_string(size) + ")";
      const auto* in = static_cast<const std::byte*>(call.in.data);
      const auto* out = static_cast<const std::byte*>(call.out.data);
      if (call.in.numel() > 0 && in < out + call.out.num_bytes() && out < in + call.in.num_bytes())
        return what + ": rank " + std::to_string(rank) + "'s output overlaps its input";
      break;
    }
  }
  return "";
}

// The reason every rank throws, or "" when the calls (element r: rank r's) agree and each is right.
inline std::string collective_mismatch(const std::vector<collective_call>& calls) {
  using detail::describe;
  const collective_call& first = calls[0];
  const std::string what = collective_name(first.op);
  for (size_t r = 1; r < calls.size(); ++r) {
    const collective_call& s = calls[r];
    const std::string at = "rank " + std::to_string(r);
    if (s.op != first.op)
      return what + " on rank 0 met " + collective_name(s.op) + " on " + at + ": every rank must call the same collective";
    if (!detail::same_layout(s.in, first.in))
      return what + ": rank 0 has " + describe(first.in) + " but " + at + " has " + describe(s.in) +
             ": every rank must pass the same shape and dtype";
    if (s.root != first.root)
      return what + ": rank 0 names root " + std::to_string(first.root) + " but " + at + " names root " +
             std::to_string(s.root);
  }
  const int size = static_cast<int>(calls.size());
  for (int r = 0; r < size; ++r)
    if (std::string why = collective_call_error(calls[r], r, size); !why.empty()) return why;
  return "";
}

// The ranks of one group, each on its own thread.
//
// NOTE: a collective is meet() followed by the data movement and at least one wait(); the calls meet()
// returns stay unchanged until every rank has passed that collective's last wait(), since no rank
// publishes its next call before then.
class collective_group {
public:
  explicit collective_group(int size) : calls_(size), barrier_(size) {}

  int size() const { return static_cast<int>(calls_.size()); }

  // Publishes `mine` as rank `rank`'s call and waits for every rank's; returns all of them (element r:
  // rank r's). Throws std::invalid_argument, on every rank, when they disagree or the shapes do not fit,
  // once every rank has read the calls (so the group stays usable).
  const std::vector<collective_call>& meet(int rank, const collective_call& mine) {
    calls_[rank] = mine;
    barrier_.arrive_and_wait();  // every call written
    if (std::string why = collective_mismatch(calls_); !why.empty()) {
      barrier_.arrive_and_wait();  // every rank has read the calls before any writes its next one
      throw std::invalid_argument(why);
    }
    return calls_;
  }

  // Returns once every rank has reached the same wait().
  void wait() { barrier_.arrive_and_wait(); }

private:
  std::vector<collective_call> calls_;
  std::barrier<> barrier_;
};

// A communicator whose ranks meet in a collective_group; a subclass moves the data once they agree.
class group_communicator : public communicator {
public:
  group_communicator(std::shared_ptr<collective_group> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  void all_reduce_sum(const tensor& t) final { run({collective::all_reduce_sum, t, {}, 0}); }
  void all_gather_last_dim(const tensor& in, const tensor& out) final {
    run({collective::all_gather_last_dim, in, out, 0});
  }
  void broadcast(const tensor& t, int root) final { run({collective::broadcast, t, {}, root}); }

protected:
  // Runs before this rank meets the others (the GPU's: its own queued work finishes, so they may read it).
  virtual void before_meeting(const collective_call& mine) { (void)mine; }
  // Each moves the data of every rank's agreed call (element r: rank r's; none empty) and returns after a
  // group().wait() that no rank passes while another still reads this rank's tensors.
  virtual void sum(const std::vector<collective_call>& calls) = 0;
  virtual void gather(const std::vector<collective_call>& calls) = 0;
  virtual void copy_root(const std::vector<collective_call>& calls) = 0;

  collective_group& group() { return *group_; }

private:
  void run(const collective_call& mine) {
    before_meeting(mine);
    const std::vector<collective_call>& calls = group_->meet(rank_, mine);
    if (mine.in.numel() == 0) return group_->wait();
    switch (mine.op) {
      case collective::all_reduce_sum:
        if (size() == 1) return group_->wait();  // the sum of one tensor is itself, bit for bit
        return sum(calls);
      case collective::all_gather_last_dim: return gather(calls);
      case collective::broadcast: return copy_root(calls);
    }
  }

  std::shared_ptr<collective_group> group_;
  int rank_;
};

} // namespace troupe
