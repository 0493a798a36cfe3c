#include "actors/client_endpoint.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "actors/engine_impl.hpp"
#include "actors/gateway_request.hpp"
#include "actors/wire_convert.hpp"
#include "client/wire.hpp"
#include "runtime/gateway/client_session.hpp"
#include "runtime/error.hpp"

namespace troupe {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Before the handshake a client has said nothing worth more than this (a hello is a few dozen bytes).
constexpr uint32_t max_handshake_frame_bytes = 64 << 10;
// A frame's body is read in pieces of this size, so memory follows the bytes that really arrive, not the
// length a frame announces.
constexpr size_t read_chunk_bytes = 64 << 10;

// Posts onto the endpoint's I/O thread from actor threads, until the endpoint closes it: after close(),
// nothing reaches an io_context that may be gone.
struct io_gate {
  std::mutex mutex;
  net::io_context* ioc = nullptr;

  template <class F> void post(F&& f) {
    std::lock_guard lock(mutex);
    if (ioc) net::post(*ioc, std::forward<F>(f));
  }
  void close() {
    std::lock_guard lock(mutex);
    ioc = nullptr;
  }
};

wire::output failed_output(uint64_t job_id, const std::string& message) {
  wire::output w;
  w.job_id = job_id;
  w.finished = true;
  w.finish_reason = "error";
  w.error = message;
  return w;
}

reject_reason reject_reason_of(const admission_refusal& r) {
  if (r.reason == "queue_full") return reject_reason::queue_full;
  if (r.reason == "unauthorized") return reject_reason::unauthorized;
  if (r.reason == "too_long") return reject_reason::too_long;
  return reject_reason::rate_limited;
}

class connection;

} // namespace

struct client_endpoint::impl {
  impl(const client_endpoint_options& o, admission_controller& a)
      : opts(o), admission(a), acceptor(ioc), backoff(ioc), gate(std::make_shared<io_gate>()) {
    gate->ioc = &ioc;
  }

  client_endpoint_options opts;
  admission_controller& admission;
  net::io_context ioc;
  tcp::acceptor acceptor;
  net::steady_timer backoff;  // after a failed accept (out of descriptors), instead of spinning
  net::thread_pool tokenizing{1};  // text prompts are tokenized here, not on the I/O thread
  std::shared_ptr<io_gate> gate;
  std::thread thread;
  std::promise<void> ran_out_promise;  // set when the I/O thread's run() returns
  std::future<void> ran_out;
  std::atomic<engine*> engine_ptr = nullptr;
  std::atomic<bool> draining = false;
  std::atomic<int64_t> num_jobs = 0;
  bool stopping = false;  // I/O thread only
  bool stopped = false;   // the caller of stop() only
  std::unordered_map<connection*, std::weak_ptr<connection>> connections;  // I/O thread (or after it ended)

  void accept();
  void stop_all();  // on the I/O thread
};

namespace {

// Reports one job's sink events to its connection, on the I/O thread.
struct job_listener : completion_listener {
  std::shared_ptr<io_gate> gate;
  std::weak_ptr<connection> conn;
  uint64_t job_id = 0;
  void on_event(completion_event ev) override;
};

class connection : public std::enable_shared_from_this<connection> {
public:
  connection(tcp::socket socket, client_endpoint::impl& ep)
      : socket_(std::move(socket)), ep_(ep), session_(ep.admission, {ep.opts.max_tokens_limit}), timer_(ep.ioc) {
    boost::system::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);  // every token goes out at once
  }

  void start() {
    ep_.connections[this] = weak_from_this();
    timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(ep_.opts.handshake_timeout_s)));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && !self->session_.authenticated()) self->fatal(fmt::format("no handshake within {} s", self->ep_.opts.handshake_timeout_s));
    });
    read_header();
  }

  ~connection() { release_jobs("the connection closed"); }

  // The server stops: jobs still running end with an error their client sees, then the connection closes.
  void shut_down(const std::string& message) {
    for (auto& [job_id, j] : jobs_) {
      if (!j.replied) send(wire::submitted{j.tag, 0, message, "ServiceUnavailableError", 0, 0});
      else send(wire::outputs{{failed_output(job_id, message)}});
    }
    release_jobs(message);
    fatal(message, std::chrono::milliseconds(250));  // within --shutdown-timeout's slack
  }

  // Ends every job without a word to the client (it is gone, or told already); their requests are aborted.
  void release_jobs(const std::string& why) {
    if (jobs_.empty()) return;
    engine* e = ep_.engine_ptr.load();
    spdlog::info("native client: {} job(s) ended ({})", jobs_.size(), why);
    for (auto& [job_id, j] : jobs_) {
      if (e) stop_completion_sink(j.sink);  // the scheduler sees the sink go and aborts the request
      session_.end(job_id);
      --ep_.num_jobs;
    }
    jobs_.clear();
  }

  void on_job_event(uint64_t job_id, completion_event& ev);

private:
  struct open_job {
    std::shared_ptr<job_listener> listener;  // the sink holds it weakly: dropping it lets the sink go
    sink_handle sink;
    uint64_t tag = 0;          // of the submit, until it is answered
    bool replied = false;      // the submit was answered with the job's id
    request_id engine_id = 0;  // 0 until the scheduler took the job
    bool abort_pending = false;
    int32_t num_prompt_tokens = 0;
  };

  void read_header() {
    if (closing_) return;
    net::async_read(socket_, net::buffer(header_), [self = shared_from_this()](boost::system::error_code ec, size_t) {
      if (ec) return self->gone();
      self->on_header();
    });
  }

  void on_header() {
    const uint32_t announced = wire::announced_length(header_);
    const auto length = wire::frame_length(header_);
    const uint32_t cap = session_.authenticated() ? wire::max_frame_bytes : max_handshake_frame_bytes;
    if (!length || *length > cap)
      return fatal(announced == 0 ? std::string("an empty frame")
                                  : "a frame of " + std::to_string(announced) + " bytes is over the limit of " +
                                        std::to_string(cap) + " bytes");
    length_ = *length;
    body_.clear();
    read_body();
  }

  void read_body() {
    const size_t have = body_.size();
    const size_t want = std::min<size_t>(length_ - have, read_chunk_bytes);
    body_.resize(have + want);
    net::async_read(socket_, net::buffer(body_.data() + have, want), [self = shared_from_this()](boost::system::error_code ec, size_t) {
      if (ec) return self->gone();
      if (self->body_.size() < self->length_) return self->read_body();
      self->on_body();
    });
  }

  void on_body() {
    wire::client_message msg;
    try {
      msg = wire::parse_client_message(body_);
    } catch (const wire::malformed& e) {
      return fatal(std::string("malformed message: ") + e.what());
    }
    std::vector<char>().swap(body_);  // a large prompt's bytes are not kept for the connection's life
    std::visit([this](auto& m) { handle(m); }, msg);
    read_header();
  }

  void handle(wire::hello& h) {
    if (session_.authenticated()) return fatal("hello was sent twice");
    if (h.protocol != wire::protocol_version)
      return fatal("protocol version " + std::to_string(h.protocol) + " is not supported (this server speaks " +
                   std::to_string(wire::protocol_version) + "): use a matching troupe client");
    if (!ep_.engine_ptr.load()) return fatal("The model is still loading; retry shortly");
    if (ep_.draining) return fatal("The server is shutting down");
    if (auto refused = session_.authenticate(h.api_key)) {
      ep_.engine_ptr.load()->internals().metrics->on_rejected(reject_reason::unauthorized);
      return fatal(*refused);
    }
    timer_.cancel();
    send(wire::welcome{});
  }

  bool check_handshake() {
    if (session_.authenticated()) return true;
    fatal("the first message must be hello (with the API key)");
    return false;
  }

  void handle(wire::job& j) {
    if (!check_handshake()) return;
    engine& e = *ep_.engine_ptr.load();
    if (!j.prompt_token_ids.empty()) return submit(j, std::move(j.prompt_token_ids));
    if (!e.tok())
      return send(wire::submitted{j.tag, 0, "The model has no tokenizer.json: send prompt_token_ids", "BadRequestError", 0, 0});
    // A long text takes a while to tokenize (8 MB: half a second): off this thread, which serves every client.
    net::post(ep_.tokenizing, [self = shared_from_this(), j = std::move(j), tok = e.tok(), gate = ep_.gate]() mutable {
      std::vector<int32_t> ids;
      std::string error;
      try {
        ids = tok->encode(j.prompt, true);
      } catch (const std::exception& ex) {
        error = std::string("The prompt cannot be tokenized: ") + ex.what();
      }
      gate->post([self, j = std::move(j), ids = std::move(ids), error = std::move(error)]() mutable {
        if (self->closed_ || self->closing_) return;
        if (!error.empty()) return self->send(wire::submitted{j.tag, 0, error, "BadRequestError", 0, 0});
        self->submit(j, std::move(ids));
      });
    });
  }

  // Admits a job whose prompt is tokenized and hands it to the engine.
  void submit(const wire::job& j, std::vector<int32_t> prompt_ids) {
    engine& e = *ep_.engine_ptr.load();
    if (ep_.draining) {
      e.internals().metrics->on_rejected(reject_reason::draining);
      return send(wire::submitted{j.tag, 0, "The server is shutting down", "ServiceUnavailableError", 0, 0});
    }
    sampling_params params;
    try {
      params = params_of(j);
    } catch (const std::invalid_argument& bad) {
      return send(wire::submitted{j.tag, 0, bad.what(), "BadRequestError", 0, 0});
    }
    const int32_t num_prompt = static_cast<int32_t>(std::min<size_t>(prompt_ids.size(), INT32_MAX));
    auto admitted = session_.admit(num_prompt, j.max_tokens);
    if (auto* refusal = std::get_if<admission_refusal>(&admitted)) {
      e.internals().metrics->on_rejected(reject_reason_of(*refusal));
      return send(wire::submitted{j.tag, 0, refusal->message, refusal->type, refusal->retry_after_s, 0});
    }
    const uint64_t job_id = std::get<uint64_t>(admitted);
    engine_request req;
    req.prompt_ids = std::move(prompt_ids);
    req.params = std::move(params);
    req.priority = j.priority;
    req.cache_salt = j.cache_salt;
    open_job& oj = jobs_[job_id];
    oj.tag = j.tag;
    oj.num_prompt_tokens = num_prompt;
    oj.listener = std::make_shared<job_listener>();
    oj.listener->gate = ep_.gate;
    oj.listener->conn = weak_from_this();
    oj.listener->job_id = job_id;
    ++ep_.num_jobs;
    oj.sink = spawn_completion_sink(e, {std::move(req)}, oj.listener);
  }

  void handle(wire::abort_job& a) {
    if (!check_handshake()) return;
    // Only this connection's jobs: another client's id (or a made-up one) is answered like a finished one.
    auto it = jobs_.find(a.job_id);
    if (it == jobs_.end()) return send(wire::aborted{a.tag, false});
    if (it->second.engine_id) caf::anon_send(ep_.engine_ptr.load()->internals().scheduler, abort_atom::value, it->second.engine_id);
    else it->second.abort_pending = true;
    send(wire::aborted{a.tag, true});
  }

  void handle(wire::stats_request& s) {
    if (!check_handshake()) return;
    auto& in = ep_.engine_ptr.load()->internals();
    in.system.spawn([scheduler = in.scheduler, gate = ep_.gate, conn = weak_from_this(), tag = s.tag](caf::event_based_actor* self) {
      self->request(scheduler, caf::infinite, stats_atom::value)
          .then(
              [=](engine_stats& st) {
                gate->post([conn, tag, st] {
                  if (auto c = conn.lock())
                    c->send(wire::stats{tag, st.num_running, st.num_waiting, st.num_free_blocks, st.num_blocks,
                                        st.sched.num_preemptions});
                });
              },
              [=](caf::error&) {
                gate->post([conn] {
                  if (auto c = conn.lock()) c->fatal("The engine is not running");
                });
              });
    });
  }

  void end_job(uint64_t job_id) {
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return;
    session_.end(job_id);
    --ep_.num_jobs;
    stop_completion_sink(it->second.sink);  // its request is over
    jobs_.erase(it);
  }

  // Sends an error the client library reports, then closes once it is written (or after `grace`).
  void fatal(const std::string& message, std::chrono::milliseconds grace = std::chrono::seconds(1)) {
    if (closing_) return;
    if (!session_.authenticated() || !jobs_.empty()) spdlog::warn("native client dropped: {}", message);
    send(wire::error{message});
    closing_ = true;
    timer_.expires_after(grace);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->gone();
    });
    write_next();
  }

  void send(const wire::server_message& m) {
    if (closed_) return;
    out_.push_back(wire::frame(m));
    if (out_.size() > ep_.opts.max_pending_frames && !cut_off_) {
      // Later, not here: the caller may be walking this connection's jobs.
      cut_off_ = true;
      spdlog::warn("a native client fell {} messages behind; cutting it off", out_.size());
      net::post(socket_.get_executor(), [self = shared_from_this()] { self->gone(); });
      return;
    }
    write_next();
  }

  void write_next() {
    if (writing_ || closed_) return;
    if (out_.empty()) {
      if (closing_) gone();
      return;
    }
    writing_ = true;
    net::async_write(socket_, net::buffer(out_.front()), [self = shared_from_this()](boost::system::error_code ec, size_t) {
      self->writing_ = false;
      if (self->closed_) return;
      self->out_.pop_front();
      if (ec) return self->gone();
      self->write_next();
    });
  }

  // The connection is over (closed by either side, or dropped): its jobs are aborted.
  void gone() {
    if (closed_) return;
    closed_ = true;
    release_jobs("its client went away");
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    timer_.cancel();
    ep_.connections.erase(this);
  }

  tcp::socket socket_;
  client_endpoint::impl& ep_;
  client_session session_;
  net::steady_timer timer_;  // the handshake's deadline, then the last write's
  std::array<char, wire::frame_header_bytes> header_{};
  uint32_t length_ = 0;
  std::vector<char> body_;
  std::deque<std::vector<char>> out_;
  bool writing_ = false;
  bool closing_ = false;  // an error was sent: close once it is written
  bool closed_ = false;
  bool cut_off_ = false;  // fell too far behind: to be closed
  std::unordered_map<uint64_t, open_job> jobs_;
};

void job_listener::on_event(completion_event ev) {
  gate->post([conn = conn, id = job_id, ev = std::move(ev)]() mutable {
    if (auto c = conn.lock()) c->on_job_event(id, ev);
  });
}

void connection::on_job_event(uint64_t job_id, completion_event& ev) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || closed_) return;
  open_job& j = it->second;
  switch (ev.what) {
    case completion_event::kind::submitted:
      j.engine_id = ev.id;
      j.replied = true;
      send(wire::submitted{j.tag, job_id, "", "", 0, j.num_prompt_tokens});
      if (j.abort_pending) caf::anon_send(ep_.engine_ptr.load()->internals().scheduler, abort_atom::value, j.engine_id);
      return;
    case completion_event::kind::failed:
      if (!j.replied) send(wire::submitted{j.tag, 0, ev.error.message, ev.error.type, 0, 0});
      else send(wire::outputs{{failed_output(job_id, ev.error.message)}});
      return end_job(job_id);
    case completion_event::kind::outputs: {
      session_.started(job_id);
      wire::outputs batch;
      bool finished = false;
      for (const request_output& o : ev.outputs) {
        batch.list.push_back(wire_output_of(job_id, o));
        finished = finished || o.finished;
      }
      send(batch);
      if (finished) end_job(job_id);
      return;
    }
  }
}

} // namespace

void client_endpoint::impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (stopping || ec == net::error::operation_aborted) return;
    if (ec) {
      spdlog::warn("native client port: accept failed ({}); retrying in 100 ms", ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      backoff.async_wait([this](boost::system::error_code e) {
        if (!e && !stopping) accept();
      });
      return;
    }
    std::make_shared<connection>(std::move(socket), *this)->start();
    accept();
  });
}

void client_endpoint::impl::stop_all() {
  stopping = true;
  boost::system::error_code ec;
  acceptor.close(ec);
  backoff.cancel();
  for (auto& [ptr, weak] : std::unordered_map(connections))
    if (auto c = weak.lock()) c->shut_down("The server is shutting down; the job did not finish");
}

client_endpoint::client_endpoint(const client_endpoint_options& options, admission_controller& admission)
    : impl_(std::make_shared<impl>(options, admission)) {
  boost::system::error_code ec;
  const auto address = net::ip::make_address(options.host, ec);
  if (ec) throw user_error("--client-host " + options.host + " is not an IP address");
  const tcp::endpoint endpoint(address, options.port);
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw user_error("cannot listen for native clients on " + options.host + ":" + std::to_string(options.port) + ": " +
                     ec.message() + " (another troupe server? give this one another --client-port, or --client-port -1 "
                     "to turn the native client API off)");
  impl_->accept();
  impl_->ran_out = impl_->ran_out_promise.get_future();
  impl_->thread = std::thread([in = impl_.get()] {
    in->ioc.run();
    in->ran_out_promise.set_value();
  });
}

void client_endpoint::attach(engine& e) { impl_->engine_ptr = &e; }
void client_endpoint::begin_draining() { impl_->draining = true; }
uint16_t client_endpoint::port() const { return impl_->acceptor.local_endpoint().port(); }
int64_t client_endpoint::num_jobs() const { return impl_->num_jobs; }

void client_endpoint::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  // The I/O thread tells every client, closes every connection and runs out of work; a client that does not
  // read its last messages has a second (fatal's timer) before its connection is closed regardless.
  net::post(impl_->ioc, [in = impl_.get()] { in->stop_all(); });
  if (impl_->ran_out.wait_for(std::chrono::seconds(1)) != std::future_status::ready) impl_->ioc.stop();
  impl_->thread.join();
  impl_->tokenizing.stop();
  impl_->tokenizing.join();
  impl_->gate->close();
  // Whatever a stopped io_context still holds lets go of its sinks now, while the actor system runs.
  for (auto& [ptr, weak] : impl_->connections)
    if (auto c = weak.lock()) c->release_jobs("the server stopped");
}

client_endpoint::~client_endpoint() { stop(); }

} // namespace troupe
