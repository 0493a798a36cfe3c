// `troupe router`'s backend: worker health and load on one I/O thread, each completion's requests routed by
// runtime/router/request_router and relayed from the workers' native ports to the gateway's listener.

#include "actors/router.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <spdlog/spdlog.h>

#include "actors/wire_convert.hpp"
#include "actors/worker_link.hpp"
#include "runtime/error.hpp"
#include "runtime/router/router_metrics.hpp"
#include "runtime/router/worker_dashboards.hpp"
#include "runtime/router/worker_health.hpp"

namespace troupe {

namespace net = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

struct completion_state;

// One request of a completion, from routing to its last output, on whichever workers it takes.
struct routed_part : link_job, std::enable_shared_from_this<routed_part> {
  router::impl* r = nullptr;
  std::weak_ptr<completion_state> state;
  size_t index = 0;
  request_id id = 0;
  engine_request req;
  clock_type::time_point arrival{};

  std::optional<size_t> worker;       // where it runs now
  std::weak_ptr<worker_link> link;
  uint64_t tag = 0;
  std::vector<size_t> tried;          // workers it failed on or was refused by
  std::optional<api_error> refusal;   // the last worker's refusal, answered when no worker is left
  bool accepted = false;              // the client was told (the chat role chunk went out)
  bool streamed = false;              // a stream: output reached the client, so it cannot start over
  bool got_output = false;
  bool done = false;
  std::optional<clock_type::time_point> first_token;
  std::optional<clock_type::time_point> last_token;  // when the latest tokens came: the next gap is an ITL
  std::optional<size_t> served_by;    // the worker it ran on last: its dashboard counts the request
  int64_t num_generated = 0;
  std::vector<request_output> held;   // not streaming: outputs kept until the last, so a restart loses nothing

  void on_submitted(const wire::submitted& s) override;
  void on_output(const wire::output& o) override;
  void on_lost(const std::string& why) override;
};

struct completion_state {
  std::weak_ptr<completion_listener> listener;
  bool stream = false;
  bool over = false;  // failed or stopped: no more events
  std::vector<std::shared_ptr<routed_part>> parts;

  void emit(completion_event ev) const {
    if (auto l = listener.lock()) l->on_event(std::move(ev));
  }
};

// The OpenAI error a worker's refusal carries, by its type.
api_error refusal_error(const wire::submitted& s) {
  const int status = s.error_type == "RateLimitError"          ? 429
                   : s.error_type == "ServiceUnavailableError" ? 503
                   : s.error_type == "AuthenticationError"     ? 401
                   : s.error_type == "BadRequestError"         ? 400
                                                               : 500;
  return server_error(status, s.error_type.empty() ? "InternalServerError" : s.error_type, s.error);
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

} // namespace

struct router::impl : std::enable_shared_from_this<router::impl> {
  struct worker {
    worker_address address;
    std::shared_ptr<worker_link> link;
    bool probing = false;
    worker_health health;
    worker_load load;
  };

  explicit impl(const router_options& o);

  router_options opts;
  model_front front;
  std::unique_ptr<engine_metrics> metrics;
  std::vector<std::string> worker_names;
  std::unique_ptr<worker_dashboards> dashboards;  // what the router saw of each worker, for /dashboard

  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  net::steady_timer tick{ioc};
  std::thread thread;

  // The I/O thread's alone.
  request_router routing;
  std::vector<worker> workers;
  bool stopping = false;

  // For other threads.
  std::atomic<bool> served = false;
  std::atomic<int32_t> num_healthy = 0;
  std::atomic<uint64_t> next_id = 1;
  bool stopped = false;  // the caller of stop() only

  // A worker busy with a long batch may answer slowly: a probe waits at least a second.
  double probe_timeout() const { return std::clamp(opts.health_interval_s, 1.0, 5.0); }

  void check_workers();
  void probed(size_t w, bool ok);
  void connect(size_t w);
  void update_health(size_t w);
  void note_loads();
  void dispatch(const std::shared_ptr<routed_part>& p);
  // Ends a completion with an error (every part not done is aborted and released).
  void fail(completion_state& s, const api_error& e);
  // Aborts what has not ended without a word to the client (it went away, or is told otherwise).
  void abandon(completion_state& s);
  // A part leaves its worker: one fewer in flight there; `abort`: the worker is told to stop it.
  void leave_worker(routed_part& p, bool abort);
  void finished(routed_part& p, request_outcome outcome);
};

router::impl::impl(const router_options& o)
    : opts(o), front(load_model_front(o.model)),
      routing([&] {
        request_router_config c;
        c.pools = o.fleet.pools;
        for (const worker_address& w : o.fleet.workers) c.worker_pool.push_back(w.pool);
        c.policy = o.policy;
        c.block_size = o.block_size;
        c.affinity_blocks = o.affinity_blocks;
        c.load_factor = o.load_factor;
        c.load_slack = o.load_slack;
        return c;
      }()) {
  engine_metrics_config mc;
  mc.model_name = front.served_model_names.front();
  mc.max_model_len = front.max_model_len;
  mc.prefix = o.metrics_prefix;
  metrics = std::make_unique<engine_metrics>(mc);
  for (const worker_address& a : opts.fleet.workers) {
    worker w;
    w.address = a;
    workers.push_back(std::move(w));
    worker_names.push_back(a.url);
  }
  dashboards = std::make_unique<worker_dashboards>(mc, worker_names);
}

void router::impl::check_workers() {
  if (stopping) return;
  for (size_t w = 0; w < workers.size(); ++w) {
    worker& x = workers[w];
    if (!x.probing) {
      x.probing = true;
      probe_health(ioc, x.address.host, x.address.http_port, probe_timeout(), [self = shared_from_this(), w](bool ok) { self->probed(w, ok); });
    }
    if (x.link && x.link->up())
      x.link->request_stats([self = shared_from_this(), w](const wire::stats& s) {
        worker_load l;
        l.num_running = s.num_running;
        l.num_waiting = s.num_waiting;
        l.kv_cache_usage = s.num_blocks > 0 ? 1.0 - static_cast<double>(s.num_free_blocks) / s.num_blocks : 0.0;
        self->workers[w].load = l;
        self->routing.set_load(w, l);
        self->dashboards->metrics(w).on_occupancy(l.num_running, l.num_waiting, l.kv_cache_usage);
        self->note_loads();
      });
  }
  tick.expires_after(seconds(opts.health_interval_s));
  tick.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->check_workers();
  });
}

void router::impl::probed(size_t w, bool ok) {
  worker& x = workers[w];
  x.probing = false;
  if (stopping) return;
  x.health.on_probe(ok, fmt::format("its /health did not answer 200 within {:g} s", probe_timeout()));
  if (x.health.wants_connection() && !x.link) connect(w);
  update_health(w);
}

void router::impl::connect(size_t w) {
  worker& x = workers[w];
  auto self = shared_from_this();
  // Each callback acts only while its link is the worker's current one (the link is known once made).
  auto mine = std::make_shared<const worker_link*>(nullptr);
  x.link = std::make_shared<worker_link>(
      ioc, x.address.native_host, x.address.native_port, opts.worker_api_key,
      [self, w, mine] {
        worker& y = self->workers[w];
        if (y.link.get() != *mine) return;
        y.health.on_connection(true);
        self->update_health(w);
      },
      [self, w, mine](const std::string& why) {
        worker& y = self->workers[w];
        if (y.link.get() != *mine) return;
        y.link.reset();
        y.health.on_connection(false, "native port " + y.address.native_host + ":" + std::to_string(y.address.native_port) + ": " + why);
        self->update_health(w);
      });
  *mine = x.link.get();
  x.link->connect(probe_timeout());
}

void router::impl::update_health(size_t w) {
  worker& x = workers[w];
  const bool healthy = !stopping && x.health.in_rotation();
  dashboards->set_state(w, healthy, stopping ? "the router is shutting down" : x.health.why_out());
  if (healthy != routing.healthy(w)) {
    routing.set_healthy(w, healthy);
    const std::string& pool = routing.pools()[routing.pool_of(w)].name;
    if (healthy) spdlog::info("worker {} (pool {}) is in rotation", x.address.url, pool);
    else spdlog::warn("worker {} (pool {}) left rotation: {}", x.address.url, pool, x.health.why_out());
  }
  int32_t n = 0;
  for (size_t v = 0; v < workers.size(); ++v) n += routing.healthy(v);
  num_healthy = n;
  served = routing.every_pool_served();
}

void router::impl::note_loads() {
  // The fleet's occupancy, as the workers last reported it, on the router's running/waiting/KV gauges.
  int32_t running = 0, waiting = 0, reporting = 0;
  double kv = 0;
  for (size_t w = 0; w < workers.size(); ++w) {
    if (!routing.healthy(w)) continue;
    running += workers[w].load.num_running;
    waiting += workers[w].load.num_waiting;
    kv += workers[w].load.kv_cache_usage;
    ++reporting;
  }
  metrics->on_occupancy(running, waiting, reporting ? kv / reporting : 0.0);
}

void router::impl::leave_worker(routed_part& p, bool abort) {
  if (!p.worker) return;
  if (abort)
    if (auto l = p.link.lock()) l->abort(p.tag);
  routing.release(*p.worker);
  p.worker.reset();
  p.link.reset();
}

void router::impl::finished(routed_part& p, request_outcome outcome) {
  p.done = true;
  finished_request_report f;
  f.arrival = p.arrival;
  f.first_token = p.first_token;
  f.finished = clock_type::now();
  f.num_prompt_tokens = static_cast<int64_t>(p.req.prompt_ids.size());
  f.num_generation_tokens = p.num_generated;
  f.outcome = outcome;
  metrics->on_request_finished(f);
  if (p.served_by) dashboards->metrics(*p.served_by).on_request_finished(f);
}

void router::impl::abandon(completion_state& s) {
  s.over = true;
  for (auto& p : s.parts) {
    if (p->done) continue;
    leave_worker(*p, true);
    finished(*p, request_outcome::abort);
  }
}

void router::impl::fail(completion_state& s, const api_error& e) {
  if (s.over) return;
  for (auto& p : s.parts) {
    if (p->done) continue;
    leave_worker(*p, true);
    finished(*p, request_outcome::error);
  }
  s.over = true;
  completion_event ev;
  ev.what = completion_event::kind::failed;
  ev.error = e;
  s.emit(std::move(ev));
}

void router::impl::dispatch(const std::shared_ptr<routed_part>& p) {
  auto s = p->state.lock();
  if (!s || s->over || p->done) return;
  if (stopping) return fail(*s, server_error(503, "ServiceUnavailableError", "The router is shutting down"));
  const auto d = routing.route(p->req.prompt_ids, p->req.cache_salt, p->req.params.max_tokens, p->tried);
  if (!d) {
    if (p->refusal) return fail(*s, *p->refusal);
    return fail(*s, server_error(503, "ServiceUnavailableError",
                                 fmt::format("No worker can take the request now ({} of {} workers in rotation); retry shortly",
                                             num_healthy.load(), workers.size())));
  }
  const std::shared_ptr<worker_link> link = workers[d->worker].link;
  p->worker = d->worker;
  p->served_by = d->worker;
  p->link = link;
  p->tag = link->submit(job_of(p->req), p);  // in rotation: its link is up
}

void routed_part::on_submitted(const wire::submitted& s) {
  auto st = state.lock();
  if (!st || st->over || done) return;
  if (s.job_id == 0) {
    // A worker's queue or a tenant's limit there: another worker may take it; anything else is the request's fault.
    const api_error e = refusal_error(s);
    const size_t w = *worker;
    r->leave_worker(*this, false);
    if (e.status != 429 && e.status != 503) return r->fail(*st, e);
    refusal = e;
    tried.push_back(w);
    return r->dispatch(shared_from_this());
  }
  if (accepted) return;  // a restart on another worker: the client heard already
  accepted = true;
  completion_event ev;
  ev.what = completion_event::kind::submitted;
  ev.index = index;
  ev.id = id;
  st->emit(std::move(ev));
}

void routed_part::on_output(const wire::output& o) {
  auto st = state.lock();
  if (!st || st->over || done) return;
  request_output out = request_output_of(o, id);
  if (auto error = engine_error(out)) return r->fail(*st, *error);
  if (!o.token_ids.empty()) {
    // At the router, as a client sees them: the first token's wait, then the gap before each later chunk.
    // Tokens that come together (a worker sends a non-streamed request's tokens at once) add no gap: zeros
    // would pull the fleet's ITL down without measuring any pace.
    const auto now = clock_type::now();
    std::vector<double> itl;
    if (last_token) itl.push_back(std::chrono::duration<double>(now - *last_token).count());
    const int64_t prompt = first_token ? 0 : static_cast<int64_t>(req.prompt_ids.size());
    const auto generated = static_cast<int64_t>(o.token_ids.size());
    for (engine_metrics* m : {r->metrics.get(), &r->dashboards->metrics(*served_by)}) {
      if (!first_token) m->on_first_token(arrival, now);
      m->on_tokens(prompt, generated, itl);
    }
    if (!first_token) first_token = now;
    last_token = now;
  }
  num_generated += static_cast<int64_t>(o.token_ids.size());
  const bool first = !got_output;
  got_output = true;
  if (o.finished) {
    r->leave_worker(*this, false);
    r->finished(*this, out.aborted ? request_outcome::abort
                       : out.reason == finish_reason::length ? request_outcome::length
                                                             : request_outcome::stop);
  }
  completion_event ev;
  ev.what = completion_event::kind::outputs;
  if (st->stream) {
    streamed = true;
    ev.outputs.push_back(std::move(out));
    return st->emit(std::move(ev));
  }
  held.push_back(std::move(out));
  if (o.finished) {
    ev.outputs = std::move(held);
    held.clear();
    return st->emit(std::move(ev));
  }
  if (first) st->emit(std::move(ev));  // no outputs: the request leaves the admission queue
}

void routed_part::on_lost(const std::string& why) {
  auto st = state.lock();
  if (!st || st->over || done || !worker) return;
  const size_t w = *worker;
  const std::string url = r->workers[w].address.url;
  r->leave_worker(*this, false);
  if (st->stream && streamed)
    return r->fail(*st, server_error(503, "ServiceUnavailableError",
                                     "The worker " + url + " serving this request stopped mid-stream (" + why + "); retry the request"));
  // Nothing reached the client: start over on another worker.
  r->routing.note_failover(w);
  tried.push_back(w);
  held.clear();
  num_generated = 0;
  got_output = false;
  spdlog::info("request {}: worker {} was lost ({}); routing it again", id, url, why);
  r->dispatch(shared_from_this());
}

namespace {

// The gateway's handle on a completion's parts: stopping (or dropping) it aborts what has not ended.
struct routed_completion : completion_handle {
  std::weak_ptr<router::impl> r;
  std::shared_ptr<completion_state> state;
  std::atomic<bool> stopped = false;

  void stop() override {
    if (stopped.exchange(true)) return;
    if (auto in = r.lock())
      net::post(in->ioc, [in, s = state] {
        if (!s->over) in->abandon(*s);
      });
  }
  ~routed_completion() override { stop(); }
};

} // namespace

router::router(const router_options& options) : impl_(std::make_shared<impl>(options)) {
  spdlog::info("routing {} over {} workers in {} pools ({}); checking their /health every {:g} s", impl_->front.served_model_names.front(),
               impl_->workers.size(), options.fleet.pools.size(),
               options.policy == routing_policy::prefix_affinity ? "prefix affinity"
               : options.policy == routing_policy::least_loaded  ? "least loaded"
                                                                 : "round robin",
               options.health_interval_s);
  net::post(impl_->ioc, [in = impl_] { in->check_workers(); });
  impl_->thread = std::thread([in = impl_.get()] { in->ioc.run(); });
}

router::~router() { stop(); }

void router::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  std::promise<void> closed;
  net::post(impl_->ioc, [in = impl_, &closed] {
    in->stopping = true;
    in->tick.cancel();
    // Requests still running end with an error (their parts cannot route again: stopping).
    for (auto& w : in->workers)
      if (auto l = std::move(w.link)) l->close("the router is shutting down");
    closed.set_value();
  });
  closed.get_future().wait_for(std::chrono::seconds(2));
  impl_->work.reset();
  impl_->ioc.stop();
  impl_->thread.join();
}

const model_front& router::front() const { return impl_->front; }
bool router::healthy() const { return impl_->served; }
engine_metrics& router::metrics() { return *impl_->metrics; }

void router::start_history(int64_t start_ms, size_t capacity) { impl_->dashboards->start(start_ms, capacity); }
void router::record_history(int64_t unix_ms) { impl_->dashboards->record(unix_ms); }

std::vector<dashboard_source> router::history_sources() const {
  std::vector<dashboard_source> out;
  const worker_dashboards& d = *impl_->dashboards;
  for (size_t w = 0; w < d.size(); ++w)
    if (const metrics_history* h = d.history(w)) out.push_back({d.name(w), h, d.state(w)});
  return out;
}
int32_t router::num_healthy_workers() const { return impl_->num_healthy; }

std::string router::extra_metrics_text() const {
  if (impl_->stopped) return {};
  // The router's state belongs to its I/O thread: the figures are taken there.
  auto figures = std::make_shared<std::promise<router_figures>>();
  auto ready = figures->get_future();
  net::post(impl_->ioc, [in = impl_, figures] { figures->set_value(router_figures_of(in->routing, in->worker_names)); });
  if (ready.wait_for(std::chrono::seconds(2)) != std::future_status::ready) return {};
  return router_metrics_text(ready.get(), impl_->front.served_model_names.front(), impl_->opts.metrics_prefix);
}

sink_handle router::start(const std::vector<engine_request>& requests, bool stream, std::weak_ptr<completion_listener> listener) {
  auto state = std::make_shared<completion_state>();
  state->listener = std::move(listener);
  state->stream = stream;
  const auto now = clock_type::now();
  for (size_t i = 0; i < requests.size(); ++i) {
    auto p = std::make_shared<routed_part>();
    p->r = impl_.get();
    p->state = state;
    p->index = i;
    p->id = impl_->next_id++;
    p->req = requests[i];
    p->arrival = now;
    state->parts.push_back(std::move(p));
  }
  net::post(impl_->ioc, [in = impl_, state] {
    for (const auto& p : state->parts) in->dispatch(p);
  });
  auto handle = std::make_shared<routed_completion>();
  handle->r = impl_;
  handle->state = std::move(state);
  return handle;
}

} // namespace troupe
