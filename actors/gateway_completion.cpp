// A completion request's life on a connection: planned on the parse pool, admitted (a ticket), run by a
// sink actor, answered whole or streamed, and ended exactly once whatever ends it.

#include <spdlog/spdlog.h>

#include "actors/gateway_session.hpp"

namespace troupe {
namespace {

// Relays one run's events to its connection; the sink holds it weakly, so it goes with the run.
class event_relay : public completion_listener {
public:
  event_relay(std::weak_ptr<http_session> session, uint64_t serial) : session_(std::move(session)), serial_(serial) {}
  void on_event(completion_event ev) override {
    if (auto s = session_.lock()) s->post_event(serial_, std::move(ev));
  }

private:
  std::weak_ptr<http_session> session_;
  uint64_t serial_;
};

reject_reason reason_of(const admission_refusal& r) {
  return r.reason == "queue_full" ? reject_reason::queue_full
       : r.reason == "unauthorized" ? reject_reason::unauthorized
                                    : reject_reason::rate_limited;
}

} // namespace

completion_run::completion_run(admission_ticket t, completion_plan plan, net::any_io_executor ex)
    : ticket(std::move(t)), stream(plan.stream), builder(std::move(plan)), timeout(std::move(ex)) {}

completion_run::~completion_run() {
  // The engine's unfinished requests are aborted (their blocks freed); the ticket gives its slots back.
  if (!finished) stop_completion_sink(sink);
}

void http_session::start_completion(bool chat) {
  const auto limit = gw_->opts.max_tokens_limit;
  off_io_thread<completion_plan>(
      [gw = gw_, chat, limit, body = std::move(req_.body())] { return plan_completion(gw->backend().front(), gw->server, body, chat, limit); },
      [self = shared_from_this()](std::variant<completion_plan, api_error> plan) { self->planned(std::move(plan)); });
}

void http_session::planned(std::variant<completion_plan, api_error> planned) {
  if (closed_) return;  // the client left while its body was parsed: nothing was admitted
  auto& metrics = gw_->backend().metrics();
  if (auto* e = std::get_if<api_error>(&planned)) {
    metrics.on_rejected(e->message.find("maximum context length") != std::string::npos ? reject_reason::too_long
                                                                                       : reject_reason::invalid);
    return respond_error(*e);
  }
  completion_plan& plan = std::get<completion_plan>(planned);
  int64_t cost = 0;
  for (const auto& r : plan.requests) cost += static_cast<int64_t>(r.prompt_ids.size()) + r.params.max_tokens;
  admission_ticket ticket;
  if (auto refusal = gw_->admission.admit(api_key(), cost, ticket)) {
    metrics.on_rejected(reason_of(*refusal));
    std::vector<header_field> extra;
    if (refusal->retry_after_s > 0) extra.push_back({"Retry-After", std::to_string(refusal->retry_after_s)});
    return respond_error(server_error(refusal->status, refusal->type, refusal->message), std::move(extra));
  }
  run_.emplace(std::move(ticket), std::move(plan), socket_.get_executor());
  run_->serial = ++num_runs_;
  if (gw_->opts.request_timeout_s > 0) {
    run_->timeout.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(gw_->opts.request_timeout_s)));
    run_->timeout.async_wait([self = shared_from_this(), serial = run_->serial](beast::error_code ec) {
      if (!ec && self->run_ && self->run_->serial == serial) self->timed_out();
    });
  }
  run_->relay = std::make_shared<event_relay>(weak_from_this(), run_->serial);
  run_->sink = gw_->backend().start(run_->builder.requests(), run_->stream, run_->relay);
}

void http_session::post_event(uint64_t serial, completion_event ev) {
  net::post(socket_.get_executor(), [self = shared_from_this(), serial, ev = std::move(ev)]() mutable {
    if (self->run_ && self->run_->serial == serial) self->handle_event(std::move(ev));
  });
}

// Ends the run: `finished` when the engine is done with it, else its requests are aborted. Its
// admission slots go back either way, once.
void http_session::end_completion(bool finished) {
  if (!run_) return;
  run_->finished = finished;
  run_.reset();
}

// The answer to a run that failed or timed out: an error response, or, once streaming, an error event.
void http_session::send_failure(const api_error& e) {
  const bool streaming = run_ && run_->headers_sent;
  if (run_) note_completion(run_->builder);
  end_completion(false);
  if (!streaming) return respond_error(e);
  send_chunk(sse_error(e));
  send_chunk(sse_done());
  end_stream();
}

// The request ran past --request-timeout: it is aborted; the client gets 504, or an error event.
void http_session::timed_out() {
  gw_->backend().metrics().on_rejected(reject_reason::timeout);
  send_failure(server_error(504, "TimeoutError",
                            "The request did not finish within the server's request timeout (" +
                                std::to_string(gw_->opts.request_timeout_s) + " s)"));
}

void http_session::handle_event(completion_event ev) {
  completion_run& run = *run_;
  if (ev.what == completion_event::kind::outputs) run.ticket.leave_queue();
  if (ev.what == completion_event::kind::failed) return send_failure(ev.error);
  if (!run.stream) {
    run.builder.add(ev);
    if (!run.builder.done()) return;
    std::string body = run.builder.final_body();
    note_completion(run.builder);
    end_completion(true);
    return respond(200, std::move(body));
  }
  if (!run.headers_sent) {
    run.headers_sent = true;
    begin_stream();
  }
  for (std::string& chunk : run.builder.stream_chunks(ev)) send_chunk(std::move(chunk));
  if (run.builder.done()) {
    note_completion(run.builder);
    end_completion(true);
    return end_stream();
  }
  if (out_.size() > gw_->opts.max_stream_buffer) {
    // A consumer this far behind is cut off; everyone else goes on.
    spdlog::warn("a streaming client fell {} events behind; cutting it off", out_.size());
    gw_->backend().metrics().on_rejected(reject_reason::slow_consumer);
    lost();
  }
}

} // namespace troupe
