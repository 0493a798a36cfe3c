#pragma once
// Inside the gateway (actors/gateway*.cpp only): the gateway's shared state and one HTTP/1.1 connection.
//
// A connection handles one request at a time, in order: it parses a request, answers it, and parses
// the next (pipelined requests wait in its buffer meanwhile; a stray CRLF between requests is skipped).
// While a request is being answered it keeps reading, to notice a client that goes away: a reset aborts
// the request; an end of stream (a half-close) does not, the response is still delivered and the
// connection closes after it. Everything of one connection runs on its strand.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "actors/gateway.hpp"
#include "actors/gateway_backend.hpp"
#include "actors/gateway_request.hpp"
#include "runtime/engine/dashboard_history.hpp"
#include "runtime/gateway/connection_table.hpp"
#include "runtime/gateway/cors.hpp"
#include "runtime/gateway/http_request_head.hpp"
#include "runtime/gateway/http_routes.hpp"
#include "runtime/gateway/request_log.hpp"

namespace troupe {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

class http_session;

struct gateway::impl : std::enable_shared_from_this<gateway::impl> {
  explicit impl(const gateway_options& o);

  std::atomic<gateway_backend*> backend_ptr = nullptr;  // null while the model loads
  gateway_backend& backend() { return *backend_ptr.load(); }
  std::unique_ptr<gateway_backend> own_backend;  // attach(engine&)'s adapter
  gateway_options opts;
  net::io_context ioc;
  tcp::acceptor acceptor;
  uint16_t port = 0;
  net::steady_timer accept_timer;
  accept_backoff backoff;
  int64_t num_accept_failures = 0;  // since the last warning
  std::chrono::steady_clock::time_point last_accept_warning{};
  net::thread_pool parse_pool;
  std::vector<std::thread> threads;
  std::atomic<bool> draining = false;
  std::string model_name;
  admission_controller admission;
  cors_policy cors;
  openai_server_config server;
  int64_t started = 0;
  // The /dashboard history, sampled every opts.dashboard_interval_s from attach() on (set before
  // engine_ptr, so a request that sees the engine sees it too).
  std::unique_ptr<dashboard_recorder> dashboard;
  int64_t dashboard_started_ms = 0;
  net::steady_timer dashboard_timer;

  std::mutex connections_mutex;
  connection_table connections;
  std::map<uint64_t, std::weak_ptr<http_session>> sessions;

  void accept();
  void accept_failed(const beast::error_code& ec);
  // Waits for the next dashboard sample's time, records it, and waits again, until the I/O threads stop.
  void schedule_dashboard_sample(std::chrono::steady_clock::time_point at);
  void open_session(tcp::socket socket);
  // Asks the connection idle the longest to close (its descriptor is needed); false when none is idle.
  bool close_longest_idle();
  bool close_longest_idle_locked();  // holding connections_mutex
  // Connection bookkeeping, from the sessions.
  void set_idle(uint64_t id, bool idle);
  void forget(uint64_t id);
  int64_t num_connections();
};

// A completion request in progress on a connection. Whatever ends it (finished, failed, timed out,
// the client gone, the connection dropped, the gateway stopped), destroying it aborts the engine's
// requests when unfinished and gives its admission slots back, once.
struct completion_run {
  completion_run(admission_ticket t, completion_plan plan, net::any_io_executor ex);
  ~completion_run();
  completion_run(const completion_run&) = delete;
  completion_run& operator=(const completion_run&) = delete;

  uint64_t serial = 0;  // tells this run's events from a previous run's late ones
  admission_ticket ticket;
  bool stream = false;
  bool headers_sent = false;
  bool finished = false;  // the engine is done with every request: nothing to abort
  completion_builder builder;
  std::shared_ptr<completion_listener> relay;
  sink_handle sink;
  net::steady_timer timeout;
};

class http_session : public std::enable_shared_from_this<http_session> {
public:
  http_session(tcp::socket socket, std::shared_ptr<gateway::impl> gw, uint64_t id);
  ~http_session();
  http_session(const http_session&) = delete;
  http_session& operator=(const http_session&) = delete;

  void start();
  net::any_io_executor executor() { return socket_.get_executor(); }
  // On its strand: closes the connection when no request is in progress (its descriptor is needed).
  void close_if_idle();
  // Only once the I/O and parse threads have stopped: aborts what runs, gives its slots back, closes.
  void abandon();
  // From any thread: an event of completion run `serial`, handled on the strand.
  void post_event(uint64_t serial, completion_event ev);

private:
  // ---- the connection (gateway_session.cpp)
  void read_more();
  void on_read(const beast::error_code& ec, size_t n);
  void parse_next();
  void refuse_unparsable(const beast::error_code& ec);
  void on_head();
  void on_request();
  void lost();
  void close();
  void linger_close();
  void arm_deadline(std::chrono::steady_clock::duration d);
  void set_busy(bool busy);

  // Responses: whole, or streamed in chunks. Bytes go out in the order queued.
  struct header_field {
    std::string_view name;
    std::string value;
  };
  void respond(int status, std::string body, std::string_view content_type = "application/json",
               std::vector<header_field> extra = {});
  void respond_error(const api_error& e, std::vector<header_field> extra = {});
  void begin_stream();
  void send_chunk(std::string data);
  void end_stream();
  void send(std::string bytes);
  void write_next();
  void response_queued();
  void response_written();
  // The headers every response to the current request carries: CORS, X-Request-Id.
  std::string common_headers() const;
  // The request log's line for the current request, once its response (of `status`) is complete.
  void log_request(int status);
  // For the request log: the completion's id, usage and finish reasons, before its run ends.
  void note_completion(const completion_builder& b);
  bool answer_preflight();

  // ---- routing (gateway_routes.cpp)
  bool refuse_at_head();
  void dispatch();
  std::string api_key() const;
  // Runs `work` on the parse pool and `done` with its result (or the api_error it threw) on the strand.
  template <class T>
  void off_io_thread(std::function<T()> work, std::function<void(std::variant<T, api_error>)> done);

  // ---- completions (gateway_completion.cpp)
  void start_completion(bool chat);
  void planned(std::variant<completion_plan, api_error> plan);
  void handle_event(completion_event ev);
  void timed_out();
  void end_completion(bool finished);
  void send_failure(const api_error& e);

  tcp::socket socket_;
  std::shared_ptr<gateway::impl> gw_;
  const uint64_t id_;
  std::array<char, 16384> read_chunk_{};
  beast::flat_buffer buffer_;  // bytes read and not parsed yet
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  route_match route_;
  std::string peer_;                           // the client's address:port
  std::vector<cors_header> cors_headers_;      // of the current request (it sent an Origin)
  std::string request_id_;                     // of the current request, when --enable-request-id-headers
  std::optional<request_log_entry> log_entry_; // of the current request, when it is logged
  std::chrono::steady_clock::time_point request_start_{};
  net::steady_timer deadline_;
  uint64_t deadline_serial_ = 0;

  bool reading_ = false;    // a read is pending
  bool peer_eof_ = false;   // the client shut its side (a half-close or a close)
  bool busy_ = false;       // a request is being answered
  bool closed_ = false;
  bool lingering_ = false;  // the response is out; draining the client's bytes before closing
  bool keep_alive_ = true;  // of the request being answered
  bool head_only_ = false;  // of the request being answered: HEAD
  unsigned version_ = 11;

  std::deque<std::string> out_;  // bytes to write, in order
  bool writing_ = false;
  bool response_complete_ = false;  // the response's last bytes are queued
  bool chunked_ = false;            // the stream in progress uses chunked coding

  std::optional<completion_run> run_;
  uint64_t num_runs_ = 0;
};

template <class T>
void http_session::off_io_thread(std::function<T()> work, std::function<void(std::variant<T, api_error>)> done) {
  net::post(gw_->parse_pool, [self = shared_from_this(), work = std::move(work), done = std::move(done)]() mutable {
    std::variant<T, api_error> result = [&]() -> std::variant<T, api_error> {
      try {
        return work();
      } catch (const api_error& e) {
        return e;
      } catch (const std::bad_alloc&) {
        return server_error(500, "InternalServerError", "The server ran out of memory handling this request");
      } catch (const std::exception& e) {
        return server_error(500, "InternalServerError", e.what());
      }
    }();
    net::post(self->socket_.get_executor(),
              [self, done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
  });
}

std::string error_json(int status, std::string_view type, std::string_view message);

} // namespace troupe
