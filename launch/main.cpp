// The `troupe` program: generate | make-model (serve and bench come with the engine).

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "runtime/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"troupe: an LLM serving engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "troupe 0.1.0");
  troupe::register_generate(app);
  troupe::register_make_model(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const troupe::user_error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
