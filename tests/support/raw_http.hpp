#pragma once
// A raw HTTP/1.1 connection for tests of protocol edges that curl will not produce: pipelined and
// malformed requests, half-closes, resets. It sends bytes as given and parses the responses it reads
// (Content-Length or chunked bodies; HEAD responses without one).

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace troupe::testing {

struct raw_response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool has(const std::string& name) const { return headers.count(name) > 0; }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class raw_connection {
public:
  explicit raw_connection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;
  ~raw_connection() {
    if (fd_ >= 0) ::close(fd_);
  }

  void send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send: " + std::string(std::strerror(errno)));
      sent += static_cast<size_t>(n);
    }
  }
  // A half-close: the client sends nothing more but still reads.
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Closes with a reset (SO_LINGER 0), as a client killed or timing out often does.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd_);
    fd_ = -1;
  }

  // The next response, or empty when the connection ends (or `timeout` passes) first.
  // head_request: the response answers a HEAD (no body whatever its Content-Length says).
  std::optional<raw_response> read_response(bool head_request = false,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return std::nullopt;
    raw_response r;
    const std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
    }
    if (head_request || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;
    if (r.has("content-length")) {
      const size_t n = std::stoul(r.header("content-length"));
      while (buffer_.size() < n)
        if (!fill(deadline)) return std::nullopt;
      r.body = buffer_.substr(0, n);
      buffer_.erase(0, n);
      return r;
    }
    if (r.header("transfer-encoding") == "chunked") {
      for (;;) {
        size_t eol;
        while ((eol = buffer_.find("\r\n")) == std::string::npos)
          if (!fill(deadline)) return std::nullopt;
        const size_t n = std::stoul(buffer_.substr(0, eol), nullptr, 16);
        while (buffer_.size() < eol + 2 + n + 2)
          if (!fill(deadline)) return std::nullopt;
        r.body += buffer_.substr(eol + 2, n);
        buffer_.erase(0, eol + 2 + n + 2);
        if (n == 0) return r;
      }
    }
    // Delimited by the end of the connection.
    while (fill(deadline)) {
    }
    r.body = std::move(buffer_);
    buffer_.clear();
    return r;
  }

  // Whether the server ends the connection (end of stream or reset) within `timeout`; bytes that come
  // before the end are read and kept.
  bool closed_by_server(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fill(deadline)) {
    }
    return !timed_out_;
  }

  // Reads whatever arrives until the first bytes are there (then returns true) or the deadline.
  bool wait_for_bytes(std::chrono::milliseconds timeout) {
    if (!buffer_.empty()) return true;
    return fill(std::chrono::steady_clock::now() + timeout);
  }
  // Reads until the bytes buffered hold `needle` (true) or the deadline passes; the bytes stay buffered.
  bool read_until(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buffer_.find(needle) == std::string::npos)
      if (!fill(deadline)) return false;
    return true;
  }
  const std::string& buffered() const { return buffer_; }
  int fd() const { return fd_; }

private:
  // Reads more into buffer_; false at the end of the stream, on an error or at the deadline.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    timed_out_ = false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out_ = true;
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      timed_out_ = true;
      return false;
    }
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  bool timed_out_ = false;
};

// One request's bytes: method, path, headers (each "Name: value"), body with its Content-Length.
inline std::string http_request(const std::string& method, const std::string& path, const std::string& body = "",
                                const std::string& extra_headers = "") {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: troupe\r\n" + extra_headers;
  if (method == "POST" || !body.empty()) r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

// The body of GET `path` on a fresh connection (empty when no response comes).
inline std::string fetch(uint16_t port, const std::string& path, const std::string& extra_headers = "") {
  raw_connection c(port);
  c.send(http_request("GET", path, "", extra_headers));
  auto r = c.read_response();
  return r ? r->body : std::string();
}

// The value of one series ("troupe:x{model_name=\"m\"}") in a /metrics text; -1 when absent.
inline double metric_value(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

} // namespace troupe::testing
