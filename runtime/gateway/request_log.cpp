#include "runtime/gateway/request_log.hpp"

#include <cstdio>

namespace troupe {

bool is_logged(route r) {
  switch (r) {
    case route::health:
    case route::version:
    case route::metrics:
    case route::dashboard:
    case route::dashboard_json: return false;
    default: return true;
  }
}

std::string request_log_line(const request_log_entry& e) {
  std::string line = e.client + " \"" + e.method + " " + e.path + " HTTP/" + std::to_string(e.version / 10) + "." +
                     std::to_string(e.version % 10) + "\" " + std::to_string(e.status);
  if (!e.id.empty()) line += " " + e.id + ":";
  if (e.prompt_tokens && e.completion_tokens)
    line += " " + std::to_string(*e.prompt_tokens) + " prompt + " + std::to_string(*e.completion_tokens) + " generated tokens,";
  if (!e.finish_reason.empty()) line += " " + e.finish_reason + ",";
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, " %.3f s", e.seconds);
  return line + seconds;
}

} // namespace troupe
