// The `troupe` program: generate | make-model (serve and bench come with the engine).

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "runtime/error.hpp"

int main(int argc, char** argv) {
  // stdout carries results (--json); logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("troupe"));
  spdlog::set_pattern("%^[%l]%$ %v");
  CLI::App app{"troupe: an LLM serving engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "troupe 0.1.0");
  troupe::register_generate(app);
  troupe::register_make_model(app);
  troupe::register_bench(app);
  troupe::register_serve(app);
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
