#include "actors/gateway.hpp"

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "actors/dashboard.hpp"
#include "actors/engine_impl.hpp"
#include "actors/gateway_request.hpp"
#include "runtime/error.hpp"

namespace troupe {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct gateway::impl : std::enable_shared_from_this<gateway::impl> {
  explicit impl(const gateway_options& o) : opts(o), acceptor(ioc), admission(o.admission) {}

  std::atomic<engine*> engine_ptr = nullptr;  // null while the model loads
  engine& eng() { return *engine_ptr.load(); }
  gateway_options opts;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> draining = false;
  std::atomic<int64_t> in_flight = 0;
  std::string model_name;
  admission_controller admission;
  openai_server_config server;
  int64_t started = 0;

  void accept();
};

namespace {

std::string error_json(int status, std::string_view type, std::string_view message) {
  return error_body(server_error(status, type, message));
}

class session : public std::enable_shared_from_this<session>, public completion_listener {
public:
  session(tcp::socket socket, std::shared_ptr<gateway::impl> gw) : stream_(std::move(socket)), gw_(std::move(gw)) {
    // A modest kernel send buffer: a client that stops reading shows up as events queued here (bounded
    // by --max-stream-buffer) instead of megabytes parked in the kernel.
    beast::error_code ec;
    stream_.socket().set_option(net::socket_base::send_buffer_size(64 * 1024), ec);
    // Every stream event goes out at once: with Nagle's algorithm a first chunk written after the
    // headers waited for the client's delayed ACK (≈40 ms of time to first token on the H100, 2026-11-25).
    stream_.socket().set_option(tcp::no_delay(true), ec);
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

  // completion_listener: called from actor threads; hop onto this connection's strand.
  void on_event(completion_event ev) override {
    net::post(stream_.get_executor(), [self = shared_from_this(), ev = std::move(ev)]() mutable { self->handle_event(std::move(ev)); });
  }

private:
  void read() {
    parser_.emplace();
    parser_->body_limit(gw_->opts.max_body_bytes);
    stream_.expires_after(std::chrono::minutes(5));
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == beast::error::timeout) return close();
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      return respond(http::status::payload_too_large,
                     error_json(413, "BadRequestError", "The request body is larger than " +
                                                            std::to_string(gw_->opts.max_body_bytes) + " bytes"));
    }
    if (ec) return close();
    req_ = parser_->release();
    keep_alive_ = req_.keep_alive();
    route();
  }

  std::string api_key() const {
    const auto it = req_.find(http::field::authorization);
    if (it == req_.end()) return {};
    const std::string_view value(it->value().data(), it->value().size());
    return value.starts_with("Bearer ") ? std::string(value.substr(7)) : std::string();
  }

  void reject(const admission_refusal& r) {
    gw_->eng().internals().metrics->on_rejected(r.reason == "queue_full"     ? reject_reason::queue_full
                                              : r.reason == "unauthorized" ? reject_reason::unauthorized
                                                                           : reject_reason::rate_limited);
    respond(static_cast<http::status>(r.status), error_json(r.status, r.type, r.message), "application/json",
            r.retry_after_s);
  }

  void route() {
    const std::string target(req_.target());
    const std::string path = target.substr(0, target.find('?'));
    const bool get = req_.method() == http::verb::get, post = req_.method() == http::verb::post;
    if (!gw_->engine_ptr.load()) {
      // Listening while the model loads: load balancers see 503 on /health until it is ready.
      if (get && path == "/version") return respond(http::status::ok, version_body("0.1.0"));
      return respond(http::status::service_unavailable,
                     error_json(503, "ServiceUnavailableError", "The model is still loading; retry shortly"));
    }
    if (get && path == "/health") {
      // 503 while draining, and when the engine can no longer run steps (a load balancer then moves on).
      return respond(gw_->draining || !gw_->eng().healthy() ? http::status::service_unavailable : http::status::ok, "",
                     "text/plain");
    }
    if (get && path == "/version") return respond(http::status::ok, version_body("0.1.0"));
    if (post && (path == "/tokenize" || path == "/detokenize")) {
      try {
        return respond(http::status::ok, path == "/tokenize" ? tokenize(gw_->eng(), gw_->server, req_.body())
                                                             : detokenize(gw_->eng(), gw_->server, req_.body()));
      } catch (const api_error& e) {
        return respond(static_cast<http::status>(e.status), error_body(e));
      }
    }
    if (path.starts_with("/v1/") && !gw_->admission.authorized(api_key())) {
      gw_->eng().internals().metrics->on_rejected(reject_reason::unauthorized);
      return respond(http::status::unauthorized,
                     error_json(401, "AuthenticationError", api_key().empty() ? "Missing API key: send 'Authorization: Bearer <key>'"
                                                                              : "Invalid API key"));
    }
    if (get && path == "/v1/models") return respond(http::status::ok, models_json());
    if (get && path == "/metrics") return respond(http::status::ok, metrics_text(), "text/plain; version=0.0.4");
    if (get && path == "/dashboard") return respond(http::status::ok, dashboard_html(), "text/html; charset=utf-8");
    if (get && path == "/dashboard.json")
      return respond(http::status::ok, dashboard_json(gw_->eng().metrics(), gw_->model_name));
    if (post && (path == "/v1/completions" || path == "/v1/chat/completions")) {
      if (gw_->draining) {
        gw_->eng().internals().metrics->on_rejected(reject_reason::draining);
        return respond(http::status::service_unavailable,
                       error_json(503, "ServiceUnavailableError", "The server is shutting down"));
      }
      return start_completion(path == "/v1/chat/completions");
    }
    respond(http::status::not_found, error_json(404, "NotFoundError", "Not Found: " + path));
  }

  std::string models_json() const {
    model_card card;
    card.id = gw_->model_name;
    card.root = gw_->eng().internals().options.model.empty() ? gw_->model_name : gw_->eng().internals().options.model;
    card.created = gw_->started;
    card.max_model_len = static_cast<int32_t>(gw_->eng().max_model_len());
    card.permission_id = "modelperm-" + random_uuid_hex();
    return models_body(std::span<const model_card>(&card, 1));
  }

  std::string metrics_text() const { return gw_->eng().metrics_text(); }

  void start_completion(bool chat) {
    completion_plan plan;
    try {
      plan = plan_completion(gw_->eng(), gw_->server, req_.body(), chat, gw_->opts.max_tokens_limit);
    } catch (const api_error& e) {
      gw_->eng().internals().metrics->on_rejected(e.message.find("maximum context length") != std::string::npos
                                                    ? reject_reason::too_long
                                                    : reject_reason::invalid);
      return respond(static_cast<http::status>(e.status), error_body(e));
    }
    int64_t cost = 0;
    for (const auto& r : plan.requests) cost += static_cast<int64_t>(r.prompt_ids.size()) + r.params.max_tokens;
    if (auto refusal = gw_->admission.admit(api_key(), cost, gw_->admission.num_queued(), tenant_)) return reject(*refusal);
    ++generation_;
    ++gw_->in_flight;
    gw_->admission.enter_queue();
    queued_ = true;
    counted_ = true;
    if (gw_->opts.request_timeout_s > 0) {
      timer_.emplace(stream_.get_executor());
      timer_->expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(gw_->opts.request_timeout_s)));
      timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->timed_out();
      });
    }
    stream_mode_ = plan.stream;
    builder_.emplace(std::move(plan));
    sink_ = spawn_completion_sink(gw_->eng(), builder_->requests(), weak_from_this_listener());
    watch_for_disconnect();
  }

  std::weak_ptr<completion_listener> weak_from_this_listener() {
    return std::static_pointer_cast<completion_listener>(shared_from_this());
  }

  // A client that closes its connection while waiting aborts its requests (their blocks are freed).
  void watch_for_disconnect() {
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this(), generation = generation_](beast::error_code ec) {
      // A wait armed for an earlier request of this connection is stale.
      if (ec || !self->builder_ || generation != self->generation_) return;
      // Never block the strand: peek without waiting. EOF reads as 0 bytes and no error.
      auto& socket = self->stream_.socket();
      beast::error_code peek_ec;
      socket.non_blocking(true, peek_ec);
      char byte;
      const size_t n = socket.receive(net::buffer(&byte, 1), tcp::socket::message_peek, peek_ec);
      socket.non_blocking(false, ec);
      if (peek_ec == net::error::would_block) return self->watch_for_disconnect();
      if (peek_ec || n == 0) self->client_gone();
      // n > 0: the client sent more (a pipelined request); it is read once this one is answered.
    });
  }

  void client_gone() {
    if (sink_) stop_completion_sink(gw_->eng(), sink_);
    finish_completion();
    close();
  }

  void finish_completion() {
    builder_.reset();
    sink_ = {};
    if (timer_) timer_->cancel();
    timer_.reset();
    left_queue();
    if (counted_) {
      --gw_->in_flight;
      gw_->admission.release(tenant_);
      counted_ = false;
    }
  }

  void left_queue() {
    if (queued_) {
      gw_->admission.leave_queue();
      queued_ = false;
    }
  }

  // The request ran past --request-timeout: it is aborted; the client gets 504, or an error event.
  void timed_out() {
    if (!builder_) return;
    gw_->eng().internals().metrics->on_rejected(reject_reason::timeout);
    if (sink_) stop_completion_sink(gw_->eng(), sink_);
    const std::string message = "The request did not finish within the server's request timeout (" +
                                std::to_string(gw_->opts.request_timeout_s) + " s)";
    const bool streaming = headers_sent_;
    finish_completion();
    if (!streaming) return respond(http::status::gateway_timeout, error_json(504, "TimeoutError", message));
    enqueue(sse_event(error_json(504, "TimeoutError", message)));
    enqueue(sse_done());
    finishing_ = true;
    write_next();
  }

  void handle_event(completion_event ev) {
    if (!builder_) return;
    if (ev.what == completion_event::kind::outputs) left_queue();
    if (ev.what == completion_event::kind::failed) {
      stop_completion_sink(gw_->eng(), sink_);
      finish_completion();
      if (!headers_sent_) return respond(static_cast<http::status>(ev.error.status), error_body(ev.error));
      enqueue(sse_error(ev.error));
      enqueue(sse_done());
      finishing_ = true;
      return write_next();
    }
    if (!stream_mode_) {
      builder_->add(ev);
      if (builder_->done()) {
        std::string body = builder_->final_body();
        finish_completion();
        respond(http::status::ok, std::move(body));
      }
      return;
    }
    if (!headers_sent_) send_stream_headers();
    for (std::string& chunk : builder_->stream_chunks(ev)) enqueue(std::move(chunk));
    if (builder_->done()) {
      finishing_ = true;
      finish_completion();
      write_next();
    }
    if (queue_.size() > gw_->opts.max_stream_buffer) {
      // A consumer this far behind is cut off; everyone else goes on.
      spdlog::warn("a streaming client fell {} events behind; cutting it off", queue_.size());
      gw_->eng().internals().metrics->on_rejected(reject_reason::slow_consumer);
      if (sink_) stop_completion_sink(gw_->eng(), sink_);
      finish_completion();
      close();
    }
  }

  void send_stream_headers() {
    headers_sent_ = true;
    stream_res_.emplace(http::status::ok, req_.version());
    stream_res_->set(http::field::content_type, "text/event-stream");
    stream_res_->set(http::field::cache_control, "no-cache");
    stream_res_->keep_alive(keep_alive_);
    stream_res_->chunked(true);
    stream_sr_.emplace(*stream_res_);
    writing_ = true;
    stream_.expires_never();
    http::async_write_header(stream_, *stream_sr_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (ec) return self->client_gone();
      self->write_next();
    });
  }

  void enqueue(std::string chunk) {
    queue_.push_back(std::move(chunk));
    write_next();
  }

  void write_next() {
    if (writing_ || closed_) return;
    if (queue_.empty()) {
      if (!finishing_) return;
      finishing_ = false;
      writing_ = true;
      net::async_write(stream_, http::make_chunk_last(), [self = shared_from_this()](beast::error_code ec, size_t) {
        self->writing_ = false;
        self->headers_sent_ = false;
        if (ec || !self->keep_alive_) return self->close();
        self->read();
      });
      return;
    }
    writing_ = true;
    net::async_write(stream_, http::make_chunk(net::buffer(queue_.front())), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      self->queue_.pop_front();
      if (ec) return self->client_gone();
      self->write_next();
    });
  }

  void respond(http::status status, std::string body, const char* content_type = "application/json",
               int retry_after_s = 0) {
    auto res = std::make_shared<http::response<http::string_body>>(status, req_.version());
    if (retry_after_s > 0) res->set(http::field::retry_after, std::to_string(retry_after_s));
    res->set(http::field::server, "troupe");
    res->set(http::field::content_type, content_type);
    res->keep_alive(keep_alive_);
    res->body() = std::move(body);
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec || !self->keep_alive_) return self->close();
      self->read();
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<gateway::impl> gw_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  bool keep_alive_ = true;
  bool closed_ = false;
  bool counted_ = false;
  bool queued_ = false;
  uint64_t generation_ = 0;  // counts this connection's completions
  std::string tenant_;
  std::optional<net::steady_timer> timer_;
  // The completion in progress.
  std::optional<completion_builder> builder_;
  sink_handle sink_;
  bool stream_mode_ = false;
  bool headers_sent_ = false;
  bool writing_ = false;
  bool finishing_ = false;
  std::deque<std::string> queue_;
  std::optional<http::response<http::empty_body>> stream_res_;
  std::optional<http::response_serializer<http::empty_body>> stream_sr_;
};

} // namespace

void gateway::impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted) return;
    } else {
      std::make_shared<session>(std::move(socket), self)->start();
    }
    self->accept();
  });
}

void gateway::attach(engine& e) {
  impl_->model_name = e.served_model_name();
  impl_->server = server_config_of(e);
  impl_->started = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  impl_->engine_ptr = &e;
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
  impl_->accept();
  for (int i = 0; i < std::max(1, options.io_threads); ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

gateway::~gateway() { stop(); }

void gateway::stop() {
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
}

uint16_t gateway::port() const { return impl_->acceptor.local_endpoint().port(); }
void gateway::begin_draining() { impl_->draining = true; }
int64_t gateway::num_in_flight() const { return impl_->in_flight; }
admission_controller& gateway::admission() { return impl_->admission; }

} // namespace troupe
