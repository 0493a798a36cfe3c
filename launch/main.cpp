// The `troupe` program: serve | router | plan | generate | bench | make-model.
//
// Every command-line error is one log line and exit code 1: a flag the command does not know is refused
// by name with the closest one it does (runtime/cli/command_line.hpp); `troupe serve` also takes every
// flag of `vllm serve`, each working, accepted with a line saying why it has no effect, or refused saying
// why (runtime/cli/vllm_flags.hpp).

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "launch/commands.hpp"
#include "launch/logging.hpp"
#include "runtime/cli/command_line.hpp"
#include "runtime/cli/environment.hpp"
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

// The names a command takes ("--port", "-q"), its parents' included (their flags fall through to it).
std::vector<std::string> flag_names(const CLI::App* cmd) {
  std::vector<std::string> names;
  for (; cmd; cmd = cmd->get_parent())
    for (const CLI::Option* opt : cmd->get_options()) {
      for (const std::string& n : opt->get_lnames()) names.push_back("--" + n);
      for (const std::string& n : opt->get_snames()) names.push_back("-" + n);
    }
  return names;
}

// Checks the flags of the command the arguments name (args[0] is the program) and returns the arguments
// the parser gets; logs one line per vLLM flag that has no effect.
std::vector<std::string> args_for_parser(CLI::App& app, const std::vector<std::string>& args) {
  CLI::App* cmd = &app;
  std::string command = "troupe";
  size_t i = 1;
  for (; i < args.size(); ++i) {
    CLI::App* sub = nullptr;
    for (CLI::App* s : cmd->get_subcommands([](CLI::App*) { return true; }))
      if (s->get_name() == args[i]) sub = s;
    if (!sub) break;
    cmd = sub;
    command += " " + args[i];
  }
  if (cmd == &app) return args;  // no command: the parser says which it takes
  const std::vector<std::string> known = flag_names(cmd);
  const std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  troupe::checked_args checked = troupe::check_flags(rest, known, command == "troupe serve", command);
  // --log-level applies to these notes too, which come before the parser sets it.
  for (size_t a = 0; a < checked.args.size(); ++a) {
    const std::string& arg = checked.args[a];
    if (arg.starts_with("--log-level=")) troupe::set_log_level(troupe::parse_log_level(arg.substr(12), "--log-level"));
    if (arg == "--log-level" && a + 1 < checked.args.size())
      troupe::set_log_level(troupe::parse_log_level(checked.args[a + 1], "--log-level"));
  }
  for (const std::string& note : checked.notes) spdlog::warn("{}", note);
  std::vector<std::string> out(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(i));
  out.insert(out.end(), checked.args.begin(), checked.args.end());
  return out;
}

// CLI11's messages may span lines; a command-line error is one.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

} // namespace

int main(int argc, char** argv) {
  try {
    troupe::init_logging();
  } catch (const troupe::user_error& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  CLI::App app{"troupe: an LLM serving engine"};
  app.require_subcommand(1);
  app.fallthrough();  // --log-level after the command's name
  app.set_version_flag("--version", "troupe 0.1.0");
  app.add_option_function<std::string>(
      "--log-level", [](const std::string& v) { troupe::set_log_level(troupe::parse_log_level(v, "--log-level")); },
      "trace, debug, info, warning, error, critical or off (default: TROUPE_LOGGING_LEVEL, else VLLM_LOGGING_LEVEL, "
      "else info)");
  troupe::register_generate(app);
  troupe::register_make_model(app);
  troupe::register_bench(app);
  troupe::register_serve(app);
  troupe::register_router(app);
  troupe::register_plan(app);
  try {
    std::vector<std::string> args = args_for_parser(app, with_long_flags(argc, argv));
    std::vector<char*> ptrs;
    for (auto& a : args) ptrs.push_back(a.data());
    app.parse(static_cast<int>(ptrs.size()), ptrs.data());
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    spdlog::error("{}", one_line(e.what()));
    return 1;
  } catch (const troupe::user_error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {  // a device's or the system's failure (CUDA out of memory): one line, exit 1
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
