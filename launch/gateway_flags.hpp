#pragma once
// The HTTP API's flags, shared by `troupe serve` and `troupe router` (the same API, keys, tenants and
// admission in front of one engine or of a fleet): where it listens, API keys and tenants, the queue cap,
// limits, CORS, request ids and the request log, under vLLM's names; the /metrics prefix and the dashboard's
// sample interval.

#include <string>

#include "actors/gateway.hpp"

namespace CLI {
class App;
}

namespace troupe {

struct gateway_flags {
  gateway_options options;
  std::string tenants_file;
  // The request log: on unless one of these turns it off (vLLM's flags; vLLM's own default is off).
  bool enable_log_requests = true;
  bool disable_log_requests = false;
  bool disable_access_log = false;
  std::string allowed_origins = R"(["*"])", allowed_methods = R"(["*"])", allowed_headers = R"(["*"])";
  std::string metrics_prefix = "troupe";  // the backend's metric set takes it (serve: the engine's; router: its own)
};

void add_gateway_flags(CLI::App* cmd, gateway_flags& f);

// The gateway's options from the flags and the environment: the API key (--api-key, else TROUPE_API_KEY or
// VLLM_API_KEY), the tenants file, CORS lists, the request log; checks --metrics-prefix. Throws user_error.
gateway_options resolve_gateway_flags(gateway_flags& f);

} // namespace troupe
