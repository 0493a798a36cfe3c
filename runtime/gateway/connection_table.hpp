#pragma once
// The gateway's open connections, for its connection cap: which are idle (waiting for or reading a
// request, nothing in progress) and since when, so that a new connection past the cap, or an accept()
// that found no file descriptor left, can close the connection idle the longest instead of turning the
// newcomer (often a /health probe) away. And the back-off between failed accept() calls: without it a
// listener whose backlog holds a connection it cannot accept (EMFILE) is ready again at once, and the
// accept loop spins.
//
// Not thread-safe: the gateway holds a lock around it.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>

namespace troupe {

class connection_table {
public:
  using clock = std::chrono::steady_clock;
  // max_connections >= 1.
  explicit connection_table(int64_t max_connections);

  // Registers a connection, idle from now; returns its id.
  uint64_t open(clock::time_point now);
  // Forgets a connection (unknown ids are ignored: a connection closes once).
  void close(uint64_t id);
  // Marks a connection idle (from now) or busy.
  void set_idle(uint64_t id, bool idle, clock::time_point now);

  // Whether as many connections are open as the cap allows.
  bool full() const { return static_cast<int64_t>(entries_.size()) >= max_; }
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  int64_t max_connections() const { return max_; }
  // The connection idle the longest, if any is idle.
  std::optional<uint64_t> longest_idle() const;

private:
  struct entry {
    bool idle = true;
    clock::time_point since;
  };
  int64_t max_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, entry> entries_;
};

// The cap when --max-connections is not given: what the process's descriptor limit leaves after a
// reserve for the rest of the server (model files, the client port, pipes), at least 8.
// nofile_limit: RLIMIT_NOFILE's soft limit (<= 0: unlimited).
int64_t default_max_connections(int64_t nofile_limit);

// Waits between failed accept() calls: doubling from `first` to `max`, back to `first` after a success.
class accept_backoff {
public:
  accept_backoff(std::chrono::milliseconds first = std::chrono::milliseconds(10),
                 std::chrono::milliseconds max = std::chrono::milliseconds(1000))
      : first_(first), max_(max), next_(first) {}
  // The wait before the next try after a failure.
  std::chrono::milliseconds next_delay();
  void reset() { next_ = first_; }

private:
  std::chrono::milliseconds first_, max_, next_;
};

} // namespace troupe
