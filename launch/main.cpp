// The `troupe` program: generate | make-model (serve and bench come with the engine).

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "runtime/error.hpp"

namespace {

// vLLM's short flag -tp N (or -tp=N) as --tensor-parallel-size: CLI11 takes only one letter after a dash.
std::vector<std::string> with_long_flags(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args) {
    if (a == "-tp") a = "--tensor-parallel-size";
    else if (a.starts_with("-tp=")) a = "--tensor-parallel-size=" + a.substr(4);
  }
  return args;
}

} // namespace

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
    std::vector<std::string> args = with_long_flags(argc, argv);
    std::vector<char*> ptrs;
    for (auto& a : args) ptrs.push_back(a.data());
    app.parse(static_cast<int>(ptrs.size()), ptrs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const troupe::user_error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
