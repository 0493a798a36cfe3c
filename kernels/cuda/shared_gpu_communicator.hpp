#pragma once
// The communicator of ranks that are threads of one process sharing one GPU, each with its own CUDA
// backend (and so its own stream): the whole sharded CUDA forward on one device, where NCCL refuses two
// ranks on one GPU. It gives the thread communicator's bits (kernels/cpu/thread_communicator.hpp): sums
// in rank order (rank 0 + rank 1 + ...), 16-bit types accumulated in f32 and rounded once, the same bits
// on every rank, so a GPU check can compare the two.
//
// How: each rank waits for its own stream, the ranks meet at a barrier (and agree on shapes, throwing
// std::invalid_argument on every rank as the thread communicator does), then each enqueues kernels and
// copies that read the other ranks' device buffers directly, waits for them, and meets the others again
// before anyone may change a buffer another still reads.
//
// NOTE: the host waits inside every collective, so capturable() is false: a call inside a CUDA graph
// capture throws std::logic_error. A rank that never enters a collective, or whose CUDA call fails inside
// one, leaves the others waiting (no timeout yet, as for the thread communicator).
// NOTE: no CUDA header here, like cuda_ops.hpp.

#include <memory>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/ops.hpp"

namespace troupe {

// One communicator per rank of a new group, element r for rank r, which enqueues on backends[r]'s stream;
// hand each to the thread that runs that rank. Needs 1 to 16 CUDA backends (cuda_ops) on one device;
// throws std::invalid_argument otherwise.
std::vector<std::unique_ptr<communicator>> make_shared_gpu_communicators(const std::vector<ops*>& backends);

} // namespace troupe
