#include "launch/bench_client.hpp"

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without including it

#include <chrono>
#include <limits>
#include <optional>

#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "runtime/error.hpp"

namespace troupe {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;

std::string http_target::url(const std::string& path) const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return "http://" + h + ":" + port + prefix + path;
}

http_target parse_base_url(const std::string& url) {
  const std::string bad = "--base-url " + url + ": ";
  if (url.starts_with("https://"))
    throw user_error(bad + "https is not supported; give the server's plain http:// address (or a TLS-terminating proxy's)");
  if (!url.starts_with("http://")) throw user_error(bad + "expected http://HOST[:PORT][/PREFIX], e.g. http://127.0.0.1:8000");
  std::string rest = url.substr(7);
  http_target t;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    t.prefix = rest.substr(slash);
    rest = rest.substr(0, slash);
    while (!t.prefix.empty() && t.prefix.back() == '/') t.prefix.pop_back();
  }
  size_t port_colon = std::string::npos;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string::npos) throw user_error(bad + "an IPv6 address needs its closing ']'");
    t.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw user_error(bad + "expected ':PORT' after the IPv6 address");
      port_colon = close + 1;
    }
  } else {
    port_colon = rest.find(':');
    t.host = rest.substr(0, port_colon);
  }
  if (port_colon != std::string::npos) {
    t.port = rest.substr(port_colon + 1);
    const bool digits = !t.port.empty() && t.port.size() <= 5 && t.port.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || std::stoi(t.port) > 65535) throw user_error(bad + "the port must be a number from 0 to 65535");
  }
  if (t.host.empty()) throw user_error(bad + "no host; expected http://HOST[:PORT]");
  return t;
}

namespace {

std::string host_header(const http_target& t) {
  const std::string h = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  return t.port == "80" ? h : h + ":" + t.port;
}

http::request<http::string_body> make_request(const http_target& t, http::verb verb, const std::string& path,
                                              const std::string& body, const std::string& api_key) {
  http::request<http::string_body> req{verb, t.prefix + path, 11};
  req.set(http::field::host, host_header(t));
  req.set(http::field::user_agent, "troupe-bench");
  if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
  if (verb == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
  }
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

// The state every request coroutine of one run shares; they all run on its single thread.
struct streamed_run {
  net::io_context ioc;
  http_target target;
  std::string api_key;
  tcp::resolver::results_type endpoints;
  std::vector<beast::tcp_stream> idle;  // keep-alive connections between requests
  clock_type::time_point start;
  std::vector<request_outcome> outcomes;
  int64_t num_in_flight = 0;
  std::optional<net::steady_timer> slot_freed;  // the dispatcher waits on it while at max_concurrency
  const std::function<void()>* on_done = nullptr;

  double now() const { return std::chrono::duration<double>(clock_type::now() - start).count(); }
};

// Reads the response body in pieces as they arrive: each piece goes to take(bytes, when) at once.
template <class Take>
net::awaitable<beast::error_code> read_body(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                            http::response_parser<http::buffer_body>& parser, streamed_run& run,
                                            Take take) {
  char piece[16 * 1024];
  beast::error_code ec;
  while (!parser.is_done()) {
    parser.get().body().data = piece;
    parser.get().body().size = sizeof piece;
    co_await http::async_read_some(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    const size_t n = sizeof piece - parser.get().body().size;
    if (n > 0) take(std::string_view(piece, n), run.now());
    if (ec) break;
  }
  co_return ec;
}

net::awaitable<request_outcome> stream_one(streamed_run& run, const bench_request& r) {
  const std::string url = run.target.url(r.path);
  const auto req = make_request(run.target, http::verb::post, r.path, r.body, run.api_key);
  stream_recorder recorder(run.now(), r.prompt_len);
  // A kept-alive connection the server has closed meanwhile fails before any reply: then once more, afresh.
  for (int attempt = 0;; ++attempt) {
    beast::error_code ec;
    const bool reused = attempt == 0 && !run.idle.empty();
    std::optional<beast::tcp_stream> stream;
    if (reused) {
      stream.emplace(std::move(run.idle.back()));
      run.idle.pop_back();
    } else {
      stream.emplace(run.ioc);
      co_await stream->async_connect(run.endpoints, net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return recorder.fail("cannot connect to " + url + ": " + ec.message());
      stream->socket().set_option(tcp::no_delay(true), ec);
    }
    co_await http::async_write(*stream, req, net::redirect_error(net::use_awaitable, ec));
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // not boost::none: Beast 1.74 then refuses every Content-Length
    if (!ec) co_await http::async_read_header(*stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec && reused) continue;
    if (ec) co_return recorder.fail("no reply from " + url + ": " + ec.message());

    const unsigned status = parser.get().result_int();
    if (status != 200) {
      std::string body;
      co_await read_body(*stream, buffer, parser, run, [&](std::string_view bytes, double) {
        if (body.size() < (64 << 10)) body += bytes;
      });
      co_return recorder.fail("HTTP " + std::to_string(status) + " from " + url + ": " + error_message_of(body));
    }
    ec = co_await read_body(*stream, buffer, parser, run,
                            [&](std::string_view bytes, double when) { recorder.feed(bytes, when); });
    // A server that ends the stream by closing (no chunked encoding) ends it with end_of_stream.
    if (ec && ec != http::error::end_of_stream && !recorder.done())
      co_return recorder.fail("the stream from " + url + " broke off: " + ec.message());
    if (!ec && parser.is_done() && parser.get().keep_alive()) run.idle.push_back(std::move(*stream));
    co_return recorder.finish();
  }
}

net::awaitable<void> run_one(streamed_run& run, const bench_request& r, size_t index) {
  run.outcomes[index] = co_await stream_one(run, r);
  --run.num_in_flight;
  run.slot_freed->cancel();
  (*run.on_done)();
}

net::awaitable<void> dispatch(streamed_run& run, std::span<const bench_request> requests,
                              std::span<const double> arrival_times, int32_t max_concurrency) {
  net::steady_timer due(run.ioc);
  for (size_t i = 0; i < requests.size(); ++i) {
    beast::error_code ec;
    due.expires_at(run.start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(arrival_times[i])));
    co_await due.async_wait(net::redirect_error(net::use_awaitable, ec));
    // Single-threaded: a request can end (and cancel the wait) only while this coroutine waits.
    while (max_concurrency > 0 && run.num_in_flight >= max_concurrency) {
      run.slot_freed->expires_at(clock_type::time_point::max());
      co_await run.slot_freed->async_wait(net::redirect_error(net::use_awaitable, ec));
    }
    ++run.num_in_flight;
    net::co_spawn(run.ioc, run_one(run, requests[i], i), net::detached);
  }
}

tcp::resolver::results_type resolve(net::io_context& ioc, const http_target& target) {
  tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(target.host, target.port, ec);
  if (ec) throw user_error("cannot resolve " + target.host + " (--base-url " + target.url("") + "): " + ec.message());
  return endpoints;
}

} // namespace

http_reply http_call(const http_target& target, const std::string& method, const std::string& path,
                     const std::string& body, const std::string& api_key) {
  net::io_context ioc;
  const auto endpoints = resolve(ioc, target);
  const std::string url = target.url(path);
  beast::tcp_stream stream(ioc);
  stream.expires_after(std::chrono::seconds(60));
  beast::error_code ec;
  stream.connect(endpoints, ec);
  if (ec) throw user_error("cannot connect to " + url + ": " + ec.message() + "; is the server running there? (--base-url)");
  http::write(stream, make_request(target, http::string_to_verb(method), path, body, api_key), ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  if (!ec) http::read(stream, buffer, res, ec);
  if (ec) throw user_error("no reply from " + url + ": " + ec.message());
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {static_cast<int>(res.result_int()), std::move(res.body())};
}

bench_run run_streamed_requests(const http_target& target, const std::string& api_key,
                                std::span<const bench_request> requests, std::span<const double> arrival_times,
                                int32_t max_concurrency, const std::function<void()>& on_done) {
  streamed_run run;
  run.target = target;
  run.api_key = api_key;
  run.endpoints = resolve(run.ioc, target);
  run.outcomes.resize(requests.size());
  run.slot_freed.emplace(run.ioc);
  run.on_done = &on_done;
  run.start = clock_type::now();
  net::co_spawn(run.ioc, dispatch(run, requests, arrival_times, max_concurrency), net::detached);
  run.ioc.run();
  bench_run result;
  result.duration_s = run.now();
  result.outcomes = std::move(run.outcomes);
  return result;
}

} // namespace troupe
