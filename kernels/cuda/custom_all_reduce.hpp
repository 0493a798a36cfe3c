#pragma once
// The custom all-reduce: a one-shot all-reduce over GPU peer-to-peer memory, as vLLM's and TensorRT-LLM's
// custom all-reduce, around any communicator of GPU ranks (NCCL, or the shared-GPU communicator of ranks that
// share one GPU). NCCL's small-message latency (20-35 us on H100s for <= 32 KB, against 4-10 us for such a
// kernel) is most of a batch-1 decode step's all-reduce cost.
//
// Each rank owns one device buffer (signal flags, then buffer_bytes of data) that every other rank can reach:
// ranks that are threads of one process pass raw pointers (enabling peer access between their GPUs); ranks in
// other processes send CUDA IPC handles and open them (cudaIpcMemLazyEnablePeerAccess). An all_reduce_sum whose
// tensor fits the buffer (custom_all_reduce_takes) is ONE kernel on the backend's stream (custom_all_reduce.cu):
// copy in, meet every peer, sum every rank's buffer in rank order in f32, meet again. So every rank gets the
// thread communicator's bits — the same as the shared-GPU communicator, unlike NCCL's — and the call only
// enqueues: capturable() is the wrapped communicator's. Larger sums, all_gather_last_dim and broadcast go to
// the wrapped communicator.
//
// NOTE: like NCCL, each rank checks only its own arguments: ranks that disagree on a sum's shape may pick
// different paths or read past each other's data. The model passes the same shapes on every rank.
// NOTE: a rank that never reaches the kernel (dead, or stopped between collectives) would leave its peers
// spinning on the GPU: after options.timeout_s (60 s) the kernel prints which rank it waited for and traps, and
// the process then fails at its next CUDA call with "unspecified launch failure". The engine wraps its
// communicators after every rank has loaded its weights (make_custom_all_reduce is a rendezvous), so a slow
// load never counts against that deadline.
// NOTE: every rank's kernel must be resident at once: ranks sharing one GPU launch at most 16 blocks each
// (custom_all_reduce_max_blocks), and up to 8 ranks (kCustomAllReduceMaxRanks) leave most SMs free.
// NOTE: threads of one process sharing a GPU also meet on the host (launch_gate) before and after launching
// each kernel: cudaFree waits for the whole device, so a rank freeing memory (a GEMM's tuning scratch) while a
// peer's kernel spins for its own, not yet launched, would wait for good. Such ranks have no CUDA graphs (the
// shared-GPU communicator is not capturable), and all_reduce_sum throws std::invalid_argument when called on
// their capturing stream: a replayed graph passes no gate, and ranks whose streams share one of the GPU's work
// queues would wait for each other for good. Ranks on different GPUs
// or in different processes wait only for their own device (context) and need no gate.
// NOTE: no CUDA header here, like cuda_ops.hpp (a build without CUDA links stubs that return `wrapped`).

#include <barrier>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/custom_all_reduce_rules.hpp"
#include "kernels/ops.hpp"

namespace troupe {

// Every rank's string, element r being rank r's: a rendezvous each rank of the group enters with its own
// (mpi_session::all_gather_string across processes, an in_process_exchange within one).
using exchange_strings = std::function<std::vector<std::string>(const std::string& mine)>;

// Where ranks that are threads of one process swap strings, and the gate they pass before and after each
// kernel when they share a GPU.
class in_process_exchange {
public:
  explicit in_process_exchange(int size)
      : slots_(static_cast<size_t>(size)), barrier_(size), gate_(std::make_shared<std::barrier<>>(size)) {}
  // For make_custom_all_reduce's launch_gate (the communicators keep it: it outlives this exchange).
  std::shared_ptr<std::barrier<>> launch_gate() const { return gate_; }
  // Rank `rank`'s end of the rendezvous, for make_custom_all_reduce.
  exchange_strings for_rank(int rank) {
    return [this, rank](const std::string& mine) {
      slots_[static_cast<size_t>(rank)] = mine;
      barrier_.arrive_and_wait();  // every string written
      std::vector<std::string> all = slots_;
      barrier_.arrive_and_wait();  // every string read before any rank writes its next
      return all;
    };
  }

private:
  std::vector<std::string> slots_;
  std::barrier<> barrier_;
  std::shared_ptr<std::barrier<>> gate_;
};

// `wrapped` (this rank's communicator of a group of GPU ranks, on `cuda_backend`'s stream) with the custom
// kernel for the sums it takes; or `wrapped` itself when the kernel cannot serve the group: options.enabled
// false, a group of one or of more than kCustomAllReduceMaxRanks, or a pair of ranks that cannot reach each
// other's memory (other hosts, no peer access between their GPUs, an IPC handle that does not open). Then
// `why_not`, when given, says why (the same on every rank); it is left empty when the kernel is used.
// Every rank of the group calls it at once: it swaps records through `exchange` twice (no exchange when
// disabled or alone). Ranks that are threads of one process pass their in_process_exchange's launch_gate (it is
// used when two of them share a GPU). Throws std::invalid_argument for a backend that is not CUDA, std::runtime_error when
// CUDA fails to allocate or describe the buffer, and what `exchange` throws.
std::unique_ptr<communicator> make_custom_all_reduce(std::unique_ptr<communicator> wrapped, ops& cuda_backend,
                                                     const exchange_strings& exchange,
                                                     const custom_all_reduce_options& options,
                                                     std::string* why_not = nullptr,
                                                     std::shared_ptr<std::barrier<>> launch_gate = nullptr);

// The sums `comm` has run through the custom kernel (for checks that it, not the fallback, ran), or -1 when
// `comm` is not a custom all-reduce.
int64_t custom_all_reduce_calls(const communicator& comm);

} // namespace troupe
