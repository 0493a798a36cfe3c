#pragma once
// The engine's flags, under vLLM's names, shared by generate, bench and serve.

#include "actors/engine.hpp"

namespace CLI {
class App;
}

namespace troupe {

void add_engine_flags(CLI::App* cmd, engine_options& o);
void add_sampling_flags(CLI::App* cmd, sampling_params& p);
// vLLM's --generation-config and --override-generation-config (serve, generate, bench throughput).
void add_generation_config_flags(CLI::App* cmd, engine_options& o);

// Sets each sampling field of p whose flag `cmd` was not given to the model's default (e.front()'s, from
// --generation-config and its override), and logs the ones it set. without_max_tokens: max_new_tokens is
// left alone (bench's --output-len is the run's definition).
void take_generation_defaults(const CLI::App& cmd, const engine& e, sampling_params& p, bool without_max_tokens = false);

} // namespace troupe
