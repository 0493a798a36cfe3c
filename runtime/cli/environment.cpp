#include "runtime/cli/environment.hpp"

#include <array>
#include <cctype>
#include <cstdlib>

#include "runtime/error.hpp"

namespace troupe {
namespace {

std::string lower_trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<env_value> first_set(const env_reader& getenv, std::initializer_list<const char*> names) {
  for (const char* name : names)
    if (const char* v = getenv(name); v && *v) return env_value{name, v};
  return std::nullopt;
}

} // namespace

std::optional<env_value> api_key_from_env(const env_reader& getenv) {
  return first_set(getenv, {"TROUPE_API_KEY", "VLLM_API_KEY"});
}

std::string parse_log_level(std::string_view value, std::string_view what) {
  std::string level = lower_trimmed(value);
  if (level == "warn") level = "warning";
  if (level == "fatal") level = "critical";
  static constexpr std::array<std::string_view, 7> levels = {"trace", "debug", "info", "warning", "error", "critical", "off"};
  for (std::string_view l : levels)
    if (level == l) return level;
  throw user_error(std::string(what) + " must be trace, debug, info, warning, error, critical or off, got '" +
                   std::string(value) + "'");
}

std::optional<std::string> log_level_from_env(const env_reader& getenv) {
  const auto v = first_set(getenv, {"TROUPE_LOGGING_LEVEL", "VLLM_LOGGING_LEVEL"});
  if (!v) return std::nullopt;
  return parse_log_level(v->value, v->name);
}

bool env_flag(const env_reader& getenv, const char* name) {
  const char* v = getenv(name);
  if (!v) return false;
  const std::string s = lower_trimmed(v);
  return s == "1" || s == "true";
}

double stats_interval_from_env(const env_reader& getenv) {
  const char* v = getenv("VLLM_LOG_STATS_INTERVAL");
  if (!v || !*v) return 10.0;
  char* end = nullptr;
  const double seconds = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(seconds > 0))
    throw user_error(std::string("VLLM_LOG_STATS_INTERVAL must be a positive number of seconds, got '") + v + "'");
  return seconds;
}

} // namespace troupe
