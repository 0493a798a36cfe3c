#pragma once
// The gateway's routes as a table: which paths exist, which methods each takes (HEAD wherever GET is),
// which need an API key when keys are configured, and which parse their body off the I/O threads.
// A request for a known path with another method is a 405 with the path's Allow list.
//
// Which endpoints --api-key protects (decided here, documented in README): every one except /health,
// /version and the static /dashboard page. vLLM protects only /v1/*; troupe also protects /tokenize and
// /detokenize (their work grows with the body: an open one lets anyone burn the server's CPU), /metrics
// and /dashboard.json (they show load, traffic and tenant names). /health and /version stay open for
// load balancers and orchestrators, which probe without credentials.

#include <optional>
#include <string>
#include <string_view>

namespace troupe {

enum class route {
  none,  // no such path
  health,
  version,
  models,
  metrics,
  dashboard,
  dashboard_json,
  tokenize,
  detokenize,
  completions,
  chat_completions,
};

struct route_match {
  route which = route::none;
  int status = 404;        // 200: serve it; 404: no such path; 405: the path takes other methods
  std::string allow;       // the path's methods for the Allow header ("GET, HEAD"); empty for 404
  bool head = false;       // a HEAD: answer as GET, headers only
  bool needs_key = false;  // refused without a valid key when keys are configured
  bool has_body = false;   // a POST route: its body is parsed, off the I/O threads
};

// The route for a method ("GET", as sent) and a request target (its query string is ignored). root_path
// (vLLM's --root-path, "/api"): the prefix a path-routing proxy may leave on the path; a path under it is
// served as the path without it, and a path without it as itself (the proxy may strip it).
route_match match_route(std::string_view method, std::string_view target, std::string_view root_path = {});

// The value of a query parameter of a request target ("/dashboard.json?since=5" -> "5" for "since"), as
// sent (not percent-decoded); empty when absent. "?a" has a, with the value "".
std::optional<std::string_view> query_parameter(std::string_view target, std::string_view name);

// The path of a request target, origin form ("/v1/models?x") or absolute ("http://host/v1/models"): up to '?' or '#'.
std::string_view target_path(std::string_view target);

} // namespace troupe
