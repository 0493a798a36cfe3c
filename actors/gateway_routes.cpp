// What each path of the gateway answers: refusals decided from the request head (no such path, wrong
// method, no key, still loading, draining), the small GET endpoints answered on the I/O thread, and the
// bodies parsed on the parse pool.

#include <charconv>
#include <chrono>

#include "actors/dashboard.hpp"
#include "actors/gateway_session.hpp"
#include "runtime/gateway/gateway_metrics.hpp"

namespace troupe {

std::string http_session::api_key() const {
  const auto& h = parser_ ? parser_->get().base() : req_.base();
  const auto it = h.find(http::field::authorization);
  if (it == h.end()) return {};
  const std::string_view value(it->value().data(), it->value().size());
  return value.starts_with("Bearer ") ? std::string(value.substr(7)) : std::string();
}

// Answers from the head alone when the request cannot be served; true when it has. A body that follows
// is then not read, and the connection closes after the answer.
bool http_session::refuse_at_head() {
  const auto answer = [&](const api_error& e, std::vector<header_field> extra = {}) {
    keep_alive_ = keep_alive_ && parser_->is_done();
    parser_.reset();
    set_busy(true);
    respond_error(e, std::move(extra));
    return true;
  };
  if (!gw_->backend_ptr.load()) {
    // Listening while the model loads: load balancers see 503 on /health until it is ready.
    if (route_.which == route::version && route_.status == 200) return false;
    return answer(server_error(503, "ServiceUnavailableError", "The model is still loading; retry shortly"));
  }
  if (route_.status == 404) {
    const auto& h = parser_->get();
    return answer(server_error(404, "NotFoundError",
                               "Not Found: " + std::string(target_path(std::string_view(h.target().data(), h.target().size())))));
  }
  if (route_.status == 405)
    return answer(server_error(405, "Method Not Allowed", "Method Not Allowed: this path takes " + route_.allow),
                  {{"Allow", route_.allow}});
  if (route_.needs_key && !gw_->admission.authorized(api_key())) {
    gw_->backend().metrics().on_rejected(reject_reason::unauthorized);
    return answer(server_error(401, "AuthenticationError",
                               api_key().empty() ? "Missing API key: send 'Authorization: Bearer <key>'" : "Invalid API key"));
  }
  const bool completion = route_.which == route::completions || route_.which == route::chat_completions;
  if (completion && gw_->draining) {
    gw_->backend().metrics().on_rejected(reject_reason::draining);
    return answer(server_error(503, "ServiceUnavailableError", "The server is shutting down"));
  }
  return false;
}

namespace {

// One card per served name, as vLLM lists them; each names the model folder as its root.
std::string models_json(gateway::impl& gw) {
  std::vector<model_card> cards;
  for (const std::string& name : gw.server.served_model_names) {
    model_card card;
    card.id = name;
    card.root = gw.backend().front().root;
    card.created = gw.started;
    card.max_model_len = static_cast<int32_t>(gw.backend().front().max_model_len);
    card.permission_id = "modelperm-" + random_uuid_hex();
    cards.push_back(std::move(card));
  }
  return models_body(cards);
}

std::string metrics_text(gateway::impl& gw) {
  gateway_figures figures;
  figures.num_connections = gw.num_connections();
  figures.admission = gw.admission.counts();
  engine_metrics& metrics = gw.backend().metrics();
  return metrics.render() + gw.backend().extra_metrics_text() + gateway_metrics_text(figures, gw.model_name, metrics.prefix());
}

// The dashboard's figures and the history samples after ?since=MS (all of them without it).
std::string dashboard_body(gateway::impl& gw, std::string_view target) {
  const metrics_snapshot live = gw.backend().metrics().snapshot();
  dashboard_view v;
  v.live = &live;
  v.model_name = gw.model_name;
  v.interval_s = gw.opts.dashboard_interval_s;
  v.now_ms = unix_ms_now();
  v.started_ms = gw.dashboard_started_ms;
  if (const auto since = query_parameter(target, "since")) {
    int64_t ms = 0;
    const auto [end, ec] = std::from_chars(since->data(), since->data() + since->size(), ms);
    if (ec == std::errc() && end == since->data() + since->size()) v.since_ms = ms;  // else: everything, as without it
  }
  // A router's own figures are the fleet's, beside each worker's.
  std::vector<dashboard_source> more = gw.backend().history_sources();
  v.sources.push_back({more.empty() ? gw.model_name : "fleet", &gw.dashboard->history(), ""});
  for (dashboard_source& s : more) v.sources.push_back(std::move(s));
  return dashboard_json(v);
}

} // namespace

void http_session::dispatch() {
  switch (route_.which) {
    case route::health:
      // 503 while draining, and when the engine can no longer run steps (a load balancer then moves on).
      return respond(gw_->draining || !gw_->backend().healthy() ? 503 : 200, "", "text/plain");
    case route::version: return respond(200, version_body("0.1.0"));
    case route::models: return respond(200, models_json(*gw_));
    case route::metrics: return respond(200, metrics_text(*gw_), "text/plain; version=0.0.4");
    case route::dashboard: return respond(200, dashboard_html(), "text/html; charset=utf-8");
    case route::dashboard_json:
      return respond(200, dashboard_body(*gw_, std::string_view(req_.target().data(), req_.target().size())));
    case route::tokenize:
    case route::detokenize: {
      const bool tok = route_.which == route::tokenize;
      return off_io_thread<std::string>(
          [gw = gw_, tok, body = std::move(req_.body())] {
            const model_front& m = gw->backend().front();
            return tok ? tokenize(m, gw->server, body) : detokenize(m, gw->server, body);
          },
          [self = shared_from_this()](std::variant<std::string, api_error> out) {
            if (auto* e = std::get_if<api_error>(&out)) return self->respond_error(*e);
            self->respond(200, std::move(std::get<std::string>(out)));
          });
    }
    case route::completions:
    case route::chat_completions: return start_completion(route_.which == route::chat_completions);
    case route::none: break;
  }
  respond_error(server_error(404, "NotFoundError", "Not Found"));
}

} // namespace troupe
