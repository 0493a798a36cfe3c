#include "launch/distributed.hpp"

#include <cstdlib>

#include "kernels/cpu/mpi_communicator.hpp"
#include "launch/logging.hpp"

namespace troupe {

std::shared_ptr<mpi_session> mpi_if_launched() {
  static const std::shared_ptr<mpi_session> session = []() -> std::shared_ptr<mpi_session> {
    // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx launchers (srun, prterun) set PMIX_RANK.
    if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMIX_RANK")) return nullptr;
    return std::make_shared<mpi_session>();
  }();
  return session;
}

bool run_if_other_rank(engine_options& options) {
  options.mpi = mpi_if_launched();
  if (!options.mpi || options.mpi->rank() == 0) return false;
  // Logs name the rank: mpirun interleaves every rank's stderr.
  set_log_prefix("[rank " + std::to_string(options.mpi->rank()) + "] ");
  engine e(options);
  e.run_rank();
  return true;
}

} // namespace troupe
