#pragma once
// The server side of the native client API (client/troupe/client.hpp): an actor, published with CAF's
// middleman, that takes msgpack jobs from remote clients, submits them to the scheduler as their sink,
// and streams each client its jobs' outputs. A client that disconnects has its jobs aborted.

#include <cstdint>
#include <string>

#include "actors/engine.hpp"

namespace troupe {

// Publishes the endpoint on host:port (port 0: any free port). Returns the port; throws user_error when
// the port cannot be opened.
uint16_t publish_client_endpoint(engine& e, const std::string& host, uint16_t port);

} // namespace troupe
