#include "troupe/client.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.hpp"

namespace troupe {
namespace {

struct callbacks {
  std::function<void(const job_event&)> on_event;
  std::function<void(const job_result&)> on_done;
};

struct job_state {
  std::shared_ptr<const callbacks> cb;
  job_result result;
  bool done = false;  // set after on_done has run
};

// Runs the jobs' callbacks in order on a thread of its own, so that a callback may call back into the client
// (cancel, submit, stats) while the reader thread goes on reading the replies.
class callback_thread {
public:
  callback_thread() : thread_([this] { run(); }) {}
  ~callback_thread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(f));
    }
    cv_.notify_all();
  }

private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything posted has run
      auto f = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      f();
      lock.lock();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// Sends all of `bytes`; false when the connection is gone.
bool send_all(int fd, const std::vector<char>& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly size bytes; false on EOF, error or timeout.
bool read_exactly(int fd, char* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd, data + got, size - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// One message from the server, or an empty optional with `why` set.
std::optional<wire::server_message> read_message(int fd, std::string& why) {
  std::array<char, wire::frame_header_bytes> header;
  if (!read_exactly(fd, header.data(), header.size())) {
    why = "the connection to the server was lost";
    return std::nullopt;
  }
  const auto length = wire::frame_length(header);
  if (!length) {
    why = "the server sent a frame larger than " + std::to_string(wire::max_frame_bytes) + " bytes";
    return std::nullopt;
  }
  std::vector<char> body(*length);
  if (!read_exactly(fd, body.data(), body.size())) {
    why = "the connection to the server was lost";
    return std::nullopt;
  }
  try {
    return wire::parse_server_message(body);
  } catch (const wire::malformed& e) {
    why = std::string("malformed message from the server: ") + e.what();
    return std::nullopt;
  }
}

void set_receive_timeout(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// A connected TCP socket, or -1 with `why` set.
int open_socket(const std::string& host, uint16_t port, double timeout_s, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0) {
    why = ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout_s);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() too
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    why = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd >= 0) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval none{};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  }
  return fd;
}

} // namespace

struct client::impl {
  int fd = -1;
  std::mutex write_mutex;
  std::thread reader;

  std::mutex mutex;
  std::condition_variable cv;
  uint64_t next_tag = 1;
  std::unordered_map<uint64_t, callbacks> pending;                   // submit tag -> the job's callbacks
  std::unordered_map<uint64_t, wire::server_message> replies;        // tag -> the server's answer
  std::unordered_map<uint64_t, job_state> jobs;
  std::optional<std::string> lost;  // why the connection ended
  std::atomic<bool> closing = false;  // the client is being destroyed: its callbacks are not called any more
  std::unique_ptr<callback_thread> callbacks_thread = std::make_unique<callback_thread>();

  ~impl() {
    closing = true;
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    if (reader.joinable()) reader.join();
    callbacks_thread.reset();
    if (fd >= 0) ::close(fd);
  }

  // Marks a job done once its callbacks have run, so wait() returns after on_done.
  void post_done(uint64_t job_id, std::shared_ptr<const callbacks> cb, std::optional<job_event> event,
                 std::optional<job_result> result) {
    callbacks_thread->post([this, job_id, cb = std::move(cb), event = std::move(event), result = std::move(result)] {
      if (!closing && cb) {
        if (event && cb->on_event) cb->on_event(*event);
        if (result && cb->on_done) cb->on_done(*result);
      }
      if (!result) return;
      std::lock_guard lock(mutex);
      if (auto it = jobs.find(job_id); it != jobs.end()) it->second.done = true;
      cv.notify_all();
    });
  }

  // Sends a request and waits for the reply with its tag; throws when the connection is lost first.
  wire::server_message call(const wire::client_message& m, uint64_t tag) {
    {
      std::lock_guard lock(write_mutex);
      if (!send_all(fd, wire::frame(m))) {
        std::lock_guard l(mutex);
        pending.erase(tag);
        throw std::runtime_error(lost.value_or("the connection to the server was lost"));
      }
    }
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return replies.count(tag) || lost; });
    auto it = replies.find(tag);
    if (it == replies.end()) {
      pending.erase(tag);
      throw std::runtime_error(*lost);
    }
    wire::server_message reply = std::move(it->second);
    replies.erase(it);
    return reply;
  }

  uint64_t new_tag() {
    std::lock_guard lock(mutex);
    if (lost) throw std::runtime_error(*lost);
    return next_tag++;
  }

  void read_loop() {
    std::string why;
    while (auto m = read_message(fd, why)) {
      if (auto* e = std::get_if<wire::error>(&*m)) {
        why = "the server closed the connection: " + e->message;
        break;
      }
      if (auto* o = std::get_if<wire::outputs>(&*m)) {
        for (const wire::output& out : o->list) apply(out);
        continue;
      }
      std::lock_guard lock(mutex);
      uint64_t tag = 0;
      if (auto* s = std::get_if<wire::submitted>(&*m)) {
        tag = s->tag;
        auto cb = pending.extract(tag);
        if (s->job_id != 0) {
          job_state& st = jobs[s->job_id];
          if (!cb.empty()) st.cb = std::make_shared<const callbacks>(std::move(cb.mapped()));
          st.result.job_id = s->job_id;
          st.result.num_prompt_tokens = s->num_prompt_tokens;
        }
      } else if (auto* a = std::get_if<wire::aborted>(&*m)) {
        tag = a->tag;
      } else if (auto* st = std::get_if<wire::stats>(&*m)) {
        tag = st->tag;
      } else {
        continue;  // a second welcome: nothing to do
      }
      replies.emplace(tag, std::move(*m));
      cv.notify_all();
    }
    connection_lost(why);
  }

  // Adds one output to its job; its callbacks run on the callback thread.
  void apply(const wire::output& out) {
    std::lock_guard lock(mutex);
    auto it = jobs.find(out.job_id);
    if (it == jobs.end() || it->second.done) return;
    job_state& st = it->second;
    st.result.token_ids.insert(st.result.token_ids.end(), out.token_ids.begin(), out.token_ids.end());
    st.result.text += out.text;
    std::optional<job_event> event;
    if (!out.token_ids.empty() || !out.text.empty()) {
      event = job_event{out.job_id, out.token_ids, out.text, std::nullopt, {}, {}};
      if (out.has_logprobs) {
        event->logprob = out.logprob;
        event->top_ids = out.top_ids;
        event->top_logprobs = out.top_logprobs;
      }
    }
    std::optional<job_result> result;
    if (out.finished) {
      st.result.finish_reason = out.finish_reason;
      st.result.error = out.error;
      if (out.num_prompt_tokens) st.result.num_prompt_tokens = out.num_prompt_tokens;
      st.result.num_cached_tokens = out.num_cached_tokens;
      st.result.stop_string = out.stop_string;
      if (out.has_stop_token) st.result.stop_token = out.stop_token;
      result = st.result;
    }
    if (event || result) post_done(out.job_id, st.cb, std::move(event), std::move(result));
  }

  // Every unfinished job ends with the reason; every call waiting for a reply throws it.
  void connection_lost(const std::string& why) {
    std::lock_guard lock(mutex);
    lost = why;
    for (auto& [id, st] : jobs) {
      if (st.done || !st.result.finish_reason.empty()) continue;  // done, or its last output is being delivered
      st.result.finish_reason = "error";
      st.result.error = why;
      post_done(id, st.cb, std::nullopt, st.result);
    }
    cv.notify_all();
  }
};

client::client(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
client::~client() = default;

std::unique_ptr<client> client::connect(const std::string& host, uint16_t port, const client_options& options) {
  const std::string where = host + ":" + std::to_string(port);
  std::string why;
  auto p = std::make_unique<impl>();
  p->fd = open_socket(host, port, options.connect_timeout_s, why);
  if (p->fd < 0) throw std::runtime_error("cannot reach a troupe server at " + where + ": " + why);

  set_receive_timeout(p->fd, options.connect_timeout_s);
  if (!send_all(p->fd, wire::frame(wire::hello{wire::protocol_version, options.api_key})))
    throw std::runtime_error("cannot reach a troupe server at " + where + ": the connection closed");
  const auto answer = read_message(p->fd, why);
  if (!answer) throw std::runtime_error("no troupe server answered the handshake at " + where + ": " + why);
  if (auto* e = std::get_if<wire::error>(&*answer))
    throw std::runtime_error("the troupe server at " + where + " refused the connection: " + e->message);
  if (!std::holds_alternative<wire::welcome>(*answer))
    throw std::runtime_error("no troupe server answered the handshake at " + where + ": unexpected reply");
  set_receive_timeout(p->fd, 0);  // from now on the reader waits as long as jobs run

  impl* raw = p.get();
  p->reader = std::thread([raw] { raw->read_loop(); });
  return std::unique_ptr<client>(new client(std::move(p)));
}

uint64_t client::submit(const job& j, std::function<void(const job_event&)> on_event,
                        std::function<void(const job_result&)> on_done) {
  wire::job w;
  w.prompt = j.prompt;
  w.prompt_token_ids = j.prompt_token_ids;
  w.max_tokens = j.max_tokens;
  w.min_tokens = j.min_tokens;
  w.temperature = j.temperature;
  w.top_p = j.top_p;
  w.top_k = j.top_k;
  w.min_p = j.min_p;
  w.repetition_penalty = j.repetition_penalty;
  w.presence_penalty = j.presence_penalty;
  w.frequency_penalty = j.frequency_penalty;
  w.has_seed = j.seed.has_value();
  w.seed = j.seed.value_or(0);
  w.ignore_eos = j.ignore_eos;
  w.stop = j.stop;
  w.stop_token_ids = j.stop_token_ids;
  w.include_stop_str_in_output = j.include_stop_str_in_output;
  for (const auto& [token, bias] : j.logit_bias) {
    w.logit_bias_ids.push_back(token);
    w.logit_bias_values.push_back(bias);
  }
  w.num_logprobs = j.logprobs.value_or(-1);
  w.cache_salt = j.cache_salt;
  w.priority = j.priority;
  w.structured_kind = j.structured_kind;
  w.structured_text = j.structured_text;

  w.tag = impl_->new_tag();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->pending[w.tag] = callbacks{std::move(on_event), std::move(on_done)};
  }
  const auto reply = std::get<wire::submitted>(impl_->call(w, w.tag));
  if (reply.job_id == 0) throw job_refused(reply.error, reply.error_type, reply.retry_after_s);
  return reply.job_id;
}

bool client::cancel(uint64_t job_id) {
  const uint64_t tag = impl_->new_tag();
  return std::get<wire::aborted>(impl_->call(wire::abort_job{tag, job_id}, tag)).ok;
}

job_result client::wait(uint64_t job_id) {
  std::unique_lock lock(impl_->mutex);
  auto it = impl_->jobs.find(job_id);
  if (it == impl_->jobs.end()) {
    job_result r;
    r.job_id = job_id;
    r.finish_reason = "error";
    r.error = "no job " + std::to_string(job_id) + " of this client (unknown, or already waited for)";
    return r;
  }
  impl_->cv.wait(lock, [&] { return impl_->jobs.at(job_id).done; });  // re-found: other jobs may rehash the map
  it = impl_->jobs.find(job_id);
  job_result r = std::move(it->second.result);
  impl_->jobs.erase(it);
  return r;
}

server_stats client::stats() {
  const uint64_t tag = impl_->new_tag();
  const auto s = std::get<wire::stats>(impl_->call(wire::stats_request{tag}, tag));
  return {s.num_running, s.num_waiting, s.num_free_blocks, s.num_blocks, s.num_preemptions};
}

} // namespace troupe
