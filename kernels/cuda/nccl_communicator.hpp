#pragma once
// The communicator of ranks on different GPUs, through NCCL (NVLink, PCIe, or the network between nodes).
// Rank 0 makes a unique id, the launcher hands it to every rank (MPI_Bcast of its bytes across nodes, a
// copy within one process), and each rank makes its communicator from it with its own CUDA backend,
// whose stream every collective is enqueued on: no host wait, so a CUDA graph may capture a decode step
// with the collectives inside (capturable() is true).
//
// How it differs from the thread communicator, which the interface describes:
// - Sums: NCCL picks the reduction order (ring, tree, NVLS, by message size and topology), so results
//   differ in the last bits from the rank-order sum and may change with the size, the NCCL version or
//   NCCL_ALGO; 16-bit types are rounded at each step, not once. Ring and tree give every rank the same bits.
// - Shape checks are local: each rank checks its own arguments (dtype, the gather's output shape, the
//   root) and throws std::invalid_argument, but ranks that disagree with each other cannot be caught
//   without a host round trip per collective, so they hang or read the wrong number of bytes. The model
//   passes the same shapes on every rank because every rank runs the same step plan.
// - Failures: an NCCL call that fails throws std::runtime_error, and the communicator's destruction
//   then aborts (ncclCommAbort) instead of waiting for peers that may be gone. A peer that dies while a
//   collective runs shows up only asynchronously: nccl_async_error() below, for a watchdog.
//
// NOTE: no NCCL or CUDA header here, so backend-neutral code may include this (a build without NCCL or
// without CUDA still links these functions; they then throw user_error).
// NOTE: a CUDA graph that captured a collective holds this communicator's NCCL resources and staging
// buffer: release the graph before the communicator is destroyed, or the destruction waits for good
// (ncclCommDestroy polls until every graph that references the communicator is gone; a model releases
// its decode graphs when it goes). Run each
// collective shape once before capturing it: NCCL connects to peers lazily, and the all-gather's staging
// buffer can only grow outside a capture.

#include <array>
#include <memory>
#include <string>

#include "kernels/communicator.hpp"
#include "kernels/ops.hpp"

namespace troupe {

// The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES), opaque: what rank 0 sends to every other rank.
struct nccl_unique_id {
  std::array<char, 128> bytes{};
};

// Whether this build links NCCL.
bool nccl_available();

// A new unique id for one communicator group, made on rank 0 (it opens NCCL's bootstrap socket there).
// Throws std::runtime_error when NCCL fails, user_error when this build lacks NCCL.
nccl_unique_id make_nccl_unique_id();

// Rank `rank` of the group of `size` ranks that `id` names, enqueueing on `cuda_backend`'s stream (one
// GPU per rank). Blocks until every rank of the group has called it. Throws std::invalid_argument for a
// rank outside [0, size) or a backend that is not CUDA, std::runtime_error when NCCL fails (NCCL_DEBUG=INFO
// says why), user_error when this build lacks NCCL. The communicator must not outlive the backend.
std::unique_ptr<communicator> make_nccl_communicator(const nccl_unique_id& id, int rank, int size, ops& cuda_backend);

// The error NCCL has met in the background on `comm` (a peer that died, a broken connection), "" when
// none. Safe to call from another thread while `comm` is in use, so a watchdog may poll it (every second
// or so) while a step runs, and on an error, or a step that stalls past its timeout, report the rank and
// end the process: a collective whose peer is gone never completes on its own. Once it has returned an
// error, destroying `comm` aborts it. Throws std::invalid_argument when `comm` is not an NCCL communicator.
std::string nccl_async_error(communicator& comm);

} // namespace troupe
