#pragma once
// The inside of troupe::engine, for actors/*.cpp (the gateway and the client endpoint use its actors).

#include <memory>
#include <vector>

#include "actors/engine.hpp"
#include "actors/protocol.hpp"
#include "actors/shard_actor.hpp"
#include "runtime/chat/chat_template.hpp"

namespace troupe {

struct engine::impl {
  explicit impl(const engine_options& options);
  ~impl();

  caf::actor_system_config system_config;
  caf::actor_system system;
  engine_options options;
  model_config config;
  std::unique_ptr<tokenizer> tokenizer_;
  int64_t max_model_len = 0;
  std::vector<std::string> served_model_names;  // never empty
  std::unique_ptr<engine_metrics> metrics;
  // The chat template (and the tool-use variant some tokenizer_config.json files carry), with the
  // bos/eos tokens the template may use.
  std::optional<chat_template> chat, chat_tools;
  chat_template_options chat_options;
  std::vector<shard_actor> shards;
  std::shared_ptr<shard_resources> rank_shard;  // a rank other than 0 of an mpirun job: its shard, run by run_rank
  scheduler_actor scheduler;
  std::vector<caf::actor> extra_actors;
  std::shared_ptr<std::atomic<bool>> healthy = std::make_shared<std::atomic<bool>>(true);  // endpoints and gateways, stopped with the engine
};

} // namespace troupe
