#include "runtime/engine/engine_core.hpp"

#include <algorithm>
#include <stdexcept>

namespace troupe {

engine_core::engine_core(const engine_config& config, const tokenizer* tok, uint64_t seed)
    : config_(config), tokenizer_(tok), kv_(config.kv, config.block_hash), scheduler_(config.sched, kv_), seeds_(seed) {}

std::string engine_core::add(engine_request in) {
  const int32_t max_len = config_.sched.max_model_len;
  const int32_t n = static_cast<int32_t>(in.prompt_ids.size());
  if (n == 0) return "The prompt cannot be empty";
  for (int32_t id : in.prompt_ids)
    if (id < 0 || id >= config_.vocab_size)
      return "Token id " + std::to_string(id) + " is out of vocabulary (vocabulary size " +
             std::to_string(config_.vocab_size) + ")";
  if (n >= max_len)
    return "The prompt (total length " + std::to_string(n) + ") is too long to fit into the model (context length " +
           std::to_string(max_len) + "). Make sure that `max_model_len` is no smaller than the number of text tokens.";
  if (std::string invalid = in.params.validate(config_.vocab_size); !invalid.empty()) return invalid;
  if (in.params.structured) {
    if (!config_.compile_structured)
      return "Structured outputs (response_format, guided_*) are not supported by this server: it has no grammar engine";
    try {
      config_.compile_structured(*in.params.structured);
    } catch (const std::invalid_argument& e) {
      return std::string("Invalid structured output spec: ") + e.what();
    }
  }
  if (!tokenizer_ && !in.params.stop.empty())
    return "Stop strings need the model's tokenizer.json, which this model has none of; use stop_token_ids";
  if (states_.count(in.id) || scheduler_.find(in.id)) return "Request id " + std::to_string(in.id) + " is already in use";

  auto st = std::make_unique<output_state>(output_state{
      stop_checker(in.params, config_.eos_token_ids, n, max_len), nullptr, in.prompt_ids, {}, 0, n,
      std::chrono::steady_clock::now(), std::nullopt, std::nullopt, {}});
  if (tokenizer_) st->detok = std::make_unique<incremental_detokenizer>(*tokenizer_, st->prompt_ids, in.params.skip_special_tokens);

  request r;
  r.id = in.id;
  r.tokens = std::move(in.prompt_ids);
  r.num_prompt_tokens = n;
  r.seed = in.params.seed ? *in.params.seed : seeds_();
  r.params = std::move(in.params);
  r.priority = in.priority;
  r.arrival = arrivals_++;
  r.cache_salt = std::move(in.cache_salt);
  scheduler_.add(std::move(r));
  states_.emplace(in.id, std::move(st));
  return "";
}

step_plan engine_core::schedule() {
  step_plan plan = scheduler_.schedule();
  if (metrics_) {
    const auto now = std::chrono::steady_clock::now();
    for (const scheduled_seq& s : plan.seqs)
      if (s.is_new)
        if (auto it = states_.find(s.id); it != states_.end() && !it->second->first_scheduled) it->second->first_scheduled = now;
  }
  return plan;
}

void engine_core::report_finished(const output_state& st, int32_t num_generated, request_status status) {
  if (!metrics_) return;
  finished_request_report rep;
  rep.arrival = st.arrival;
  rep.first_scheduled = st.first_scheduled;
  rep.first_token = st.first_token;
  rep.finished = std::chrono::steady_clock::now();
  rep.num_prompt_tokens = st.num_prompt_tokens;
  rep.num_generation_tokens = num_generated;
  switch (status) {
    case request_status::finished_length: rep.outcome = request_outcome::length; break;
    case request_status::finished_aborted: rep.outcome = request_outcome::abort; break;
    case request_status::finished_error: rep.outcome = request_outcome::error; break;
    default: rep.outcome = request_outcome::stop; break;
  }
  metrics_->on_request_finished(rep);
}

request_output engine_core::finish(request_id id, output_state& st, request_status status) {
  request_output out;
  out.id = id;
  out.finished = true;
  out.num_prompt_tokens = st.num_prompt_tokens;
  if (const request* r = scheduler_.find(id)) {
    out.num_output_tokens = r->num_output_tokens();
    out.num_cached_tokens = std::max(0, r->num_cached_tokens);
  }
  report_finished(st, out.num_output_tokens, status);
  scheduler_.finish(id, status);
  return out;
}

std::optional<request_output> engine_core::abort(request_id id) {
  auto it = states_.find(id);
  if (it == states_.end()) return std::nullopt;
  request_output out = finish(id, *it->second, request_status::finished_aborted);
  out.aborted = true;
  states_.erase(it);
  if (metrics_) metrics_->on_occupancy(num_running(), num_waiting(), kv_.usage());
  return out;
}

std::vector<request_output> engine_core::update(const step_plan& plan, const step_result& result) {
  std::vector<request_output> outputs;
  const auto now = std::chrono::steady_clock::now();
  ttft_.clear();
  itl_.clear();
  const auto appended = scheduler_.update(plan, result);
  outputs.reserve(appended.size());
  // Logprobs are parallel to result.ids; index them once rather than search per token.
  std::unordered_map<request_id, size_t> logprob_index;
  if (!result.logprobs.empty())
    for (size_t i = 0; i < result.ids.size(); ++i) logprob_index.emplace(result.ids[i], i);
  for (const auto& [id, token] : appended) {
    output_state& st = *states_.at(id);
    std::optional<sampled_logprobs> logprobs;
    if (auto it = logprob_index.find(id); it != logprob_index.end()) logprobs = result.logprobs[it->second];
    if (metrics_) {
      if (!st.first_token) {
        st.first_token = now;
        ttft_.push_back(std::chrono::duration<double>(now - st.arrival).count());
      } else {
        itl_.push_back(std::chrono::duration<double>(now - st.last_token).count());
      }
      st.last_token = now;
    }
    if (st.detok) st.text += st.detok->push(token);
    stop_decision d = st.stops.check(token, st.text);
    const request* r = scheduler_.find(id);
    request_output out;
    if (d.reason != finish_reason::none) {
      if (st.detok && d.reason == finish_reason::length) {
        st.text += st.detok->flush();
        d = st.stops.check_flushed(std::move(d), st.text);
      }
      out = finish(id, st, d.reason == finish_reason::length ? request_status::finished_length
                                                              : request_status::finished_stopped);
      out.reason = d.reason;
      out.stop_string = d.stop_string;
      out.stop_token = d.stop_token;
      d.releasable_size = std::min(d.text_size, st.text.size());
    } else {
      out.id = id;
      out.num_prompt_tokens = st.num_prompt_tokens;
      out.num_output_tokens = r->num_output_tokens();
      out.num_cached_tokens = std::max(0, r->num_cached_tokens);
    }
    out.new_token_ids = {token};
    out.logprobs = std::move(logprobs);
    if (d.releasable_size > st.released) {
      out.text = st.text.substr(st.released, d.releasable_size - st.released);
      st.released = d.releasable_size;
    }
    if (out.finished) states_.erase(id);
    outputs.push_back(std::move(out));
  }
  if (metrics_) {
    const scheduler_stats& s = scheduler_.stats();
    const prefix_cache_stats p = kv_.stats();
    step_report rep;
    rep.num_running = num_running();
    rep.num_waiting = num_waiting();
    rep.kv_cache_usage = kv_.usage();
    rep.num_seqs = static_cast<int32_t>(plan.seqs.size());
    rep.num_prompt_tokens = s.num_computed_prompt_tokens - reported_sched_.num_computed_prompt_tokens;
    rep.num_generation_tokens = static_cast<int64_t>(appended.size());
    rep.num_preemptions = s.num_preemptions - reported_sched_.num_preemptions;
    rep.num_prefix_cache_queries = p.num_queried_tokens - reported_prefix_.num_queried_tokens;
    rep.num_prefix_cache_hits = p.num_hit_tokens - reported_prefix_.num_hit_tokens;
    rep.time_to_first_token_s = ttft_;
    rep.inter_token_latency_s = itl_;
    rep.collective_s = static_cast<double>(result.collective_ns) * 1e-9;
    metrics_->on_step(rep);
    reported_sched_ = s;
    reported_prefix_ = p;
  }
  return outputs;
}

std::vector<request_output> engine_core::fail(const step_plan& plan, const std::string& error) {
  std::vector<request_id> ids;
  for (const scheduled_seq& s : plan.seqs) ids.push_back(s.id);
  return fail_each(ids, error);
}

std::vector<request_output> engine_core::fail_all(const std::string& error) {
  std::vector<request_id> ids;
  for (const auto& [id, st] : states_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());  // in arrival order, as ids are given
  std::vector<request_output> outputs = fail_each(ids, error);
  for (request_output& out : outputs) out.aborted = true;  // by the server, with a reason: not a fault
  return outputs;
}

std::vector<request_output> engine_core::fail_each(const std::vector<request_id>& ids, const std::string& error) {
  std::vector<request_output> outputs;
  for (const request_id id : ids) {
    auto it = states_.find(id);
    if (it == states_.end()) continue;
    request_output out = finish(id, *it->second, request_status::finished_error);
    out.error = error;
    states_.erase(it);
    outputs.push_back(std::move(out));
  }
  if (metrics_ && !outputs.empty()) metrics_->on_occupancy(num_running(), num_waiting(), kv_.usage());
  return outputs;
}

} // namespace troupe
