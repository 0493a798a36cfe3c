#pragma once
// The native client protocol's jobs and outputs (client/wire.hpp) as the engine's requests and outputs, both
// ways: the client endpoint reads jobs and writes outputs; `troupe router` writes jobs and reads outputs. Side
// by side, so that a field one direction carries is not forgotten by the other.

#include <cstdint>

#include "client/wire.hpp"
#include "runtime/engine/engine_core.hpp"

namespace troupe {

// A job's sampling parameters (logit_bias pairs beyond the shorter of its two lists are dropped). Throws
// std::invalid_argument, with a message for the client, for an unknown structured_kind.
sampling_params params_of(const wire::job& j);

// A request as a job: its prompt's token ids, sampling parameters, priority and cache salt.
wire::job job_of(const engine_request& r);

// An engine output as the output of job `job_id`.
wire::output wire_output_of(uint64_t job_id, const request_output& o);

// A job's output as the engine output of request `id`; a finished output without a reason's error gets one.
request_output request_output_of(const wire::output& o, request_id id);

} // namespace troupe
