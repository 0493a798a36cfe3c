#include <CLI/CLI.hpp>
#include "launch/commands.hpp"
namespace troupe {
void register_generate(CLI::App& app) { app.add_subcommand("generate", "generate text"); }
void register_make_model(CLI::App& app) { app.add_subcommand("make-model", "write a random model"); }
}
