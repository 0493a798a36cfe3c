#pragma once
// Starting under mpirun: `mpirun -np N troupe serve --tensor-parallel-size N ...` runs one process per
// shard. MPI gives each its rank and node-local rank; rank 0 runs everything a single process runs (the
// gateway, the scheduler, its own shard) and sends each step's plan to the other ranks, which build only
// their shard and run the plans they receive (engine::run_rank) until rank 0 stops.

#include <memory>

#include "actors/engine.hpp"

namespace troupe {

// The MPI session when mpirun (Open MPI, or a PMIx launcher) started this process, else null. Made once
// per process; later calls return the same session.
std::shared_ptr<mpi_session> mpi_if_launched();

// On a rank other than 0: builds this rank's shard with `options` and runs the steps rank 0 sends, until
// rank 0 stops; returns true (the command then returns without serving or printing anything). On rank 0,
// or outside mpirun, returns false at once. Sets options.mpi either way.
bool run_if_other_rank(engine_options& options);

} // namespace troupe
