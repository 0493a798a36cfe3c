#include "actors/scheduler_actor.hpp"

#include "actors/shard_actor.hpp"

#include <chrono>
#include <unordered_map>

#include <spdlog/spdlog.h>

namespace troupe {
namespace {

struct scheduler_state {
  std::shared_ptr<engine_core> core;
  std::vector<shard_actor> shards;
  std::shared_ptr<shard_resources> lone;  // one shard, run in this thread (spawn_scheduler)
  plan_ptr planned;                       // lone: the step planned, which step_atom runs
  std::unordered_map<request_id, output_sink> sinks;
  std::unordered_map<caf::actor_addr, int32_t> watched;  // sinks monitored, with their open requests
  request_id next_id = 1;
  bool in_flight = false;
  step_result result;  // shard 0's reply to the step in flight
  int64_t num_step_errors = 0;
  std::shared_ptr<std::atomic<bool>> healthy;
  stall_watch watch;
  bool stalled = false;  // a step outlived watch.timeout: no more steps, every request failed
  int64_t schedule_ns = 0, update_ns = 0, execute_ns = 0, step_ns = 0, mask_ns = 0, mask_wait_ns = 0;
  int64_t num_decode_steps = 0, decode_step_ns = 0;  // steps of one token a sequence
  std::chrono::steady_clock::time_point step_start;
  static inline const char* name = "scheduler";
};

using self_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

// Forgets a request's sink; stops watching the sink once it has no open request.
void drop_sink(self_ptr self, std::unordered_map<request_id, output_sink>::iterator it) {
  auto& st = self->state;
  const caf::actor_addr addr = it->second.address();
  st.sinks.erase(it);
  auto w = st.watched.find(addr);
  if (w != st.watched.end() && --w->second == 0) {
    self->demonitor(addr);
    st.watched.erase(w);
  }
}

// Sends each sink one message with all of its requests' outputs, sinks in the order their first output came. Sinks are
// told apart by their control blocks (no actor_addr, whose weak reference counts twice an output, is made for them).
void deliver(self_ptr self, std::vector<request_output> outputs) {
  auto& st = self->state;
  std::vector<std::pair<output_sink, output_batch>> batches;
  std::unordered_map<const caf::actor_control_block*, size_t> batch_of;  // sink → its place in batches
  const caf::actor_control_block* last = nullptr;  // consecutive outputs mostly share a sink
  size_t last_batch = 0;
  for (auto& out : outputs) {
    auto it = st.sinks.find(out.id);
    if (it == st.sinks.end()) continue;
    const caf::actor_control_block* sink = caf::actor_cast<caf::actor_control_block*>(it->second);
    if (sink != last || batches.empty()) {
      const auto [at, fresh] = batch_of.try_emplace(sink, batches.size());
      if (fresh) batches.emplace_back(it->second, output_batch{}).second.reserve(outputs.size());
      last = sink;
      last_batch = at->second;
    }
    const bool finished = out.finished;
    batches[last_batch].second.push_back(std::move(out));
    if (finished) drop_sink(self, it);
  }
  for (auto& [sink, batch] : batches) self->send(sink, output_atom::value, std::move(batch));
}

void start_step(self_ptr self);

int64_t ns_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t).count();
}

void finish_step(self_ptr self, const plan_ptr& plan) {
  auto& st = self->state;
  st.in_flight = false;
  st.execute_ns += st.result.execute_ns;
  st.mask_ns += st.result.mask_ns;
  st.mask_wait_ns += st.result.mask_wait_ns;
  const auto update_start = std::chrono::steady_clock::now();
  if (st.result.error.empty()) {
    try {
      deliver(self, st.core->update(*plan, st.result));
    } catch (const std::exception& e) {
      st.result.error = e.what();
    }
  }
  st.update_ns += ns_since(update_start);
  const int64_t step_ns = ns_since(st.step_start);
  st.step_ns += step_ns;
  if (plan->is_decode()) {
    ++st.num_decode_steps;
    st.decode_step_ns += step_ns;
  }
  if (!st.result.error.empty()) {
    ++st.num_step_errors;
    spdlog::error("step {} failed: {}; its requests are failed, the engine goes on", plan->step, st.result.error);
    deliver(self, st.core->fail(*plan, "internal error: " + st.result.error));
  }
  start_step(self);
}

// A step of several shards outlived its timeout: a rank died or a collective stalled, so no later step can
// be trusted. Every request ends with an error now, rather than waiting for a step that never comes.
void declare_stalled(self_ptr self, uint64_t step) {
  auto& st = self->state;
  if (st.stalled) return;
  st.stalled = true;
  if (st.healthy) *st.healthy = false;
  const std::string what = "step " + std::to_string(step) + " did not finish within " +
                           std::to_string(st.watch.timeout.count() / 1000.0).substr(0, 4) +
                           " s: a tensor-parallel rank died or a collective stalled";
  spdlog::critical("{}; failing every request", what);
  deliver(self, st.core->fail_all("internal error: " + what));
  if (st.watch.on_stall) st.watch.on_stall(what);
}

void start_step(self_ptr self) {
  auto& st = self->state;
  if (st.in_flight || st.stalled || !st.core->has_work()) return;
  st.step_start = std::chrono::steady_clock::now();
  auto plan = std::make_shared<const step_plan>(st.core->schedule());
  st.schedule_ns += ns_since(st.step_start);
  if (plan->seqs.empty()) {
    // Work exists but none can run now (all waiting for blocks that running requests hold cannot be: a
    // lone request always fits). Nothing to do until a request arrives or is aborted.
    return;
  }
  st.in_flight = true;
  st.result = step_result{};
  if (st.lone) {
    st.planned = std::move(plan);
    self->send(self, step_atom::value);
    return;
  }
  const caf::duration timeout = st.watch.timeout.count() > 0 ? caf::duration(st.watch.timeout) : caf::infinite;
  // The other shards get the plan without a reply: they run in lockstep with shard 0 (every collective
  // waits for all), so shard 0's reply means the step is done, and one reply per step instead of N keeps
  // the fan-out's cost flat as shards are added. A shard that fails alone logs it and stalls the
  // collectives, which the stall watch reports.
  self->request(st.shards[0], timeout, execute_atom::value, plan)
      .then(
          [self, plan](step_result& r) {
            auto& s = self->state;
            if (s.stalled) return;
            s.result = std::move(r);
            finish_step(self, plan);
          },
          [self, plan](caf::error& e) {
            auto& s = self->state;
            if (s.stalled) return;
            if (e == caf::sec::request_timeout) return declare_stalled(self, plan->step);
            s.result.error = "shard failed: " + self->system().render(e);
            finish_step(self, plan);
          });
  for (size_t i = 1; i < st.shards.size(); ++i) caf::anon_send(st.shards[i], execute_atom::value, plan);
}

scheduler_actor::behavior_type scheduler_fn(self_ptr self, std::shared_ptr<engine_core> core,
                                            std::vector<shard_actor> shards, std::shared_ptr<std::atomic<bool>> healthy,
                                            stall_watch watch, std::shared_ptr<shard_resources> lone) {
  self->state.watch = std::move(watch);
  self->state.lone = std::move(lone);
  self->state.core = std::move(core);
  self->state.shards = std::move(shards);
  self->state.healthy = std::move(healthy);
  // A shard that goes away takes the engine's ability to run steps with it.
  for (const auto& shard : self->state.shards) self->monitor(shard);
  // A sink that goes away (a client that vanished) aborts its requests.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    for (const auto& shard : st.shards)
      if (shard.address() == msg.source) {
        spdlog::error("a shard stopped ({}); the engine cannot run steps and reports unhealthy",
                      self->system().render(msg.reason));
        if (st.healthy) *st.healthy = false;
        return;
      }
    std::vector<request_id> gone;
    for (const auto& [id, sink] : st.sinks)
      if (sink.address() == msg.source) gone.push_back(id);
    for (request_id id : gone) {
      st.sinks.erase(id);
      st.core->abort(id);
    }
    st.watched.erase(msg.source);
    start_step(self);
  });
  // Queues one request for `sink` (watched, so that its going away aborts the request); the caller starts the step.
  auto admit = [self](engine_request& req, const output_sink& sink) -> submit_reply {
    auto& st = self->state;
    if (st.stalled) return {0, "the engine stopped: a tensor-parallel step stalled; the server is shutting down"};
    req.id = st.next_id++;
    const request_id id = req.id;
    if (std::string error = st.core->add(std::move(req)); !error.empty()) return {0, std::move(error)};
    if (st.watched[sink.address()]++ == 0) self->monitor(sink);
    st.sinks.emplace(id, sink);
    return {id, ""};
  };
  return {
      [self, admit](submit_atom, engine_request& req, output_sink& sink) -> submit_reply {
        submit_reply r = admit(req, sink);
        start_step(self);
        return r;
      },
      [self, admit](submit_atom, std::vector<engine_request>& reqs, output_sink& sink) -> std::vector<submit_reply> {
        std::vector<submit_reply> replies;
        replies.reserve(reqs.size());
        for (engine_request& req : reqs) replies.push_back(admit(req, sink));
        start_step(self);
        return replies;
      },
      [self](abort_atom, request_id id) {
        auto& st = self->state;
        if (auto out = st.core->abort(id)) deliver(self, {std::move(*out)});
        start_step(self);
      },
      [self](fail_all_atom, const std::string& error) { deliver(self, self->state.core->fail_all(error)); },
      [self](step_atom) {
        auto& st = self->state;
        if (!st.planned) return;
        const plan_ptr plan = std::move(st.planned);  // leaves it empty
        st.result = run_shard_step(*st.lone, *plan);
        finish_step(self, plan);
      },
      [self](stats_atom) -> engine_stats {
        engine_stats s = self->state.core->snapshot();
        const auto& st = self->state;
        s.num_step_errors = st.num_step_errors;
        s.schedule_ns = st.schedule_ns;
        s.update_ns = st.update_ns;
        s.execute_ns = st.execute_ns;
        s.mask_ns = st.mask_ns;
        s.mask_wait_ns = st.mask_wait_ns;
        s.step_ns = st.step_ns;
        s.num_decode_steps = st.num_decode_steps;
        s.decode_step_ns = st.decode_step_ns;
        return s;
      },
  };
}

} // namespace

scheduler_actor spawn_scheduler(caf::actor_system& sys, std::unique_ptr<engine_core> core, std::vector<shard_actor> shards,
                                std::shared_ptr<std::atomic<bool>> healthy, stall_watch watch,
                                std::shared_ptr<shard_resources> lone) {
  // Detached: the step loop has a thread of its own and wakes as soon as a reply arrives, instead of
  // waiting for a pooled worker to come back from its polling sleep.
  return sys.spawn<caf::detached>(scheduler_fn, std::shared_ptr<engine_core>(std::move(core)), std::move(shards),
                                  std::move(healthy), std::move(watch), std::move(lone));
}

} // namespace troupe
