#pragma once
// The scheduler actor: owns the engine_core, feeds step plans to the shards one step at a time, and
// routes each request's outputs to its sink. No busy waiting: a step starts when a submit arrives while
// idle, or when the previous step's results come back.

#include <memory>
#include <vector>

#include "actors/protocol.hpp"

namespace troupe {

scheduler_actor spawn_scheduler(caf::actor_system& sys, std::unique_ptr<engine_core> core, std::vector<shard_actor> shards);

} // namespace troupe
