#include "runtime/engine/scheduler.hpp"

#include <algorithm>
#include <stdexcept>

namespace troupe {

scheduler::scheduler(const scheduler_config& config, kv_cache_manager& kv) : config_(config), kv_(kv) {
  if (config_.max_num_seqs <= 0 || config_.max_num_batched_tokens <= 0 || config_.max_model_len <= 0)
    throw std::invalid_argument("scheduler: limits must be positive");
}

bool scheduler::is_long(const request& r) const {
  return config_.long_request_threshold > 0 && r.params.max_tokens > config_.long_request_threshold;
}

scheduler::waiting_key scheduler::key_of(const request& r) const {
  return {is_long(r) ? 1 : 0, config_.policy == scheduling_policy::priority ? r.priority : 0, r.arrival, r.id};
}

void scheduler::add(request r) {
  if (requests_.count(r.id)) throw std::invalid_argument("scheduler: duplicate request id " + std::to_string(r.id));
  if (r.tokens.empty() || r.num_tokens() >= config_.max_model_len)
    throw std::invalid_argument("scheduler: request " + std::to_string(r.id) + " has no room in max_model_len");
  r.status = request_status::waiting;
  r.num_computed_tokens = 0;
  r.on_shard = false;
  waiting_.insert(key_of(r));
  requests_.emplace(r.id, std::move(r));
}

size_t scheduler::pick_victim() const {
  if (config_.policy == scheduling_policy::fcfs) return running_.size() - 1;
  size_t victim = running_.size() - 1;
  for (size_t i = 0; i < running_.size(); ++i) {
    const request& a = requests_.at(running_[i]);
    const request& b = requests_.at(running_[victim]);
    if (std::tie(a.priority, a.arrival) > std::tie(b.priority, b.arrival)) victim = i;
  }
  return victim;
}

void scheduler::preempt(size_t index) {
  request& r = requests_.at(running_[index]);
  kv_.free(r.id);
  r.status = request_status::preempted;
  r.num_computed_tokens = 0;
  ++r.num_preemptions;
  ++stats_.num_preemptions;
  if (r.on_shard) released_.push_back(r.id);
  r.on_shard = false;
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  if (is_long(r)) --num_running_long_;
  waiting_.insert(key_of(r));
}

int32_t scheduler::chunk_limit(int32_t remaining) const {
  return config_.long_prefill_token_threshold > 0 ? std::min(remaining, config_.long_prefill_token_threshold) : remaining;
}

step_plan scheduler::schedule() {
  step_plan plan;
  plan.step = ++step_;
  plan.seqs.reserve(running_.size() + std::min<size_t>(waiting_.size(), 64));
  int32_t budget = config_.max_num_batched_tokens;
  bool preempted_any = false;

  // Running sequences first, in admission order.
  size_t i = 0;
  while (i < running_.size() && budget > 0) {
    request& r = requests_.at(running_[i]);
    const int32_t n = std::min(chunk_limit(r.num_tokens() - r.num_computed_tokens), budget);
    if (n <= 0) {
      ++i;
      continue;
    }
    std::optional<std::vector<int32_t>> blocks;
    bool self_preempted = false;
    while (!(blocks = kv_.allocate_slots(r.id, n))) {
      const size_t victim = pick_victim();
      preempted_any = true;
      if (victim == i) {
        preempt(i);
        self_preempted = true;
        break;
      }
      if (victim < i) {
        // Already planned this step: take its share back before it goes.
        request& v = requests_.at(running_[victim]);
        auto it = std::find_if(plan.seqs.begin(), plan.seqs.end(), [&](const auto& s) { return s.id == v.id; });
        budget += static_cast<int32_t>(it->token_ids.size());
        plan.seqs.erase(it);
        --i;
      }
      preempt(victim);
    }
    if (self_preempted) continue;
    scheduled_seq s;
    s.id = r.id;
    s.start_position = r.num_computed_tokens;
    s.token_ids.assign(r.tokens.begin() + r.num_computed_tokens, r.tokens.begin() + r.num_computed_tokens + n);
    s.block_ids = std::move(*blocks);
    s.sample = r.num_computed_tokens + n == r.num_tokens();
    if (r.num_computed_tokens < r.num_prompt_tokens)
      stats_.num_computed_prompt_tokens += std::min(n, r.num_prompt_tokens - r.num_computed_tokens);
    r.num_computed_tokens += n;
    budget -= n;
    plan.seqs.push_back(std::move(s));
    ++i;
  }

  // Then waiting ones, unless this step had to preempt (memory is short: admitting more would thrash).
  const int32_t max_long = config_.long_request_threshold > 0
                               ? std::max<int32_t>(1, static_cast<int32_t>(config_.long_max_fraction * config_.max_num_seqs))
                               : config_.max_num_seqs;
  while (!preempted_any && !waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    request& r = requests_.at(std::get<3>(*waiting_.begin()));
    // Short requests come first in the queue: a long one at its head means only long ones are left.
    if (is_long(r) && num_running_long_ >= max_long) break;
    const computed_blocks hit = kv_.get_computed_blocks(r.tokens, r.cache_salt);
    const int32_t n = std::min(chunk_limit(r.num_tokens() - hit.num_computed_tokens), budget);
    auto blocks = kv_.allocate_slots(r.id, n, hit);
    if (!blocks) break;
    if (r.num_cached_tokens < 0) r.num_cached_tokens = hit.num_computed_tokens;
    stats_.num_cached_prompt_tokens += std::min(hit.num_computed_tokens, r.num_prompt_tokens);
    const int32_t start = hit.num_computed_tokens;
    if (start < r.num_prompt_tokens) stats_.num_computed_prompt_tokens += std::min(n, r.num_prompt_tokens - start);

    scheduled_seq s;
    s.id = r.id;
    s.is_new = true;
    s.start_position = start;
    s.token_ids.assign(r.tokens.begin() + start, r.tokens.begin() + start + n);
    const auto table = kv_.block_table(r.id);
    s.block_ids.assign(table.begin(), table.end());
    s.sample = start + n == r.num_tokens();
    s.all_token_ids = r.tokens;
    s.num_prompt_tokens = r.num_prompt_tokens;
    s.params = r.params;
    s.seed = r.seed;
    plan.seqs.push_back(std::move(s));

    r.num_computed_tokens = start + n;
    r.status = request_status::running;
    r.on_shard = true;
    waiting_.erase(waiting_.begin());
    running_.push_back(r.id);
    if (is_long(r)) ++num_running_long_;
    budget -= n;
  }
  // Finished since the last plan, or preempted by this one: the shards drop them before running it. An
  // empty plan is never sent, so its releases wait for the next plan that is.
  if (plan.seqs.empty()) return plan;
  ++stats_.num_steps;
  plan.released = std::move(released_);
  released_.clear();
  return plan;
}

std::vector<std::pair<request_id, int32_t>> scheduler::update(const step_plan& plan, const step_result& result) {
  std::vector<std::pair<request_id, int32_t>> appended;
  appended.reserve(result.ids.size());
  size_t next = 0;
  for (const scheduled_seq& s : plan.seqs) {
    auto it = requests_.find(s.id);
    const bool live = it != requests_.end() && it->second.status == request_status::running;
    std::optional<int32_t> token;
    if (s.sample) {
      if (next < result.ids.size() && result.ids[next] == s.id) token = result.tokens[next++];
      else throw std::invalid_argument("scheduler: step result does not match the plan");
    }
    if (!live) continue;
    request& r = it->second;
    if (token) {
      r.tokens.push_back(*token);
      appended.emplace_back(r.id, *token);
    }
    kv_.cache_blocks(r.id, r.tokens, r.num_computed_tokens);
  }
  return appended;
}

bool scheduler::finish(request_id id, [[maybe_unused]] request_status status) {  // however it ended, its blocks go
  auto it = requests_.find(id);
  if (it == requests_.end() || is_finished(it->second.status)) return false;
  request& r = it->second;
  if (r.status == request_status::running) {
    running_.erase(std::find(running_.begin(), running_.end(), id));
    if (is_long(r)) --num_running_long_;
  } else {
    waiting_.erase(key_of(r));
  }
  kv_.free(id);
  if (r.on_shard) released_.push_back(id);
  requests_.erase(it);
  return true;
}

const request* scheduler::find(request_id id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second;
}

} // namespace troupe
