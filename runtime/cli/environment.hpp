#pragma once
// The environment variables a vLLM deployment sets, and troupe's own, read through a getenv-like function
// (tests pass their own): the API key, the log level, the long --max-model-len override, the stats interval.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace troupe {

// Like std::getenv: the value, or null when unset.
using env_reader = std::function<const char*(const char*)>;

struct env_value {
  std::string name;   // the variable it came from
  std::string value;
};

// The API key when --api-key is absent: TROUPE_API_KEY, else VLLM_API_KEY (vLLM's); empty ones are unset.
std::optional<env_value> api_key_from_env(const env_reader& getenv);

// The log level: TROUPE_LOGGING_LEVEL, else VLLM_LOGGING_LEVEL (vLLM's), lower-cased; nullopt when neither
// is set. Throws user_error naming the variable for a value parse_log_level refuses.
std::optional<std::string> log_level_from_env(const env_reader& getenv);

// A level as spdlog names it ("trace", "debug", "info", "warning", "error", "critical", "off"), from any
// case of those or "warn" / "fatal" (Python's). Throws user_error naming `what` (the flag or variable).
std::string parse_log_level(std::string_view value, std::string_view what);

// vLLM's boolean variables: "1" or "true" in any case (and surrounding spaces) is true; anything else false.
bool env_flag(const env_reader& getenv, const char* name);

// Seconds between stats lines: VLLM_LOG_STATS_INTERVAL (vLLM's), else 10. Throws user_error for a value
// that is not a positive number.
double stats_interval_from_env(const env_reader& getenv);

} // namespace troupe
