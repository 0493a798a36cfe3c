#include "actors/client_endpoint.hpp"

#include <unordered_map>
#include <unordered_set>

#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/engine_impl.hpp"
#include "client/wire.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

struct endpoint_state {
  scheduler_actor scheduler;
  const tokenizer* tok = nullptr;
  std::unordered_map<request_id, caf::actor> owner;  // job -> the client actor its outputs go to
  std::unordered_map<caf::actor_addr, std::unordered_set<request_id>> jobs_of;
  static inline const char* name = "client_endpoint";
};

sampling_params to_params(const wire::job& j) {
  sampling_params p;
  p.max_tokens = j.max_tokens;
  p.min_tokens = j.min_tokens;
  p.temperature = j.temperature;
  p.top_p = j.top_p;
  p.top_k = j.top_k;
  p.min_p = j.min_p;
  p.repetition_penalty = j.repetition_penalty;
  p.presence_penalty = j.presence_penalty;
  p.frequency_penalty = j.frequency_penalty;
  if (j.has_seed) p.seed = j.seed;
  p.ignore_eos = j.ignore_eos;
  p.stop = j.stop;
  p.stop_token_ids = j.stop_token_ids;
  return p;
}

wire::output to_wire(const request_output& o) {
  wire::output w;
  w.job_id = o.id;
  w.token_ids = o.new_token_ids;
  w.text = o.text;
  w.finished = o.finished;
  if (o.finished)
    w.finish_reason = !o.error.empty() ? "error" : o.aborted ? "abort" : std::string(to_string(o.reason));
  w.error = o.error;
  w.num_prompt_tokens = o.num_prompt_tokens;
  w.num_cached_tokens = o.num_cached_tokens;
  return w;
}

using self_ptr = caf::stateful_actor<endpoint_state>*;

caf::behavior endpoint_fn(self_ptr self, scheduler_actor scheduler, const tokenizer* tok) {
  self->state.scheduler = scheduler;
  self->state.tok = tok;
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.jobs_of.find(msg.source);
    if (it == st.jobs_of.end()) return;
    for (request_id id : it->second) {
      st.owner.erase(id);
      self->send(st.scheduler, abort_atom::value, id);
    }
    spdlog::info("a native client went away; {} of its jobs aborted", it->second.size());
    st.jobs_of.erase(it);
  });
  return {
      [self](submit_atom, const std::vector<char>& bytes, caf::actor events_to) -> caf::result<std::vector<char>> {
        auto& st = self->state;
        wire::job job;
        try {
          job = wire::unpack<wire::job>(bytes);
        } catch (const std::exception& e) {
          return wire::pack(wire::submit_reply{0, std::string("malformed job: ") + e.what(), 0});
        }
        engine_request req;
        if (!job.prompt_token_ids.empty()) {
          req.prompt_ids = job.prompt_token_ids;
        } else if (st.tok) {
          req.prompt_ids = st.tok->encode(job.prompt, true);
        } else {
          return wire::pack(wire::submit_reply{0, "the model has no tokenizer: send prompt_token_ids", 0});
        }
        const int32_t num_prompt = static_cast<int32_t>(req.prompt_ids.size());
        req.params = to_params(job);
        req.priority = job.priority;
        auto rp = self->make_response_promise<std::vector<char>>();
        self->request(st.scheduler, caf::infinite, submit_atom::value, std::move(req),
                      caf::actor_cast<output_sink>(self))
            .then(
                [self, rp, events_to, num_prompt](submit_reply& r) mutable {
                  auto& st = self->state;
                  if (r.error.empty()) {
                    st.owner.emplace(r.id, events_to);
                    auto& jobs = st.jobs_of[events_to.address()];
                    if (jobs.empty()) self->monitor(events_to);
                    jobs.insert(r.id);
                  }
                  rp.deliver(wire::pack(wire::submit_reply{r.id, r.error, num_prompt}));
                },
                [rp](caf::error&) mutable { rp.deliver(wire::pack(wire::submit_reply{0, "the engine is not running", 0})); });
        return rp;
      },
      [self](abort_atom, uint64_t job_id) {
        if (self->state.owner.count(job_id)) self->send(self->state.scheduler, abort_atom::value, job_id);
      },
      [self](stats_atom) -> caf::result<std::vector<char>> {
        auto rp = self->make_response_promise<std::vector<char>>();
        self->request(self->state.scheduler, caf::infinite, stats_atom::value)
            .then([rp](engine_stats& s) mutable {
              rp.deliver(wire::pack(wire::stats{s.num_running, s.num_waiting, s.num_free_blocks, s.num_blocks,
                                                s.sched.num_preemptions}));
            });
        return rp;
      },
      // From the scheduler: outputs of the jobs this endpoint submitted, regrouped per client.
      [self](output_atom, output_batch& outputs) {
        auto& st = self->state;
        std::unordered_map<caf::actor_addr, std::pair<caf::actor, std::vector<wire::output>>> per_client;
        for (const request_output& o : outputs) {
          auto it = st.owner.find(o.id);
          if (it == st.owner.end()) continue;
          auto& slot = per_client[it->second.address()];
          if (!slot.first) slot.first = it->second;
          slot.second.push_back(to_wire(o));
          if (o.finished) {
            auto jobs = st.jobs_of.find(it->second.address());
            if (jobs != st.jobs_of.end()) {
              jobs->second.erase(o.id);
              if (jobs->second.empty()) {
                self->demonitor(it->second);
                st.jobs_of.erase(jobs);
              }
            }
            st.owner.erase(it);
          }
        }
        for (auto& [addr, slot] : per_client) self->send(slot.first, output_atom::value, wire::pack(slot.second));
      },
  };
}

} // namespace

uint16_t publish_client_endpoint(engine& e, const std::string& host, uint16_t port) {
  engine::impl& in = e.internals();
  caf::actor endpoint = in.system.spawn(endpoint_fn, in.scheduler, e.tok());
  in.extra_actors.push_back(endpoint);
  auto published = caf::io::publish(endpoint, port, host.c_str(), true);
  if (!published)
    throw user_error("cannot listen for native clients on " + host + ":" + std::to_string(port) + ": " +
                     in.system.render(published.error()));
  return *published;
}

} // namespace troupe
