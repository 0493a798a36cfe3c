#include "runtime/gateway/cors.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

bool contains(const std::vector<std::string>& list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

} // namespace

std::vector<std::string> parse_cors_list(std::string_view value, std::string_view flag) {
  if (!value.starts_with("[")) return {std::string(value)};
  const auto j = nlohmann::json::parse(value, nullptr, false);
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& item : j) {
      if (!item.is_string()) break;
      out.push_back(item.get<std::string>());
    }
  if (!j.is_array() || out.size() != j.size())
    throw user_error(std::string(flag) + " takes a JSON list of strings, as '[\"https://example.com\"]', got '" +
                     std::string(value) + "'");
  return out;
}

cors_policy::cors_policy(cors_config config) : config_(std::move(config)) {
  // Starlette's CORSMiddleware.__init__, with max_age 600 and no exposed headers (vLLM sets neither).
  methods_ = contains(config_.allowed_methods, "*")
                 ? std::vector<std::string>{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
                 : config_.allowed_methods;
  all_origins_ = contains(config_.allowed_origins, "*");
  all_headers_ = contains(config_.allowed_headers, "*");
  const bool explicit_origin = !all_origins_ || config_.allow_credentials;
  if (all_origins_) simple_headers_.push_back({"Access-Control-Allow-Origin", "*"});
  if (config_.allow_credentials) simple_headers_.push_back({"Access-Control-Allow-Credentials", "true"});
  if (explicit_origin) preflight_headers_.push_back({"Vary", "Origin"});
  else preflight_headers_.push_back({"Access-Control-Allow-Origin", "*"});
  preflight_headers_.push_back({"Access-Control-Allow-Methods", joined(methods_)});
  preflight_headers_.push_back({"Access-Control-Max-Age", "600"});
  std::set<std::string> headers = {"Accept", "Accept-Language", "Content-Language", "Content-Type"};
  headers.insert(config_.allowed_headers.begin(), config_.allowed_headers.end());
  const std::vector<std::string> sorted(headers.begin(), headers.end());
  if (!all_headers_) preflight_headers_.push_back({"Access-Control-Allow-Headers", joined(sorted)});
  if (config_.allow_credentials) preflight_headers_.push_back({"Access-Control-Allow-Credentials", "true"});
  for (const std::string& h : sorted) headers_lower_.push_back(lower(h));
}

bool cors_policy::is_preflight(std::string_view method, bool has_origin, bool has_request_method) {
  return method == "OPTIONS" && has_origin && has_request_method;
}

bool cors_policy::allowed_origin(std::string_view origin) const {
  return all_origins_ || contains(config_.allowed_origins, origin);
}

preflight_answer cors_policy::preflight(std::string_view origin, std::string_view request_method,
                                        const std::optional<std::string>& request_headers) const {
  preflight_answer a;
  a.headers = preflight_headers_;
  std::vector<std::string> failures;
  if (allowed_origin(origin)) {
    if (!all_origins_ || config_.allow_credentials) a.headers.push_back({"Access-Control-Allow-Origin", std::string(origin)});
  } else {
    failures.push_back("origin");
  }
  if (!contains(methods_, request_method)) failures.push_back("method");
  if (all_headers_ && request_headers) {
    // Any header is allowed: the answer mirrors those asked for.
    a.headers.push_back({"Access-Control-Allow-Headers", *request_headers});
  } else if (request_headers) {
    std::string_view rest = *request_headers;
    for (;;) {
      const size_t comma = rest.find(',');
      if (!contains(headers_lower_, trimmed(lower(rest.substr(0, comma))))) {
        failures.push_back("headers");
        break;
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (failures.empty()) {
    a.body = "OK";
  } else {
    a.status = 400;
    a.body = "Disallowed CORS " + joined(failures);
  }
  return a;
}

std::vector<cors_header> cors_policy::response_headers(std::string_view origin, bool has_cookie) const {
  std::vector<cors_header> h = simple_headers_;
  // A request with cookies, or an origin named in the list, gets its own origin back (and Vary: Origin).
  if ((all_origins_ && has_cookie) || (!all_origins_ && allowed_origin(origin))) {
    std::erase_if(h, [](const cors_header& x) { return x.name == "Access-Control-Allow-Origin"; });
    h.push_back({"Access-Control-Allow-Origin", std::string(origin)});
    h.push_back({"Vary", "Origin"});
  }
  return h;
}

} // namespace troupe
