#include "runtime/gateway/http_routes.hpp"

#include <array>

namespace troupe {
namespace {

struct route_entry {
  std::string_view path;
  route which;
  bool post;  // else GET (and HEAD)
  bool needs_key;
};

constexpr std::array<route_entry, 10> routes = {{
    {"/health", route::health, false, false},
    {"/version", route::version, false, false},
    {"/v1/models", route::models, false, true},
    {"/metrics", route::metrics, false, true},
    {"/dashboard", route::dashboard, false, false},
    {"/dashboard.json", route::dashboard_json, false, true},
    {"/tokenize", route::tokenize, true, true},
    {"/detokenize", route::detokenize, true, true},
    {"/v1/completions", route::completions, true, true},
    {"/v1/chat/completions", route::chat_completions, true, true},
}};

} // namespace

std::string_view target_path(std::string_view target) {
  // The absolute form ("http://host:8000/health", RFC 9112 3.2.2), which servers must accept too.
  for (std::string_view scheme : {"http://", "https://"})
    if (target.starts_with(scheme)) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? "/" : target.substr(slash);
    }
  return target.substr(0, target.find_first_of("?#"));
}

std::optional<std::string_view> query_parameter(std::string_view target, std::string_view name) {
  const size_t question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

route_match match_route(std::string_view method, std::string_view target, std::string_view root_path) {
  std::string_view path = target_path(target);
  while (root_path.ends_with('/')) root_path.remove_suffix(1);
  if (!root_path.empty() && path.starts_with(root_path) &&
      (path.size() == root_path.size() || path[root_path.size()] == '/'))
    path = path.size() == root_path.size() ? std::string_view("/") : path.substr(root_path.size());
  route_match m;
  for (const route_entry& r : routes) {
    if (r.path != path) continue;
    m.which = r.which;
    m.needs_key = r.needs_key;
    m.has_body = r.post;
    m.allow = r.post ? "POST" : "GET, HEAD";
    const bool ok = r.post ? method == "POST" : method == "GET" || method == "HEAD";
    m.status = ok ? 200 : 405;
    m.head = ok && method == "HEAD";
    return m;
  }
  return m;
}

} // namespace troupe
