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

struct shard_resources;

// healthy: cleared when a shard is gone (the engine can no longer run steps); /health reads it.
// A model of one shard in this process comes as `lone` (no shard actors): the scheduler runs each step on it itself,
// in its own thread. A shard actor's two messages a step cost two thread wake-ups, 57 µs a step on the build machine
// (a throwaway build's timestamps, 2026-12-07: 21.5 µs there, 35.1 back), 90 µs of an H100's 3.85 ms one-request FP8
// step, with the GPU idle through both. The step still goes as a message, to itself, so that submits and aborts
// interleave with steps; but a submit that comes during a step waits for its end, so a client awaiting each submit's
// reply gets one request into each step. The engine takes this only where its options say (the offline engine,
// whose generate sends every prompt at once); `serve` keeps the shard actor (engine_options::steps_in_scheduler).
scheduler_actor spawn_scheduler(caf::actor_system& sys, std::unique_ptr<engine_core> core, std::vector<shard_actor> shards,
                                std::shared_ptr<std::atomic<bool>> healthy, stall_watch watch = {},
                                std::shared_ptr<shard_resources> lone = nullptr);

} // namespace troupe
