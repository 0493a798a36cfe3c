#pragma once
// The communicator of ranks that are threads of one process: CPU shards in one process, or several shards
// sharing one GPU. Ranks meet at a barrier and read each other's buffers directly (host memory).

#include <memory>
#include <vector>

#include "kernels/communicator.hpp"

namespace troupe {

// One communicator per rank of a new group of `size` ranks, element r being rank r; hand each to the thread
// that runs that rank. Sums run in rank order (rank 0 + rank 1 + ...), so every rank gets the same bits and
// a rerun gets them again. Needs size >= 1 (std::invalid_argument otherwise).
// NOTE: a rank that never enters a collective leaves the others waiting (no timeout yet).
std::vector<std::unique_ptr<communicator>> make_thread_communicators(int size);

} // namespace troupe
