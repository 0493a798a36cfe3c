#pragma once
// Where ranks that are threads of one process meet for a collective: each publishes the call it makes,
// all wait at one barrier, and all check every rank's call with collective_mismatch, so they reach the
// same verdict (and throw the same message together) without any further exchange. The thread
// communicator (kernels/cpu/) and the shared-GPU communicator (kernels/cuda/) are group_communicators:
// they share the meeting and differ only in how they move the data afterwards.
//
// NOTE: header-only (and the rules in their own library), since the CUDA library uses it and must not link
// troupe_kernels, which links the CUDA library.

#include <barrier>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/cpu/collective_rules.hpp"

namespace troupe {

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

  void all_reduce_sum(const tensor& t) final { run(make_collective_call(collective::all_reduce_sum, t, {}, 0)); }
  void all_gather_last_dim(const tensor& in, const tensor& out) final {
    run(make_collective_call(collective::all_gather_last_dim, in, out, 0));
  }
  void broadcast(const tensor& t, int root) final { run(make_collective_call(collective::broadcast, t, {}, root)); }

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
