#pragma once
// The inside of troupe::engine, for actors/*.cpp (the gateway and the client endpoint use its actors).

#include <memory>
#include <vector>

#include "actors/engine.hpp"
#include "actors/model_front.hpp"
#include "actors/protocol.hpp"
#include "actors/shard_actor.hpp"

namespace troupe {

struct engine::impl {
  explicit impl(const engine_options& options);
  ~impl();

  caf::actor_system_config system_config;
  caf::actor_system system;
  engine_options options;
  model_front front;  // names, tokenizer, chat templates, context length
  model_config config;  // front's, with the quantization resolved
  std::unique_ptr<engine_metrics> metrics;
  std::vector<shard_actor> shards;
  std::shared_ptr<shard_resources> rank_shard;  // a rank other than 0 of an mpirun job: its shard, run by run_rank
  scheduler_actor scheduler;
  std::vector<caf::actor> extra_actors;
  std::shared_ptr<std::atomic<bool>> healthy = std::make_shared<std::atomic<bool>>(true);  // endpoints and gateways, stopped with the engine
};

} // namespace troupe
