#include "actors/worker_link.hpp"

namespace troupe {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

} // namespace

worker_link::worker_link(net::io_context& ioc, std::string host, uint16_t port, std::string api_key,
                         std::function<void()> on_up, std::function<void(const std::string&)> on_down)
    : ioc_(ioc), socket_(ioc), resolver_(ioc), timer_(ioc), host_(std::move(host)), port_(port), api_key_(std::move(api_key)),
      on_up_(std::move(on_up)), on_down_(std::move(on_down)) {}

void worker_link::connect(double timeout_s) {
  timer_.expires_after(seconds(timeout_s));
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec && !self->up_) self->fail("no handshake within the health check's timeout");
  });
  resolver_.async_resolve(host_, std::to_string(port_), [self = shared_from_this()](boost::system::error_code ec, tcp::resolver::results_type found) {
    if (self->closed_) return;
    if (ec) return self->fail("cannot resolve " + self->host_ + ": " + ec.message());
    net::async_connect(self->socket_, found, [self](boost::system::error_code ec2, const tcp::endpoint&) {
      if (self->closed_) return;
      if (ec2) return self->fail("cannot connect to its native client port: " + ec2.message());
      boost::system::error_code ignored;
      self->socket_.set_option(tcp::no_delay(true), ignored);  // every job and token goes out at once
      self->send(wire::hello{wire::protocol_version, self->api_key_});
      self->read_header();
    });
  });
}

void worker_link::read_header() {
  net::async_read(socket_, net::buffer(header_), [self = shared_from_this()](boost::system::error_code ec, size_t) {
    if (self->closed_) return;
    if (ec) return self->fail(ec == net::error::eof ? "the worker closed the connection" : "the connection was lost: " + ec.message());
    const auto length = wire::frame_length(self->header_);
    if (!length) return self->fail("the worker sent a frame over the size limit");
    self->read_body(*length);
  });
}

void worker_link::read_body(uint32_t length) {
  body_.resize(length);
  net::async_read(socket_, net::buffer(body_), [self = shared_from_this()](boost::system::error_code ec, size_t) {
    if (self->closed_) return;
    if (ec) return self->fail("the connection was lost: " + ec.message());
    wire::server_message m;
    try {
      m = wire::parse_server_message(self->body_);
    } catch (const wire::malformed& e) {
      return self->fail(std::string("the worker sent a malformed message: ") + e.what());
    }
    self->on_message(m);
    if (!self->closed_) self->read_header();
  });
}

void worker_link::on_message(wire::server_message& m) {
  if (std::holds_alternative<wire::welcome>(m)) {
    if (up_) return;
    up_ = true;
    timer_.cancel();
    if (on_up_) on_up_();
    return;
  }
  if (auto* e = std::get_if<wire::error>(&m)) return fail("the worker closed the connection: " + e->message);
  if (auto* s = std::get_if<wire::submitted>(&m)) {
    auto it = jobs_.find(s->tag);
    if (it == jobs_.end()) {
      // Aborted before the worker answered: abort it there now that it has an id.
      if (s->job_id != 0) send(wire::abort_job{next_tag_++, s->job_id});
      return;
    }
    const std::shared_ptr<link_job> job = it->second.job;
    if (s->job_id == 0) {
      jobs_.erase(it);
    } else {
      it->second.job_id = s->job_id;
      tag_of_job_[s->job_id] = s->tag;
    }
    job->on_submitted(*s);
    return;
  }
  if (auto* o = std::get_if<wire::outputs>(&m)) {
    for (const wire::output& out : o->list) {
      const auto t = tag_of_job_.find(out.job_id);
      if (t == tag_of_job_.end()) continue;  // aborted meanwhile
      const auto it = jobs_.find(t->second);
      const std::shared_ptr<link_job> job = it->second.job;
      if (out.finished) {
        jobs_.erase(it);
        tag_of_job_.erase(t);
      }
      job->on_output(out);
      if (closed_) return;
    }
    return;
  }
  if (auto* st = std::get_if<wire::stats>(&m)) {
    auto it = stats_waiting_.find(st->tag);
    if (it == stats_waiting_.end()) return;
    auto done = std::move(it->second);
    stats_waiting_.erase(it);
    done(*st);
  }
  // aborted: nothing to do (the job was forgotten when abort() was called).
}

uint64_t worker_link::submit(wire::job j, std::shared_ptr<link_job> job) {
  j.tag = next_tag_++;
  jobs_[j.tag] = open_job{std::move(job), 0};
  send(j);
  return j.tag;
}

void worker_link::abort(uint64_t tag) {
  auto it = jobs_.find(tag);
  if (it == jobs_.end()) return;
  if (it->second.job_id != 0) {
    send(wire::abort_job{next_tag_++, it->second.job_id});
    tag_of_job_.erase(it->second.job_id);
  }
  jobs_.erase(it);  // a late `submitted` for it is answered with an abort (on_message)
}

void worker_link::request_stats(std::function<void(const wire::stats&)> done) {
  const uint64_t tag = next_tag_++;
  stats_waiting_[tag] = std::move(done);
  send(wire::stats_request{tag});
}

void worker_link::send(const wire::client_message& m) {
  if (closed_) return;
  out_.push_back(wire::frame(m));
  write_next();
}

void worker_link::write_next() {
  if (writing_ || closed_ || out_.empty()) return;
  writing_ = true;
  net::async_write(socket_, net::buffer(out_.front()), [self = shared_from_this()](boost::system::error_code ec, size_t) {
    self->writing_ = false;
    if (self->closed_) return;
    self->out_.pop_front();
    if (ec) return self->fail("the connection was lost: " + ec.message());
    self->write_next();
  });
}

void worker_link::fail(const std::string& why) {
  if (closed_) return;
  close(why);
  if (on_down_) on_down_(why);
}

void worker_link::close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  up_ = false;
  boost::system::error_code ec;
  timer_.cancel();
  resolver_.cancel();
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  stats_waiting_.clear();
  // Each job hears once; a job may submit elsewhere from on_lost (never to this link: it is closed).
  auto open = std::move(jobs_);
  jobs_.clear();
  tag_of_job_.clear();
  for (auto& [tag, j] : open) j.job->on_lost(why);
}

// ---- the health probe

namespace {

struct health_probe : std::enable_shared_from_this<health_probe> {
  health_probe(net::io_context& ioc, std::function<void(bool)> done) : socket(ioc), resolver(ioc), timer(ioc), done(std::move(done)) {}
  tcp::socket socket;
  tcp::resolver resolver;
  net::steady_timer timer;
  std::function<void(bool)> done;
  std::string request;
  net::streambuf reply;

  void finish(bool ok) {
    if (!done) return;
    auto d = std::move(done);
    done = nullptr;
    boost::system::error_code ec;
    timer.cancel();
    resolver.cancel();
    socket.close(ec);
    d(ok);
  }
};

} // namespace

void probe_health(net::io_context& ioc, const std::string& host, uint16_t port, double timeout_s, std::function<void(bool)> done) {
  auto p = std::make_shared<health_probe>(ioc, std::move(done));
  p->request = "GET /health HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  p->timer.expires_after(seconds(timeout_s));
  p->timer.async_wait([p](boost::system::error_code ec) {
    if (!ec) p->finish(false);
  });
  p->resolver.async_resolve(host, std::to_string(port), [p](boost::system::error_code ec, tcp::resolver::results_type found) {
    if (ec) return p->finish(false);
    net::async_connect(p->socket, found, [p](boost::system::error_code ec2, const tcp::endpoint&) {
      if (ec2) return p->finish(false);
      net::async_write(p->socket, net::buffer(p->request), [p](boost::system::error_code ec3, size_t) {
        if (ec3) return p->finish(false);
        net::async_read_until(p->socket, p->reply, "\r\n", [p](boost::system::error_code ec4, size_t n) {
          if (ec4) return p->finish(false);
          const std::string line(net::buffers_begin(p->reply.data()), net::buffers_begin(p->reply.data()) + static_cast<std::ptrdiff_t>(n));
          // "HTTP/1.1 200 OK\r\n"
          p->finish(line.size() >= 12 && line.compare(0, 5, "HTTP/") == 0 && line.compare(9, 3, "200") == 0);
        });
      });
    });
  });
}

} // namespace troupe
