// One HTTP/1.1 connection of the gateway: reading and parsing requests one at a time, writing their
// responses in order, noticing a client that goes away, and closing without losing the last response.

#include "actors/gateway_session.hpp"

#include <spdlog/spdlog.h>

#include "runtime/openai/openai_error.hpp"

namespace troupe {
namespace {

// A connection waiting for a request, or for a client to take a response, gives up after this long.
constexpr auto io_timeout = std::chrono::minutes(5);
// After a response that closes the connection, the client's late bytes are read and dropped for up to
// this long, so that closing with unread bytes does not reset the connection under the response.
constexpr auto linger_timeout = std::chrono::seconds(2);
// While a request is answered, at most this much of the next (pipelined) is buffered; then reading
// pauses until the connection gets to it.
constexpr size_t max_buffered_bytes = 64 << 10;

} // namespace

std::string error_json(int status, std::string_view type, std::string_view message) {
  return error_body(server_error(status, type, message));
}

http_session::http_session(tcp::socket socket, std::shared_ptr<gateway::impl> gw, uint64_t id)
    : socket_(std::move(socket)), gw_(std::move(gw)), id_(id), deadline_(socket_.get_executor()) {
  // A modest kernel send buffer: a client that stops reading shows up as events queued here (bounded
  // by --max-stream-buffer) instead of megabytes parked in the kernel.
  beast::error_code ec;
  socket_.set_option(net::socket_base::send_buffer_size(64 * 1024), ec);
  // Every stream event goes out at once: with Nagle's algorithm a first chunk written after the
  // headers waited for the client's delayed ACK (≈40 ms of time to first token on the H100, 2026-11-25).
  socket_.set_option(tcp::no_delay(true), ec);
  if (const auto remote = socket_.remote_endpoint(ec); !ec)
    peer_ = remote.address().to_string() + ":" + std::to_string(remote.port());
}

http_session::~http_session() { gw_->forget(id_); }

void http_session::start() {
  net::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->parse_next(); });
}

void http_session::close_if_idle() {
  if (!busy_) close();
}

void http_session::abandon() { close(); }

// ---- reading

void http_session::read_more() {
  if (reading_ || closed_ || peer_eof_) return;
  if ((busy_ || lingering_) && buffer_.size() >= max_buffered_bytes) return;  // resumes when the connection gets to it
  reading_ = true;
  socket_.async_read_some(net::buffer(read_chunk_), [self = shared_from_this()](beast::error_code ec, size_t n) {
    self->on_read(ec, n);
  });
}

void http_session::on_read(const beast::error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec == net::error::eof) {
    // The client will send nothing more. Not an abort: a half-closed client still reads its response.
    peer_eof_ = true;
    if (lingering_) return close();
    if (!busy_) parse_next();
    return;
  }
  if (ec) return lost();
  if (lingering_) {
    buffer_.clear();
    return read_more();
  }
  net::buffer_copy(buffer_.prepare(n), net::buffer(read_chunk_.data(), n));
  buffer_.commit(n);
  if (busy_) return read_more();
  parse_next();
}

void http_session::parse_next() {
  if (closed_ || busy_) return;
  if (!parser_) {
    // RFC 9112 2.2: empty lines before a request line are ignored.
    const auto* p = static_cast<const char*>(buffer_.data().data());
    size_t skip = 0;
    while (skip < buffer_.size() && (p[skip] == '\r' || p[skip] == '\n')) ++skip;
    buffer_.consume(skip);
    if (buffer_.size() == 0) {
      if (peer_eof_) return close();
      arm_deadline(io_timeout);
      return read_more();
    }
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(gw_->opts.max_header_bytes));
    parser_->body_limit(gw_->opts.max_body_bytes);
    parser_->eager(false);  // stop after the head: it is checked before the body is read
    arm_deadline(io_timeout);
  }
  while (buffer_.size() > 0) {
    beast::error_code ec;
    const bool head_done_before = parser_->is_header_done();
    const size_t used = parser_->put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == http::error::need_more) break;
    if (ec) return refuse_unparsable(ec);
    if (!head_done_before && parser_->is_header_done()) {
      on_head();
      if (busy_ || closed_) return;  // answered from the head alone
      parser_->eager(true);
    }
    if (parser_->is_done()) return on_request();
    if (used == 0) break;
  }
  if (peer_eof_) return close();  // a request cut short: nothing to answer
  read_more();
}

void http_session::refuse_unparsable(const beast::error_code& ec) {
  parse_failure failure = parse_failure::malformed;
  if (ec == http::error::header_limit) failure = parse_failure::header_limit;
  if (ec == http::error::body_limit) failure = parse_failure::body_limit;
  const int status = status_of(failure);
  std::string message = failure == parse_failure::header_limit
                            ? "The request head is larger than " + std::to_string(gw_->opts.max_header_bytes) + " bytes"
                        : failure == parse_failure::body_limit
                            ? "The request body is larger than " + std::to_string(gw_->opts.max_body_bytes) + " bytes"
                            : "Malformed HTTP request: " + ec.message();
  if (!parser_->is_header_done()) {
    version_ = 11;
    head_only_ = false;
  }
  parser_.reset();
  keep_alive_ = false;  // the rest of the stream cannot be framed
  set_busy(true);
  respond(status, error_json(status, failure == parse_failure::body_limit ? "BadRequestError" : status_phrase(status), message));
}

void http_session::on_head() {
  const auto& h = parser_->get();
  version_ = h.version();
  head_only_ = h.method() == http::verb::head;  // whatever the answer, a HEAD's has no body
  keep_alive_ = h.keep_alive();
  const std::string_view method(h.method_string().data(), h.method_string().size());
  const std::string_view target(h.target().data(), h.target().size());
  request_start_ = std::chrono::steady_clock::now();
  cors_headers_.clear();
  request_id_.clear();
  log_entry_.reset();
  if (const auto origin = h.find(http::field::origin); origin != h.end()) {
    if (answer_preflight()) return;
    cors_headers_ = gw_->cors.response_headers(std::string_view(origin->value().data(), origin->value().size()),
                                               h.find(http::field::cookie) != h.end());
  }
  if (gw_->opts.request_id_headers) {
    // vLLM's: the client's X-Request-Id, else a new one.
    const auto it = h.find("X-Request-Id");
    request_id_ = it != h.end() ? std::string(it->value()) : random_uuid_hex();
  }
  route_ = match_route(method, target, gw_->opts.root_path);
  if (gw_->opts.log_requests && is_logged(route_.which)) {
    log_entry_.emplace();
    log_entry_->client = peer_;
    log_entry_->method = std::string(method);
    log_entry_->path = std::string(target_path(target));
    log_entry_->version = static_cast<int>(h.version());
  }
  if (refuse_at_head()) return;
  request_head head;
  head.method = std::string_view(h.method_string().data(), h.method_string().size());
  head.version = static_cast<int>(h.version());
  head.has_content_length = h.find(http::field::content_length) != h.end();
  for (auto [it, end] = h.equal_range(http::field::transfer_encoding); it != end; ++it)
    head.transfer_encoding.emplace_back(it->value().data(), it->value().size());
  for (auto [it, end] = h.equal_range(http::field::expect); it != end; ++it)
    head.expect.emplace_back(it->value().data(), it->value().size());
  const head_verdict v = check_request_head(head, route_.has_body);
  if (v.status != 0) {
    keep_alive_ = false;  // the body, if any, is not read
    parser_.reset();
    set_busy(true);
    return respond(v.status, error_json(v.status, status_phrase(v.status), v.message));
  }
  if (v.send_continue && !parser_->is_done()) send("HTTP/1.1 100 Continue\r\n\r\n");
}

// A CORS preflight is answered from its head, on any path and before any key check; true when it was one.
bool http_session::answer_preflight() {
  const auto& h = parser_->get();
  const auto method = h.find(http::field::access_control_request_method);
  if (!cors_policy::is_preflight(std::string_view(h.method_string().data(), h.method_string().size()), true,
                                 method != h.end()))
    return false;
  std::optional<std::string> headers;
  if (const auto it = h.find(http::field::access_control_request_headers); it != h.end()) headers = std::string(it->value());
  const auto origin = h.find(http::field::origin);
  preflight_answer a = gw_->cors.preflight(std::string_view(origin->value().data(), origin->value().size()),
                                           std::string_view(method->value().data(), method->value().size()), headers);
  keep_alive_ = keep_alive_ && parser_->is_done();  // a body, if any, is not read
  parser_.reset();
  set_busy(true);
  std::vector<header_field> extra;
  for (const cors_header& x : a.headers) extra.push_back({x.name, x.value});
  respond(a.status, std::move(a.body), "text/plain; charset=utf-8", std::move(extra));
  return true;
}

void http_session::on_request() {
  req_ = parser_->release();
  parser_.reset();
  set_busy(true);
  read_more();  // to notice a client that goes away meanwhile
  dispatch();
}

void http_session::set_busy(bool busy) {
  busy_ = busy;
  if (busy) ++deadline_serial_;  // no deadline while the request is worked on
  gw_->set_idle(id_, !busy);
}

// The client is gone (a reset, a failed write).
void http_session::lost() { close(); }

// Closes the connection; a completion still running has no one to answer and is aborted.
void http_session::close() {
  end_completion(false);
  if (closed_) return;
  closed_ = true;
  ++deadline_serial_;
  beast::error_code ec;
  deadline_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  // NOTE: out_ stays: a write still pending may be reading its front until its handler runs.
  gw_->forget(id_);
}

// The last response is out: send FIN, then read (and drop) what the client still sends until it closes.
void http_session::linger_close() {
  if (closed_) return;
  if (peer_eof_) return close();
  lingering_ = true;
  buffer_.clear();
  beast::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  arm_deadline(linger_timeout);
  read_more();
}

void http_session::arm_deadline(std::chrono::steady_clock::duration d) {
  const uint64_t serial = ++deadline_serial_;
  deadline_.expires_after(d);
  deadline_.async_wait([self = shared_from_this(), serial](beast::error_code ec) {
    if (ec || serial != self->deadline_serial_) return;
    self->close();
  });
}

// ---- writing

namespace {

// framing: "Content-Length: N", "Transfer-Encoding: chunked", or empty (the body ends with the connection).
std::string response_head(unsigned version, int status, std::string_view content_type, std::string_view framing,
                          bool keep_alive, std::string_view extra) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " +
                  std::string(http::obsolete_reason(static_cast<http::status>(status))) + "\r\nServer: troupe\r\n";
  if (!content_type.empty()) h += "Content-Type: " + std::string(content_type) + "\r\n";
  if (!framing.empty()) h += std::string(framing) + "\r\n";
  if (!keep_alive) h += "Connection: close\r\n";
  else if (version < 11) h += "Connection: keep-alive\r\n";
  h += extra;
  h += "\r\n";
  return h;
}

} // namespace

std::string http_session::common_headers() const {
  std::string fields;
  for (const cors_header& h : cors_headers_) fields += h.name + ": " + h.value + "\r\n";
  if (!request_id_.empty()) fields += "X-Request-Id: " + request_id_ + "\r\n";
  return fields;
}

void http_session::log_request(int status) {
  if (!log_entry_) return;
  log_entry_->status = status;
  log_entry_->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - request_start_).count();
  spdlog::info("{}", request_log_line(*log_entry_));
  log_entry_.reset();
}

void http_session::note_completion(const completion_builder& b) {
  if (!log_entry_) return;
  const usage_info u = b.usage();
  log_entry_->id = b.id();
  log_entry_->prompt_tokens = u.prompt_tokens;
  log_entry_->completion_tokens = u.completion_tokens;
  log_entry_->finish_reason = b.finish_reasons();
}

void http_session::respond(int status, std::string body, std::string_view content_type, std::vector<header_field> extra) {
  if (closed_) return;
  std::string fields = common_headers();
  for (const header_field& f : extra) fields += std::string(f.name) + ": " + f.value + "\r\n";
  send(response_head(version_, status, content_type, "Content-Length: " + std::to_string(body.size()), keep_alive_, fields));
  if (!head_only_ && !body.empty()) send(std::move(body));
  response_queued();
  log_request(status);
}

void http_session::respond_error(const api_error& e, std::vector<header_field> extra) {
  respond(e.status, error_body(e), "application/json", std::move(extra));
}

void http_session::begin_stream() {
  // HTTP/1.0 has no chunked coding: the stream's end is the connection's.
  chunked_ = version_ >= 11;
  if (!chunked_) keep_alive_ = false;
  send(response_head(version_, 200, "text/event-stream", chunked_ ? "Transfer-Encoding: chunked" : "", keep_alive_,
                     "Cache-Control: no-cache\r\n" + common_headers()));
}

void http_session::send_chunk(std::string data) {
  if (data.empty()) return;  // an empty chunk would end the body
  if (!chunked_) return send(std::move(data));
  char size[24];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  data.insert(0, size, static_cast<size_t>(n));
  data += "\r\n";
  send(std::move(data));
}

void http_session::end_stream() {
  if (chunked_) send("0\r\n\r\n");
  response_queued();
  log_request(200);
}

void http_session::send(std::string bytes) {
  if (closed_) return;
  out_.push_back(std::move(bytes));
  write_next();
}

void http_session::write_next() {
  if (writing_ || closed_) return;
  if (out_.empty()) {
    if (response_complete_) response_written();
    return;
  }
  writing_ = true;
  net::async_write(socket_, net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
    self->writing_ = false;
    if (self->closed_) return;
    self->out_.pop_front();
    if (ec) return self->lost();
    self->write_next();
  });
}

// The response's last bytes are queued: the client has io_timeout to take them.
void http_session::response_queued() {
  response_complete_ = true;
  arm_deadline(io_timeout);
  write_next();
}

void http_session::response_written() {
  response_complete_ = false;
  if (!keep_alive_) return linger_close();
  set_busy(false);
  parse_next();
}

} // namespace troupe
