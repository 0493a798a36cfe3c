#pragma once
// A shard actor runs step plans on one device. It is detached (its own thread, bound to its device),
// so a forward pass never blocks the actors that schedule or serve HTTP.

#include <functional>
#include <memory>

#include "actors/protocol.hpp"
#include "kernels/model_runner.hpp"
#include "kernels/timed_communicator.hpp"

namespace troupe {

// What a shard owns: the backend, the model on it, and the runner that keeps per-sequence state.
struct shard_resources {
  std::unique_ptr<ops> backend;
  std::unique_ptr<timed_communicator> comm;  // tensor parallelism: this rank's end of the group; outlives net
  std::unique_ptr<model> net;  // null for the null backend
  std::unique_ptr<model_runner> runner;
  // Called with each plan before the runner runs it (rank 0 of an mpirun job sends it to the other ranks).
  std::function<void(const step_plan&)> before_step;
};

// What a shard does with a plan: runs it, timed; a failure comes back as the result's error (the step's requests fail,
// the engine goes on). The shard actor calls it for each plan; the scheduler calls it itself for a lone shard.
step_result run_shard_step(shard_resources& res, const step_plan& plan);

shard_actor spawn_shard(caf::actor_system& sys, std::shared_ptr<shard_resources> resources);

} // namespace troupe
