#pragma once
// The scheduler actor: owns the engine_core, feeds step plans to the shards one step at a time, and
// routes each request's outputs to its sink. No busy waiting: a step starts when a submit arrives while
// idle, or when the previous step's results come back.

#include <atomic>
#include <memory>
#include <vector>

#include "actors/protocol.hpp"

namespace troupe {

// healthy: cleared when a shard is gone (the engine can no longer run steps); /health reads it.
scheduler_actor spawn_scheduler(caf::actor_system& sys, std::unique_ptr<engine_core> core, std::vector<shard_actor> shards,
                                std::shared_ptr<std::atomic<bool>> healthy);

} // namespace troupe
