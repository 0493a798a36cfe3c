#pragma once
// The router's side of one worker's native client port (client/wire.hpp: authenticated msgpack frames over
// TCP): jobs out, their acceptance and tokens back, as they are sampled, without parsing HTTP or SSE. Each
// connection is one worker_link; when it is lost every job still open on it is told, and the router makes a
// new link once the worker's /health answers 200 again. Also the health probe itself (GET /health).
//
// Everything runs on the router's one I/O thread: no locks. Included only by actors/router.cpp (Asio).

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

#include "client/wire.hpp"

namespace troupe {

// What a job on a link hears; on the I/O thread.
class link_job {
public:
  virtual ~link_job() = default;
  // The worker accepted the job (job_id != 0) or refused it (error, error_type).
  virtual void on_submitted(const wire::submitted& s) = 0;
  // New tokens; the last output has finished set.
  virtual void on_output(const wire::output& o) = 0;
  // The connection was lost before the job finished.
  virtual void on_lost(const std::string& why) = 0;
};

class worker_link : public std::enable_shared_from_this<worker_link> {
public:
  using tcp = boost::asio::ip::tcp;

  // on_up: the worker welcomed the handshake; on_down(why): the connection failed or ended (once, and never
  // after close()).
  worker_link(boost::asio::io_context& ioc, std::string host, uint16_t port, std::string api_key,
              std::function<void()> on_up, std::function<void(const std::string&)> on_down);

  // Connects and says hello, within timeout_s.
  void connect(double timeout_s);
  bool up() const { return up_; }

  // Sends a job; `job` hears its fate. Returns the job's tag, which abort() takes.
  uint64_t submit(wire::job j, std::shared_ptr<link_job> job);
  // Aborts a job (before or after the worker accepted it); `job` hears nothing more.
  void abort(uint64_t tag);
  // Asks for the worker's load; `done` runs with the reply.
  void request_stats(std::function<void(const wire::stats&)> done);
  // Ends the connection; open jobs hear on_lost(why); on_down is not called.
  void close(const std::string& why);

private:
  struct open_job {
    std::shared_ptr<link_job> job;
    uint64_t job_id = 0;  // 0 until accepted
  };
  void read_header();
  void read_body(uint32_t length);
  void on_message(wire::server_message& m);
  void send(const wire::client_message& m);
  void write_next();
  void fail(const std::string& why);

  boost::asio::io_context& ioc_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  boost::asio::steady_timer timer_;
  std::string host_;
  uint16_t port_;
  std::string api_key_;
  std::function<void()> on_up_;
  std::function<void(const std::string&)> on_down_;
  bool up_ = false;
  bool closed_ = false;
  std::array<char, wire::frame_header_bytes> header_{};
  std::vector<char> body_;
  std::deque<std::vector<char>> out_;
  bool writing_ = false;
  uint64_t next_tag_ = 1;
  std::unordered_map<uint64_t, open_job> jobs_;  // by tag
  std::unordered_map<uint64_t, uint64_t> tag_of_job_;  // job id -> tag
  std::unordered_map<uint64_t, std::function<void(const wire::stats&)>> stats_waiting_;  // by tag
};

// GET /health on host:port; done(true) when it answers 200 within timeout_s. On the io_context's thread.
void probe_health(boost::asio::io_context& ioc, const std::string& host, uint16_t port, double timeout_s,
                  std::function<void(bool healthy)> done);

} // namespace troupe
