#include "launch/logging.hpp"

#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "runtime/cli/environment.hpp"

namespace troupe {

void init_logging() {
  spdlog::set_default_logger(spdlog::stderr_color_mt("troupe"));
  set_log_prefix("");
  if (const auto level = log_level_from_env([](const char* name) { return std::getenv(name); })) set_log_level(*level);
}

void set_log_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

void set_log_prefix(const std::string& prefix) { spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^[%l]%$ " + prefix + "%v"); }

} // namespace troupe
