#pragma once
// The engine's id for a request. The gateway maps the OpenAI-facing string id (chatcmpl-...) to
// one of these; everything below it (scheduler, KV bookkeeping) uses the integer.

#include <cstdint>

namespace troupe {

using request_id = uint64_t;

} // namespace troupe
