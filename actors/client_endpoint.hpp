#pragma once
// The server side of the native client API (client/troupe/client.hpp, protocol in client/wire.hpp): a TCP
// listener with its own I/O thread. Each connection authenticates in its handshake and its jobs pass the
// same admission as HTTP requests (runtime/gateway/client_session); each job is submitted to the scheduler through
// a sink actor, and its outputs go back to its connection only. A client that sends anything malformed or
// oversized is dropped; a client that disconnects has its jobs aborted.
//
// NOTE: neither Asio nor CAF appears here; both stay in actors/client_endpoint.cpp.

#include <cstdint>
#include <memory>
#include <string>

#include "actors/engine.hpp"
#include "runtime/gateway/admission.hpp"

namespace troupe {

struct client_endpoint_options {
  std::string host = "127.0.0.1";  // --client-host: loopback unless told otherwise
  uint16_t port = 8001;            // --client-port (0: any free port)
  int32_t max_tokens_limit = 0;    // --max-tokens-limit (0: none)
  double handshake_timeout_s = 10;   // a connection that has not said hello by then is closed
  size_t max_pending_frames = 4096;  // frames queued for a client that does not read before it is cut off
};

class client_endpoint {
public:
  // Listens at once (connections are told the model is loading until attach()); throws user_error naming
  // --client-host/--client-port when the address cannot be bound. admission must outlive the endpoint.
  client_endpoint(const client_endpoint_options& options, admission_controller& admission);
  // Serves `e` from now on; `e` must outlive stop().
  void attach(engine& e);
  // From now on new jobs are refused; running ones go on.
  void begin_draining();
  // Jobs still running: each ends with finish_reason "error" and the message that the server stopped; then
  // every connection is closed and the I/O thread joined. Idempotent.
  void stop();
  ~client_endpoint();  // stop()
  client_endpoint(const client_endpoint&) = delete;
  client_endpoint& operator=(const client_endpoint&) = delete;

  uint16_t port() const;
  // Jobs submitted and not yet ended, over all connections.
  int64_t num_jobs() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace troupe
