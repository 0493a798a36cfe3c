#include "troupe/client.hpp"

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "wire.hpp"

namespace troupe {
namespace {

struct job_state {
  std::function<void(const job_event&)> on_event;
  std::function<void(const job_result&)> on_done;
  job_result result;
  bool done = false;
  std::vector<wire::output> early;  // outputs that arrived before submit() returned the id
};

// Everything the receiver actor and the calling threads share.
struct shared_jobs {
  std::mutex mutex;
  std::condition_variable cv;
  std::unordered_map<uint64_t, job_state> jobs;

  void apply(job_state& st, const wire::output& out) {
    st.result.job_id = out.job_id;
    st.result.token_ids.insert(st.result.token_ids.end(), out.token_ids.begin(), out.token_ids.end());
    st.result.text += out.text;
    if (st.on_event && (!out.token_ids.empty() || !out.text.empty()))
      st.on_event(job_event{out.job_id, out.token_ids, out.text});
    if (out.finished) {
      st.result.finish_reason = out.finish_reason;
      st.result.error = out.error;
      st.result.num_prompt_tokens = out.num_prompt_tokens;
      st.result.num_cached_tokens = out.num_cached_tokens;
      st.done = true;
      if (st.on_done) st.on_done(st.result);
    }
  }

  void receive(const std::vector<wire::output>& outputs) {
    std::lock_guard lock(mutex);
    for (const auto& out : outputs) {
      job_state& st = jobs[out.job_id];
      if (!st.on_event && !st.on_done && st.result.job_id == 0 && !st.done) {
        st.early.push_back(out);  // not registered yet
        continue;
      }
      apply(st, out);
    }
    cv.notify_all();
  }
};

caf::actor_system_config& client_config(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  return cfg;
}

} // namespace

struct client::impl {
  caf::actor_system_config cfg;
  caf::actor_system sys{client_config(cfg)};
  caf::actor endpoint;
  caf::actor receiver;
  std::shared_ptr<shared_jobs> jobs = std::make_shared<shared_jobs>();

  ~impl() { caf::anon_send_exit(receiver, caf::exit_reason::user_shutdown); }
};

client::client(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
client::~client() = default;

std::unique_ptr<client> client::connect(const std::string& host, uint16_t port) {
  auto p = std::make_unique<impl>();
  auto endpoint = caf::io::remote_actor(p->sys, host, port);
  if (!endpoint)
    throw std::runtime_error("cannot reach a troupe server at " + host + ":" + std::to_string(port) + ": " +
                             p->sys.render(endpoint.error()));
  p->endpoint = *endpoint;
  auto jobs = p->jobs;
  p->receiver = p->sys.spawn([jobs](caf::event_based_actor*) -> caf::behavior {
    return {[jobs](wire::output_atom, const std::vector<char>& bytes) {
      try {
        jobs->receive(wire::unpack<std::vector<wire::output>>(bytes));
      } catch (const std::exception&) {
        // A malformed message from the server: nothing sensible to deliver.
      }
    }};
  });
  return std::unique_ptr<client>(new client(std::move(p)));
}

uint64_t client::submit(const job& j, std::function<void(const job_event&)> on_event,
                        std::function<void(const job_result&)> on_done) {
  wire::job w;
  w.prompt = j.prompt;
  w.prompt_token_ids = j.prompt_token_ids;
  w.max_tokens = j.max_tokens;
  w.min_tokens = j.min_tokens;
  w.temperature = j.temperature;
  w.top_p = j.top_p;
  w.top_k = j.top_k;
  w.min_p = j.min_p;
  w.repetition_penalty = j.repetition_penalty;
  w.presence_penalty = j.presence_penalty;
  w.frequency_penalty = j.frequency_penalty;
  w.has_seed = j.seed.has_value();
  w.seed = j.seed.value_or(0);
  w.ignore_eos = j.ignore_eos;
  w.stop = j.stop;
  w.stop_token_ids = j.stop_token_ids;
  w.priority = j.priority;

  caf::scoped_actor self{impl_->sys};
  wire::submit_reply reply;
  std::string failure;
  self->request(impl_->endpoint, caf::infinite, wire::submit_atom::value, wire::pack(w), impl_->receiver)
      .receive(
          [&](const std::vector<char>& bytes) {
            try {
              reply = wire::unpack<wire::submit_reply>(bytes);
            } catch (const std::exception& e) {
              failure = std::string("malformed reply from the server: ") + e.what();
            }
          },
          [&](caf::error& e) { failure = "the server did not take the job: " + impl_->sys.render(e); });
  if (!failure.empty()) throw std::runtime_error(failure);
  if (!reply.error.empty()) throw std::runtime_error(reply.error);

  std::lock_guard lock(impl_->jobs->mutex);
  job_state& st = impl_->jobs->jobs[reply.job_id];
  st.on_event = std::move(on_event);
  st.on_done = std::move(on_done);
  st.result.job_id = reply.job_id;
  st.result.num_prompt_tokens = reply.num_prompt_tokens;
  for (const auto& out : std::exchange(st.early, {})) impl_->jobs->apply(st, out);
  impl_->jobs->cv.notify_all();
  return reply.job_id;
}

void client::cancel(uint64_t job_id) { caf::anon_send(impl_->endpoint, wire::abort_atom::value, job_id); }

job_result client::wait(uint64_t job_id) {
  std::unique_lock lock(impl_->jobs->mutex);
  impl_->jobs->cv.wait(lock, [&] {
    auto it = impl_->jobs->jobs.find(job_id);
    return it != impl_->jobs->jobs.end() && it->second.done && it->second.result.job_id == job_id;
  });
  job_result r = impl_->jobs->jobs.at(job_id).result;
  impl_->jobs->jobs.erase(job_id);
  return r;
}

server_stats client::stats() {
  caf::scoped_actor self{impl_->sys};
  server_stats out;
  std::string failure;
  self->request(impl_->endpoint, caf::infinite, wire::stats_atom::value)
      .receive(
          [&](const std::vector<char>& bytes) {
            const auto s = wire::unpack<wire::stats>(bytes);
            out = {s.num_running, s.num_waiting, s.num_free_blocks, s.num_blocks, s.num_preemptions};
          },
          [&](caf::error& e) { failure = impl_->sys.render(e); });
  if (!failure.empty()) throw std::runtime_error("stats: " + failure);
  return out;
}

} // namespace troupe
