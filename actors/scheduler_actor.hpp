#pragma once
// The scheduler actor: owns the engine_core, feeds step plans to the shards one step at a time, and
// routes each request's outputs to its sink. No busy waiting: a step starts when a submit arrives while
// idle, or when the previous step's results come back.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/protocol.hpp"

namespace troupe {

// What the scheduler does when the shards stop answering: a step of several shards that takes longer
// than `timeout` means a rank died or a collective stalled, and the shards cannot be trusted to run
// another step. The scheduler then fails every request with an error, reports unhealthy and calls
// `on_stall` with a sentence saying what happened (the engine ends the process with it).
struct stall_watch {
  std::chrono::milliseconds timeout{0};  // 0: wait as long as a step takes
  std::function<void(const std::string&)> on_stall;
};

// healthy: cleared when a shard is gone (the engine can no longer run steps); /health reads it.
scheduler_actor spawn_scheduler(caf::actor_system& sys, std::unique_ptr<engine_core> core, std::vector<shard_actor> shards,
                                std::shared_ptr<std::atomic<bool>> healthy, stall_watch watch = {});

} // namespace troupe
