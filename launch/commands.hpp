#pragma once
// Each subcommand registers its flags and callback on the CLI11 app.

namespace CLI {
class App;
}

namespace troupe {

void register_generate(CLI::App& app);
void register_make_model(CLI::App& app);
void register_bench(CLI::App& app);
void register_bench_serve(CLI::App& bench);  // under `bench`, by register_bench
void register_serve(CLI::App& app);
void register_router(CLI::App& app);
void register_plan(CLI::App& app);

} // namespace troupe
