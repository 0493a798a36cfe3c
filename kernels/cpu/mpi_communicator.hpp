#pragma once
// The communicator of ranks that are processes started by `mpirun` (CPU shards across processes or nodes),
// and the MPI session a launcher needs around it: rank, size, local rank, and small exchanges of addresses,
// secrets and fingerprints at startup. <mpi.h> stays in mpi_communicator.cpp (library troupe_mpi).
//
// Gives the same bits as the thread communicator (kernels/cpu/thread_communicator.hpp): sums add every
// rank's values in rank order through the same code (kernels/cpu/collective_rules.hpp), and disagreeing
// calls throw the same std::invalid_argument on every rank.
//
// NOTE: when a rank dies (crash, kill, exit without MPI_Finalize), mpirun aborts the whole job within about
// a second (Open MPI 4.1: the other ranks are killed, mpirun exits non-zero); MPI errors abort the job too
// (MPI_ERRORS_ARE_FATAL). A rank that is alive but never enters a collective leaves the others waiting,
// spinning on a core: the engine's watchdog must catch that.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kernels/communicator.hpp"

namespace troupe {

// MPI for this process, from construction to destruction (MPI_Init_thread .. MPI_Finalize). One per
// process, made before and destroyed after every MPI communicator. Needs MPI_THREAD_SERIALIZED at least:
// collectives run on a shard's thread, not on the thread that initialized MPI (std::runtime_error when the
// library gives less; std::logic_error when MPI was initialized already).
class mpi_session {
public:
  mpi_session();
  ~mpi_session();
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;

  // This process's rank in the job (MPI_COMM_WORLD), and the number of processes.
  int rank() const { return rank_; }
  int size() const { return size_; }
  // This process's index among the job's processes on its node (to choose its GPU), and their number.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // True when the library allows MPI calls from several threads at once (MPI_THREAD_MULTIPLE, which Open
  // MPI 4.1 gives); otherwise only one thread at a time may call MPI.
  bool multiple_threads() const { return multiple_threads_; }

  // Replaces every rank's `bytes` with root's (sizes may differ before the call). Every rank calls it.
  void broadcast_bytes(std::vector<std::byte>& bytes, int root) const;
  // Every rank's `s`, element r being rank r's. Every rank calls it.
  std::vector<std::string> all_gather_string(const std::string& s) const;

  // A communicator over every process of the job (its own copy of MPI_COMM_WORLD, so its collectives never
  // interleave with the exchanges above). NOTE: it must be destroyed before this session.
  std::unique_ptr<communicator> make_world_communicator() const;

private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool multiple_threads_ = false;
};

} // namespace troupe
