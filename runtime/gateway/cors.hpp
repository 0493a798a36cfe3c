#pragma once
// Cross-origin requests from browsers, as vLLM answers them (Starlette's CORSMiddleware with vLLM's
// --allowed-origins, --allowed-methods, --allowed-headers and --allow-credentials): a preflight (OPTIONS
// with Origin and Access-Control-Request-Method) is answered at once, on any path and before any API key
// check; every other response to a request with an Origin carries the Access-Control-* headers.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct cors_config {
  std::vector<std::string> allowed_origins{"*"};  // "*": any
  std::vector<std::string> allowed_methods{"*"};  // "*": DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT
  std::vector<std::string> allowed_headers{"*"};  // "*": whatever a preflight asks for
  bool allow_credentials = false;
};

// A list flag's value as vLLM takes it, a JSON list of strings ('["https://a.example", "https://b.example"]');
// anything that does not start with '[' is a list of one. Throws user_error naming `flag`.
std::vector<std::string> parse_cors_list(std::string_view value, std::string_view flag);

struct cors_header {
  std::string name;
  std::string value;
  bool operator==(const cors_header&) const = default;
};

struct preflight_answer {
  int status = 200;                  // 200, or 400 when the origin, method or headers are not allowed
  std::vector<cors_header> headers;
  std::string body;                  // "OK", or "Disallowed CORS origin, method, headers" (those that failed)
};

class cors_policy {
public:
  explicit cors_policy(cors_config config = {});

  // A preflight: an OPTIONS request with both headers (request_headers: Access-Control-Request-Headers,
  // nullopt when absent).
  static bool is_preflight(std::string_view method, bool has_origin, bool has_request_method);
  preflight_answer preflight(std::string_view origin, std::string_view request_method,
                             const std::optional<std::string>& request_headers) const;

  // The headers added to the response of any other request that sent an Origin (has_cookie: it sent a
  // Cookie, which makes "*" unusable).
  std::vector<cors_header> response_headers(std::string_view origin, bool has_cookie) const;

private:
  bool allowed_origin(std::string_view origin) const;

  cors_config config_;
  std::vector<std::string> methods_;
  std::vector<std::string> headers_lower_;  // the allowed headers and the CORS-safelisted ones, lower-cased
  bool all_origins_ = false;
  bool all_headers_ = false;
  std::vector<cors_header> preflight_headers_;
  std::vector<cors_header> simple_headers_;
};

} // namespace troupe
