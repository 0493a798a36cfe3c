#pragma once
// Whether a worker is in the router's rotation, from its health probes and its native connection: in while
// its /health has answered 200 (since it last went out) and its connection is up; out at the third failed
// probe in a row (a draining or hung worker: one late answer from a busy worker is not enough), or at once
// when its connection is lost (a dead process).

#include <cstdint>
#include <string>

namespace troupe {

class worker_health {
public:
  static constexpr int32_t failures_to_leave = 3;

  // A probe's result; `why` says what failed, for the log.
  void on_probe(bool ok, std::string why = {});
  // The native connection came up, or was lost (why: what happened).
  void on_connection(bool up, std::string why = {});

  bool in_rotation() const { return probe_ok_ && connected_; }
  // Whether a new native connection is worth making (its /health answers, none is up).
  bool wants_connection() const { return last_probe_ok_ && !connected_; }
  // Why it is out of rotation, for the log.
  const std::string& why_out() const { return why_; }

private:
  bool probe_ok_ = false;
  bool last_probe_ok_ = false;
  bool connected_ = false;
  int32_t failed_in_a_row_ = 0;
  std::string why_ = "not checked yet";
};

} // namespace troupe
