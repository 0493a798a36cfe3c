// The gateway's listener: accepting connections within the connection cap, backing off when accept()
// fails, and stopping (every connection closed, every request it ran aborted, every slot given back).

#include "actors/gateway.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

#include "actors/gateway_session.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

int64_t max_connections_of(const gateway_options& o) {
  if (o.max_connections > 0) return o.max_connections;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return default_max_connections(0);
  return default_max_connections(static_cast<int64_t>(limit.rlim_cur));
}

// Out of descriptors or memory: accepting again at once would fail again (and spin).
bool is_resource_shortage(const beast::error_code& ec) {
  return ec == net::error::no_descriptors || ec == net::error::no_buffer_space || ec == net::error::no_memory ||
         ec == beast::error_code(ENFILE, beast::system_category());
}

// Past the cap with no idle connection to close: a short 503 written straight to the fresh socket (its
// send buffer is empty, so a non-blocking write takes it whole), then closed.
void refuse_connection(tcp::socket& socket) {
  static const std::string body = error_json(503, "ServiceUnavailableError", "The server has too many open connections; retry shortly");
  static const std::string response = "HTTP/1.1 503 Service Unavailable\r\nServer: troupe\r\nContent-Type: application/json\r\n"
                                      "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
                                      std::to_string(body.size()) + "\r\n\r\n" + body;
  beast::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(net::buffer(response), ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

} // namespace

gateway::impl::impl(const gateway_options& o)
    : opts(o), acceptor(ioc), accept_timer(ioc), parse_pool(static_cast<size_t>(std::max(1, o.parse_threads))),
      admission(o.admission), cors(o.cors), dashboard_timer(ioc), connections(max_connections_of(o)) {}

void gateway::impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) return self->accept_failed(ec);
    self->backoff.reset();
    self->open_session(std::move(socket));
    self->accept();
  });
}

void gateway::impl::accept_failed(const beast::error_code& ec) {
  // A client that gave up before it was accepted: the next one is fine.
  if (ec == net::error::connection_aborted) return accept();
  // Out of descriptors: an idle connection gives its own up for the one waiting.
  if (is_resource_shortage(ec)) close_longest_idle();
  const auto delay = backoff.next_delay();
  // One line per 10 s at most: under a flood of connections this repeats many times a second.
  ++num_accept_failures;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_accept_warning >= std::chrono::seconds(10)) {
    spdlog::warn("accepting an HTTP connection failed ({} times since the last report): {}; closing idle connections and "
                 "retrying after a pause (up to 1 s); consider raising the descriptor limit (ulimit -n) or lowering "
                 "--max-connections",
                 num_accept_failures, ec.message());
    last_accept_warning = now;
    num_accept_failures = 0;
  }
  accept_timer.expires_after(delay);
  accept_timer.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
    if (!wait_ec) self->accept();
  });
}

void gateway::impl::schedule_dashboard_sample(std::chrono::steady_clock::time_point at) {
  dashboard_timer.expires_at(at);
  dashboard_timer.async_wait([self = shared_from_this(), at](beast::error_code ec) {
    if (ec) return;
    const int64_t now_ms = unix_ms_now();
    self->dashboard->record(now_ms, self->backend().metrics().snapshot());
    self->backend().record_history(now_ms);
    // From the planned time, not from now: samples stay evenly spaced however late a wait ends.
    const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(self->opts.dashboard_interval_s));
    self->schedule_dashboard_sample(std::max(at + interval, std::chrono::steady_clock::now()));
  });
}

void gateway::impl::open_session(tcp::socket socket) {
  std::shared_ptr<http_session> session;
  {
    std::lock_guard lock(connections_mutex);
    // Make room: the connection idle the longest closes (it may reconnect); the newcomer is served.
    if (connections.full() && !close_longest_idle_locked()) return refuse_connection(socket);
    const uint64_t id = connections.open(connection_table::clock::now());
    session = std::make_shared<http_session>(std::move(socket), shared_from_this(), id);
    sessions[id] = session;
  }
  session->start();
}

bool gateway::impl::close_longest_idle() {
  std::lock_guard lock(connections_mutex);
  return close_longest_idle_locked();
}

bool gateway::impl::close_longest_idle_locked() {
  const auto idle = connections.longest_idle();
  if (!idle) return false;
  // Not idle any more as far as the table goes, so it is asked once. NOTE: until it has closed the
  // connections number one more than the cap; one that turned busy meanwhile stays open.
  connections.set_idle(*idle, false, connection_table::clock::now());
  if (auto s = sessions[*idle].lock()) {
    // NOTE: the reference moves into the handler: were it dropped here as the last one, the session's
    // destructor would take connections_mutex, which this thread holds.
    const auto ex = s->executor();
    net::post(ex, [s = std::move(s)] { s->close_if_idle(); });
  }
  return true;
}

void gateway::impl::set_idle(uint64_t id, bool idle) {
  std::lock_guard lock(connections_mutex);
  connections.set_idle(id, idle, connection_table::clock::now());
}

void gateway::impl::forget(uint64_t id) {
  std::lock_guard lock(connections_mutex);
  connections.close(id);
  sessions.erase(id);
}

int64_t gateway::impl::num_connections() {
  std::lock_guard lock(connections_mutex);
  return connections.size();
}

void gateway::attach(engine& e) {
  impl_->own_backend = make_engine_backend(e);
  attach(*impl_->own_backend);
}

void gateway::attach(gateway_backend& b) {
  impl_->model_name = b.front().served_model_names.front();
  impl_->server = server_config_of(b.front());
  if (const generation_defaults& d = b.front().sampling_defaults; !d.empty())
    spdlog::info("default sampling parameters of API requests, from the generation config: {} (a request's own "
                 "values win; --generation-config vllm ignores the model's)",
                 d.describe());
  impl_->server.max_logprobs = impl_->opts.max_logprobs;
  impl_->server.prompt_tokens_details = impl_->opts.prompt_tokens_details;
  impl_->server.enable_auto_tool_choice = impl_->opts.enable_auto_tool_choice;
  impl_->server.tool_call_parser = impl_->opts.tool_call_parser;
  impl_->server.reasoning_parser = impl_->opts.reasoning_parser;
  impl_->server.trust_request_chat_template = impl_->opts.trust_request_chat_template;
  impl_->server.chat_template_content_format = impl_->opts.chat_template_content_format;
  impl_->started = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // An hour of samples.
  const double interval = impl_->opts.dashboard_interval_s;
  if (!(interval > 0)) throw user_error("the dashboard's sample interval must be above 0 s");
  const auto capacity = static_cast<size_t>(std::ceil(3600.0 / interval));
  impl_->dashboard_started_ms = unix_ms_now();
  impl_->dashboard = std::make_unique<dashboard_recorder>(b.metrics().snapshot(), impl_->dashboard_started_ms, capacity);
  b.start_history(impl_->dashboard_started_ms, capacity);
  impl_->backend_ptr = &b;
  impl_->schedule_dashboard_sample(std::chrono::steady_clock::now() +
                                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(interval)));
}

gateway::gateway(engine& e, const gateway_options& options) : gateway(options) { attach(e); }

gateway::gateway(const gateway_options& options) : impl_(std::make_shared<impl>(options)) {
  beast::error_code ec;
  const auto address = net::ip::make_address(options.host, ec);
  if (ec) throw user_error("--host " + options.host + " is not an IP address");
  const tcp::endpoint endpoint(address, options.port);
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw user_error("cannot listen on " + options.host + ":" + std::to_string(options.port) + ": " + ec.message());
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->accept();
  for (int i = 0; i < std::max(1, options.io_threads); ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

gateway::~gateway() { stop(); }

void gateway::stop() {
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->parse_pool.stop();
  impl_->parse_pool.join();
  // No thread runs the connections now: end them here, so that every request they ran is aborted and
  // its slots go back before the engine goes.
  std::vector<std::shared_ptr<http_session>> open;
  {
    std::lock_guard lock(impl_->connections_mutex);
    for (auto& [id, weak] : impl_->sessions)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->abandon();
  beast::error_code ec;
  impl_->acceptor.close(ec);
}

uint16_t gateway::port() const { return impl_->port; }
void gateway::begin_draining() { impl_->draining = true; }
int64_t gateway::num_in_flight() const { return impl_->admission.num_in_flight(); }
admission_controller& gateway::admission() { return impl_->admission; }

} // namespace troupe
