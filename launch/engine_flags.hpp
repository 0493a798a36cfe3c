#pragma once
// The engine's flags, under vLLM's names, shared by generate, bench and serve.

#include "actors/engine.hpp"

namespace CLI {
class App;
}

namespace troupe {

void add_engine_flags(CLI::App* cmd, engine_options& o);
void add_sampling_flags(CLI::App* cmd, sampling_params& p);

} // namespace troupe
