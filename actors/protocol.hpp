#pragma once
// Every message between troupe's actors, declared once. Included only by actors/*.cpp: CAF stays out of
// headers that the rest of the project includes.
//
//   client/gateway --submit--> scheduler --execute(plan)--> shard (one per GPU; the CPU backend is one)
//        ^                         |  <----step_result------'
//        '-------output------------'   one request_output per request per step, to the request's sink

#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "runtime/engine/engine_core.hpp"
#include "runtime/engine/step_plan.hpp"

namespace troupe {

using submit_atom = caf::atom_constant<caf::atom("submit")>;
using abort_atom = caf::atom_constant<caf::atom("abort")>;
using execute_atom = caf::atom_constant<caf::atom("execute")>;
using output_atom = caf::atom_constant<caf::atom("output")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using fail_all_atom = caf::atom_constant<caf::atom("failall")>;
using step_atom = caf::atom_constant<caf::atom("step")>;  // the scheduler to itself: run the planned step (one shard)

// Plans are shared, not copied, between the scheduler and the shards of one process.
using plan_ptr = std::shared_ptr<const step_plan>;

struct submit_reply {
  request_id id = 0;
  std::string error;  // non-empty: the request was refused, nothing was queued
};

// Receives the outputs of the requests it submitted: one message per step, holding one output for each
// of its requests that produced something (a request's last output has finished == true).
using output_batch = std::vector<request_output>;
using output_sink = caf::typed_actor<caf::reacts_to<output_atom, output_batch>>;

// Runs step plans on one device's weight and KV shard; shard 0's reply carries the sampled tokens.
using shard_actor = caf::typed_actor<caf::replies_to<execute_atom, plan_ptr>::with<step_result>>;

// Owns the engine's bookkeeping (engine_core) and drives the step loop.
using scheduler_actor = caf::typed_actor<
    caf::replies_to<submit_atom, engine_request, output_sink>::with<submit_reply>,
    // Several requests admitted in one message (engine::generate's batch): all queued before the next step is planned,
    // whatever the threads' timing. A reply for each, in order.
    caf::replies_to<submit_atom, std::vector<engine_request>, output_sink>::with<std::vector<submit_reply>>,
    caf::reacts_to<abort_atom, request_id>,
    caf::reacts_to<fail_all_atom, std::string>,  // ends every request with this error (shutdown)
    caf::reacts_to<step_atom>,                    // to itself: runs the step planned for its lone shard
    caf::replies_to<stats_atom>::with<engine_stats>>;

} // namespace troupe

// In-process payloads; what crosses the network is msgpack in byte buffers (see actors/client_protocol).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::plan_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::step_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::submit_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<troupe::submit_reply>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::engine_stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::engine_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<troupe::engine_request>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::output_batch)
