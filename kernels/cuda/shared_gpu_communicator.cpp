#include "kernels/cuda/shared_gpu_communicator.hpp"

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "kernels/collective_group.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"

namespace troupe {
namespace {

using cuda::check;

class shared_gpu_communicator final : public group_communicator {
public:
  shared_gpu_communicator(std::shared_ptr<collective_group> group, int rank, cuda_context& ctx)
      : group_communicator(std::move(group), rank), ctx_(ctx) {}

  bool capturable() const override { return false; }

private:
  // This rank's queued work finishes, so its tensors are final for the others to read.
  void before_meeting(const collective_call& mine) override {
    const char* what = collective_name(mine.op);
    make_current(ctx_);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(ctx_.stream, &capture), what);
    if (capture != cudaStreamCaptureStatusNone)
      throw std::logic_error(std::string(what) +
                             ": the shared-GPU communicator waits on the host, so it cannot run inside a CUDA graph "
                             "capture (its capturable() is false)");
    drain(what);
  }

  void drain(const char* what) { check(cudaStreamSynchronize(ctx_.stream), what); }

  // As the thread communicator: reduce-scatter then all-gather. Rank r sums chunk r of every rank's
  // tensor, in rank order, into its own chunk r (which no other rank reads meanwhile), then copies chunk c
  // from rank c. Each element is summed once, so every rank gets the same bits; no scratch memory.
  void sum(const std::vector<collective_call>& calls) override {
    const int size = this->size(), rank = this->rank();
    const int64_t n = calls[0].in.numel();
    auto chunk_begin = [&](int r) { return n * r / size; };
    std::vector<const void*> summands;
    for (const collective_call& c : calls) summands.push_back(c.in.data);
    cuda::launch_sum_in_order(summands, calls[rank].in.data, calls[0].in.type, chunk_begin(rank), chunk_begin(rank + 1),
                              ctx_.stream);
    drain("all_reduce_sum");
    group().wait();  // every chunk summed
    const size_t elem = size_in_bytes(calls[0].in.type);
    auto* dst = static_cast<std::byte*>(calls[rank].in.data);
    for (int c = 0; c < size; ++c) {
      if (c == rank || chunk_begin(c + 1) == chunk_begin(c)) continue;
      const auto* src = static_cast<const std::byte*>(calls[c].in.data);
      check(cudaMemcpyAsync(dst + chunk_begin(c) * elem, src + chunk_begin(c) * elem,
                            static_cast<size_t>(chunk_begin(c + 1) - chunk_begin(c)) * elem, cudaMemcpyDeviceToDevice,
                            ctx_.stream),
            "all_reduce_sum");
    }
    drain("all_reduce_sum");
    group().wait();  // no rank changes its chunk (or starts the next collective) while others copy it
  }

  // Rank c's [rows, cols] lands in columns [c * cols, (c + 1) * cols) of out: one strided copy per rank.
  void gather(const std::vector<collective_call>& calls) override {
    const tensor& in = calls[rank()].in;
    const size_t row_bytes = static_cast<size_t>(in.dim(-1)) * size_in_bytes(in.type);
    const size_t rows = static_cast<size_t>(in.numel() / in.dim(-1));
    auto* out = static_cast<std::byte*>(calls[rank()].out.data);
    const int size = this->size();
    for (int c = 0; c < size; ++c)
      check(cudaMemcpy2DAsync(out + c * row_bytes, row_bytes * size, calls[c].in.data, row_bytes, row_bytes, rows,
                              cudaMemcpyDeviceToDevice, ctx_.stream),
            "all_gather_last_dim");
    drain("all_gather_last_dim");
    group().wait();  // every rank has read every input
  }

  void copy_root(const std::vector<collective_call>& calls) override {
    const int root = calls[rank()].root;
    if (rank() != root) {
      check(cudaMemcpyAsync(calls[rank()].in.data, calls[root].in.data, calls[root].in.num_bytes(),
                            cudaMemcpyDeviceToDevice, ctx_.stream),
            "broadcast");
      drain("broadcast");
    }
    group().wait();  // the root's tensor stays unchanged until every rank has copied it
  }

  cuda_context& ctx_;
};

} // namespace

std::vector<std::unique_ptr<communicator>> make_shared_gpu_communicators(const std::vector<ops*>& backends) {
  const int size = static_cast<int>(backends.size());
  if (size < 1 || size > cuda::kMaxSummands)
    throw std::invalid_argument("a shared-GPU communicator group needs 1 to " + std::to_string(cuda::kMaxSummands) +
                                " ranks, not " + std::to_string(size));
  std::vector<cuda_context*> contexts;
  for (int r = 0; r < size; ++r) {
    auto* gpu = dynamic_cast<cuda_ops*>(backends[r]);
    if (!gpu)
      throw std::invalid_argument("the shared-GPU communicator needs a cuda backend for every rank; rank " +
                                  std::to_string(r) + " has " + (backends[r] ? "'" + backends[r]->name() + "'" : "none"));
    contexts.push_back(&gpu->context());
    if (contexts[r]->device != contexts[0]->device)
      throw std::invalid_argument("the shared-GPU communicator's ranks share one GPU, but rank 0 is on device " +
                                  std::to_string(contexts[0]->device) + " and rank " + std::to_string(r) +
                                  " on device " + std::to_string(contexts[r]->device) + " (use NCCL across GPUs)");
  }
  auto group = std::make_shared<collective_group>(size);
  std::vector<std::unique_ptr<communicator>> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(std::make_unique<shared_gpu_communicator>(group, r, *contexts[r]));
  return ranks;
}

} // namespace troupe
