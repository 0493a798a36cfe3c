#include "actors/shard_actor.hpp"

#include <chrono>

#include <spdlog/spdlog.h>

namespace troupe {

step_result run_shard_step(shard_resources& res, const step_plan& plan) {
  const auto start = std::chrono::steady_clock::now();
  try {
    const int64_t collective_start = res.comm ? res.comm->busy_ns() : 0;
    if (res.before_step) res.before_step(plan);
    step_result r = res.runner->execute(plan);
    r.execute_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
    if (res.comm) r.collective_ns = res.comm->busy_ns() - collective_start;
    r.mask_ns = res.runner->last_mask_ns();
    r.mask_wait_ns = res.runner->last_mask_wait_ns();
    return r;
  } catch (const std::exception& e) {
    // A failed step fails its requests, not the engine. Only shard 0's reply reaches the scheduler: the log is where
    // another shard's failure shows.
    spdlog::error("shard: step {} failed: {}", plan.step, e.what());
    step_result r;
    r.step = plan.step;
    r.error = e.what();
    return r;
  }
}

namespace {

shard_actor::behavior_type shard_fn(shard_actor::pointer, std::shared_ptr<shard_resources> res) {
  return {
      [res](execute_atom, const plan_ptr& plan) -> step_result { return run_shard_step(*res, *plan); },
  };
}

} // namespace

shard_actor spawn_shard(caf::actor_system& sys, std::shared_ptr<shard_resources> resources) {
  return sys.spawn<caf::detached>(shard_fn, std::move(resources));
}

} // namespace troupe
