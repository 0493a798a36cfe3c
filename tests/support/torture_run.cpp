// Runs one torture plan through engine_core and model_runner as the scheduler and shard actors chain
// them (actors/scheduler_actor.cpp, actors/shard_actor.cpp), checking every step
// (tests/support/torture.hpp says what).

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <sys/wait.h>
#include <unistd.h>

#include "kernels/cpu/sampler.hpp"
#include "kernels/model.hpp"
#include "kernels/model_runner.hpp"
#include "runtime/engine/engine_core.hpp"
#include "runtime/engine/step_plan_codec.hpp"
#include "runtime/structured/grammar_cache.hpp"
#include "runtime/structured/grammar_constraint.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/support/torture.hpp"

namespace troupe::torture {

struct harness::output {
  std::vector<int32_t> tokens;
  std::string text;
  finish_reason reason = finish_reason::none;
  std::string stop_string;
  std::optional<int32_t> stop_token;
};

namespace {

uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The shadow KV of position `position` holding `token` after a context whose shadow KV is `before`.
uint64_t kv_hash(uint64_t before, int32_t token, int32_t position) {
  return mix(before ^ mix(static_cast<uint64_t>(token) + 1) ^ (static_cast<uint64_t>(position) << 40));
}

// What position 0 follows: the salt, which must keep salted KV apart as if it were other content.
uint64_t kv_root(const std::string& salt) {
  uint64_t h = 0x74726f75ULL;
  for (const char c : salt) h = mix(h ^ static_cast<unsigned char>(c));
  return h;
}

constexpr uint64_t never_written = 0;

request_id id_of(int32_t label, int32_t copy) { return static_cast<request_id>(label) * 8 + static_cast<request_id>(copy); }

std::string name_of(request_id id) { return "#" + std::to_string(id / 8) + "." + std::to_string(id % 8); }

struct request_state {
  int32_t label = 0, copy = 0;
  std::vector<int32_t> prompt;
  sampling_params params;
  std::string salt;
  bool refused = false;
  bool ended = false;
  std::vector<int32_t> history;  // prompt, then outputs
  std::vector<uint64_t> hashes;  // the shadow KV each position of history must have
  std::vector<uint64_t> unsalted;  // the same without the salt, which changes no real model's output
  std::vector<int32_t> outputs;
  std::string text;
  bool mid_prefill = false;  // the last step computed part of it and sampled nothing
  const harness::output* alone = nullptr;
  finish_reason reason = finish_reason::none;
  std::string stop_string;
  std::optional<int32_t> stop_token;
  bool aborted = false;
  // Constrained: the request's outputs replayed through a fresh matcher of its grammar, one token at a time.
  std::shared_ptr<grammar_matcher> replay;

  void append(int32_t token) {
    const auto pos = static_cast<int32_t>(history.size());
    hashes.push_back(kv_hash(hashes.empty() ? kv_root(salt) : hashes.back(), token, pos));
    unsalted.push_back(kv_hash(unsalted.empty() ? kv_root({}) : unsalted.back(), token, pos));
    history.push_back(token);
  }
};

// What the shards hold for a sequence (model_runner's view, kept here to check plans against).
struct shard_seq {
  std::vector<int32_t> table;
  int32_t computed = 0;
  uint64_t seed = 0;
};

// What the engine must refuse at add: the checks a client's request fails before it enters.
bool must_refuse(const backend& b, const engine_shape& s, const arrival& a) {
  if (a.params.structured) {
    if (!b.compile_grammar) return true;
    try {
      b.compile_grammar(*a.params.structured);
    } catch (const std::invalid_argument&) {
      return true;
    }
  }
  return a.prompt.empty() || static_cast<int32_t>(a.prompt.size()) >= s.max_model_len ||
         std::any_of(a.prompt.begin(), a.prompt.end(), [&](int32_t t) { return t < 0 || t >= b.vocab_size; }) ||
         !a.params.validate(b.vocab_size).empty() || (!b.tok && !a.params.stop.empty());
}

// Whether a request's output is compared with its run alone: greedy, or sampled with a seed.
bool compared_alone(const backend& b, const sampling_params& p) { return !b.reference_for && (p.greedy() || p.seed); }

bool contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// One run of one plan.
class runner {
public:
  runner(const backend& b, const plan& p, std::function<const harness::output*(const arrival&, int32_t)> alone)
      : b_(b), p_(p), s_(p.shape), alone_(std::move(alone)) {}

  run_result run();
  // The outputs of every request, by id, once run() passed.
  std::unordered_map<request_id, request_state> requests;

private:
  // Each returns "" or the violation.
  std::string apply(const event& e);
  std::string abort(request_id id);
  std::string check_plan(const step_plan& plan);
  std::string shadow_step(const step_plan& plan, step_result& result);
  std::string check_outputs(const step_result& result, const std::vector<request_output>& outs,
                            const std::set<request_id>& ended_in_flight);
  std::string check_finish(request_state& r, const request_output& o);
  std::string check_failed(const step_plan& plan, const std::vector<request_output>& outs);
  std::string check_blocks();
  std::string check_against_reference(const request_state& r);
  // Advances a constrained request's replay over its new output token: the token must be one its grammar
  // allowed at that point.
  std::string check_grammar_token(request_state& r, int32_t token);
  // What ending a constrained request means for its grammar; counts it.
  std::string check_grammar_end(const request_state& r);
  // The sampling shard's matchers hold exactly the constrained sequences the shards hold.
  std::string check_constraint_table();
  const constraint_table* sampling_constraints() const {
    return shard_runners_.empty() ? runner_->constraints() : shard_runners_[0]->constraints();
  }

  const backend& b_;
  const plan& p_;
  const engine_shape& s_;
  std::function<const harness::output*(const arrival&, int32_t)> alone_;
  std::unique_ptr<engine_core> core_;
  std::unique_ptr<model_runner> runner_;
  model* model_ = nullptr;  // shard 0's when split
  std::vector<std::unique_ptr<model_runner>> shard_runners_;  // a split model: one runner per shard
  // Runs a step as the shard actors do: on every shard at once when the model is split (shard 0's result,
  // after checking that every shard sampled the same), else on the one runner.
  step_result execute(const step_plan& plan, std::string& failure);
  std::unordered_map<request_id, shard_seq> shard_;
  std::vector<uint64_t> shadow_;  // [num_blocks * block_size]: the shadow KV of each slot
  std::vector<int64_t> written_;  // the step that last wrote each slot
  int64_t step_ = 0;
  run_stats stats_;
};

std::string runner::apply(const event& e) {
  if (e.kind == event_kind::abort) return abort(id_of(e.label, e.copy));
  const arrival& a = e.add;
  for (int32_t c = 0; c < a.n; ++c) {
    const request_id id = id_of(e.label, c);
    if (requests.count(id)) return "plan: request " + name_of(id) + " is added twice";
    request_state& r = requests[id];
    r.label = e.label;
    r.copy = c;
    r.prompt = a.prompt;
    r.params = a.params;
    if (r.params.seed && c > 0) *r.params.seed += static_cast<uint64_t>(c);
    r.salt = a.cache_salt;
    for (int32_t t : a.prompt) r.append(t);
    ++stats_.num_requests;
    const bool invalid = must_refuse(b_, s_, a);
    const std::string refusal = core_->add({id, a.prompt, r.params, a.priority, a.cache_salt});
    if (invalid && refusal.empty()) return "refusal: request " + name_of(id) + " is invalid but was accepted";
    if (!invalid && !refusal.empty()) return "refusal: request " + name_of(id) + " is valid but was refused: " + refusal;
    if (!refusal.empty()) {
      r.refused = r.ended = true;
      ++stats_.num_refused;
      continue;
    }
    if (compared_alone(b_, r.params)) r.alone = alone_(a, c);
    if (r.params.structured) r.replay = std::make_shared<grammar_matcher>(b_.compile_grammar(*r.params.structured));
  }
  return "";
}

step_result runner::execute(const step_plan& plan, std::string& failure) {
  if (shard_runners_.empty()) return runner_->execute(plan);
  std::vector<step_result> results(shard_runners_.size());
  std::vector<std::string> errors(shard_runners_.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < shard_runners_.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        results[r] = shard_runners_[r]->execute(plan);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (size_t r = 0; r < shard_runners_.size(); ++r) {
    if (!errors[r].empty()) {
      failure = "shard " + std::to_string(r) + " threw at step " + std::to_string(step_) + ": " + errors[r];
      return {};
    }
    if (results[r].ids != results[0].ids || results[r].tokens != results[0].tokens)
      failure = "shard " + std::to_string(r) + " sampled other tokens than shard 0 at step " + std::to_string(step_);
  }
  return std::move(results[0]);
}

std::string runner::abort(request_id id) {
  auto it = requests.find(id);
  const bool live = it != requests.end() && !it->second.ended;
  std::optional<request_output> out = core_->abort(id);
  if (!live) {
    if (out) return "abort: request " + name_of(id) + ", unknown or ended, returned an output";
    return "";
  }
  request_state& r = it->second;
  if (!out) return "abort: request " + name_of(id) + " is live but abort returned nothing";
  if (out->id != id || !out->finished || !out->aborted || !out->new_token_ids.empty() || !out->error.empty())
    return "abort: request " + name_of(id) + "'s abort output is not a plain finished, aborted output";
  if (out->num_output_tokens != static_cast<int32_t>(r.outputs.size()) ||
      out->num_prompt_tokens != static_cast<int32_t>(r.prompt.size()))
    return "abort: request " + name_of(id) + " reports " + std::to_string(out->num_output_tokens) + " outputs, it had " +
           std::to_string(r.outputs.size());
  r.ended = r.aborted = true;
  ++stats_.num_aborted;
  if (std::string f = check_grammar_end(r); !f.empty()) return f;
  return check_against_reference(r);
}

std::string runner::check_plan(const step_plan& plan) {
  const std::string step = "step " + std::to_string(step_) + ": ";
  if (plan.num_tokens() > s_.max_num_batched_tokens)
    return "budget: " + step + std::to_string(plan.num_tokens()) + " tokens, over max_num_batched_tokens " +
           std::to_string(s_.max_num_batched_tokens);
  if (static_cast<int32_t>(plan.seqs.size()) > s_.max_num_seqs)
    return "seq cap: " + step + std::to_string(plan.seqs.size()) + " sequences, over max_num_seqs " + std::to_string(s_.max_num_seqs);
  for (request_id id : plan.released)
    if (shard_.erase(id) == 0) return "release: " + step + "releases " + name_of(id) + ", which the shards do not hold";
  for (const auto& [id, seq] : shard_)
    if (requests.at(id).ended) return "release: " + step + "the shards still hold " + name_of(id) + ", which ended";
  std::set<request_id> seen;
  for (const scheduled_seq& s : plan.seqs) {
    const std::string who = step + name_of(s.id);
    if (!seen.insert(s.id).second) return "plan: " + who + " is scheduled twice";
    auto it = requests.find(s.id);
    if (it == requests.end() || it->second.ended) return "plan: " + who + " is scheduled but is unknown or ended";
    request_state& r = it->second;
    const auto n = static_cast<int32_t>(s.token_ids.size());
    if (n == 0) return "plan: " + who + " is scheduled with no tokens";
    if (s_.long_prefill_token_threshold > 0 && n > s_.long_prefill_token_threshold)
      return "chunk cap: " + who + " computes " + std::to_string(n) + " tokens, over long_prefill_token_threshold " +
             std::to_string(s_.long_prefill_token_threshold);
    if (s.is_new) {
      if (s.all_token_ids != r.history) return "plan: " + who + " starts (again) with a history that is not its own";
      if (s.num_prompt_tokens != static_cast<int32_t>(r.prompt.size())) return "plan: " + who + " has a wrong prompt length";
      if (r.params.seed && s.seed != *r.params.seed) return "plan: " + who + " samples with another seed than it asked for";
      if (s.start_position % s_.block_size != 0) return "plan: " + who + " starts from a cached prefix that is not whole blocks";
      shard_[s.id] = shard_seq{s.block_ids, s.start_position, s.seed};
    } else {
      auto sh = shard_.find(s.id);
      if (sh == shard_.end()) return "plan: " + who + " continues, but the shards do not hold it";
      if (s.start_position != sh->second.computed)
        return "plan: " + who + " continues at " + std::to_string(s.start_position) + ", the shards computed " +
               std::to_string(sh->second.computed);
      sh->second.table.insert(sh->second.table.end(), s.block_ids.begin(), s.block_ids.end());
    }
    shard_seq& sh = shard_.at(s.id);
    const int32_t end = s.start_position + n;
    if (end > static_cast<int32_t>(r.history.size()))
      return "plan: " + who + " computes up to " + std::to_string(end) + ", past its " + std::to_string(r.history.size()) + " tokens";
    if (!std::equal(s.token_ids.begin(), s.token_ids.end(), r.history.begin() + s.start_position))
      return "plan: " + who + " computes tokens that are not its own";
    if (s.sample != (end == static_cast<int32_t>(r.history.size())))
      return "plan: " + who + (s.sample ? " samples before its end" : " reaches its end but does not sample");
    const auto table = core_->kv().block_table(s.id);
    if (!std::equal(table.begin(), table.end(), sh.table.begin(), sh.table.end()))
      return "plan: " + who + "'s block table on the shards differs from the KV cache manager's";
    if (static_cast<int64_t>(sh.table.size()) * s_.block_size < end) return "plan: " + who + " has too few blocks";
    for (int32_t blk : sh.table)
      if (blk < 0 || blk >= s_.num_blocks) return "plan: " + who + " holds block id " + std::to_string(blk);
    sh.computed = end;
    r.mid_prefill = !s.sample;
  }
  return "";
}

// Writes the step's shadow KV, checks what each sequence attends to, and on the null backend draws the
// sampled tokens from it.
std::string runner::shadow_step(const step_plan& plan, step_result& result) {
  const int32_t bs = s_.block_size;
  auto slot = [&](const shard_seq& sh, int32_t pos) { return static_cast<size_t>(sh.table[pos / bs]) * bs + pos % bs; };
  for (const scheduled_seq& s : plan.seqs) {
    const shard_seq& sh = shard_.at(s.id);
    const request_state& r = requests.at(s.id);
    for (int32_t i = 0; i < static_cast<int32_t>(s.token_ids.size()); ++i) {
      const int32_t pos = s.start_position + i;
      const size_t at = slot(sh, pos);
      if (written_[at] == step_)
        return "kv: step " + std::to_string(step_) + " writes slot " + std::to_string(at) + " twice (" + name_of(s.id) + ")";
      written_[at] = step_;
      shadow_[at] = kv_hash(pos == 0 ? kv_root(r.salt) : shadow_[slot(sh, pos - 1)], s.token_ids[i], pos);
    }
  }
  size_t next = 0;
  for (const scheduled_seq& s : plan.seqs) {
    const shard_seq& sh = shard_.at(s.id);
    const request_state& r = requests.at(s.id);
    const int32_t end = s.start_position + static_cast<int32_t>(s.token_ids.size());
    for (int32_t pos = 0; pos < end; ++pos)
      if (shadow_[slot(sh, pos)] != r.hashes[pos])
        return "kv: step " + std::to_string(step_) + ": " + name_of(s.id) + " attends to position " + std::to_string(pos) +
               " in block " + std::to_string(sh.table[pos / bs]) + ", which holds " +
               (shadow_[slot(sh, pos)] == never_written ? "nothing written yet" : "other KV");
    if (!s.sample || model_) continue;
    // A constrained row keeps what the runner picked inside its grammar's bitmask.
    if (r.params.structured) {
      ++next;
      continue;
    }
    // The null backend's "model": a token that depends on the history whose KV the step read (checked
    // just above), the seed when sampling, and the output index, with small ids common enough to hit
    // stop_token_ids.
    uint64_t x = r.unsalted[end - 1];
    if (!r.params.greedy()) x = mix(x ^ mix(sh.seed) ^ r.outputs.size());
    x = mix(x);
    result.tokens.at(next++) = (x & 7) == 0 ? static_cast<int32_t>((x >> 3) % 4) : static_cast<int32_t>((x >> 3) % b_.vocab_size);
  }
  return "";
}

std::string runner::check_against_reference(const request_state& r) {
  if (r.alone) {
    const auto& want = r.alone->tokens;
    if (r.outputs.size() > want.size() || !std::equal(r.outputs.begin(), r.outputs.end(), want.begin()))
      return "alone: " + name_of(id_of(r.label, r.copy)) + " produced tokens that differ from the same request run alone";
    if (!r.ended || r.aborted) return "";
    if (r.outputs.size() != want.size()) return "alone: " + name_of(id_of(r.label, r.copy)) + " ended earlier than run alone";
    if (r.reason != r.alone->reason || r.text != r.alone->text || r.stop_string != r.alone->stop_string ||
        r.stop_token != r.alone->stop_token)
      return "alone: " + name_of(id_of(r.label, r.copy)) + " ended with another reason or text than run alone";
    ++stats_.num_compared;
    return "";
  }
  if (!b_.reference_for || !r.params.greedy() || r.outputs.empty() || !r.ended) return "";
  ++stats_.num_compared;
  // Teacher-forced: the reference prefills the prompt, then decodes the request's own outputs one by
  // one, a row of logits after each (a model step gives one row per sequence).
  model& ref = *b_.reference_for(s_.block_size);
  const int32_t V = b_.vocab_size;
  std::vector<float> logits, row_logits;
  const auto num_prompt = static_cast<int32_t>(r.prompt.size());
  for (int32_t begin = 0; begin < num_prompt + static_cast<int32_t>(r.outputs.size()) - 1;) {
    const int32_t end = begin == 0 ? num_prompt : begin + 1;
    step_input in;
    for (int32_t pos = begin; pos < end; ++pos) {
      in.token_ids.push_back(pos < num_prompt ? r.prompt[pos] : r.outputs[pos - num_prompt]);
      in.positions.push_back(pos);
      in.slot_mapping.push_back(pos);  // block i of the sequence is block i of the cache
    }
    in.query_start = {0, end - begin};
    in.seq_lens = {end};
    in.max_blocks_per_seq = (end + s_.block_size - 1) / s_.block_size;
    in.block_tables.resize(static_cast<size_t>(in.max_blocks_per_seq));
    std::iota(in.block_tables.begin(), in.block_tables.end(), 0);
    in.logits_indices = {end - begin - 1};
    ref.forward(in, row_logits);
    logits.insert(logits.end(), row_logits.begin(), row_logits.end());
    begin = end;
  }
  for (size_t k = 0; k < r.outputs.size(); ++k) {
    const std::span<float> row(logits.data() + k * V, static_cast<size_t>(V));
    const std::span<const int32_t> out(r.outputs);
    const sample_request req{&r.params, r.prompt, out.first(k), 0, b_.eos_token_ids, {}};
    apply_processors_cpu(row, V, std::span<const sample_request>(&req, 1));
    const float best = *std::max_element(row.begin(), row.end());
    float scale = 1;
    for (float v : row)
      if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
    const float got = row[static_cast<size_t>(r.outputs[k])];
    if (!(got >= best - b_.argmax_tolerance * scale))
      return "reference: " + name_of(id_of(r.label, r.copy)) + "'s greedy token " + std::to_string(k) + " is " +
             std::to_string(r.outputs[k]) + " with logit " + std::to_string(got) + "; the CPU reference's best is " +
             std::to_string(argmax_lowest_id(row)) + " with " + std::to_string(best);
  }
  return "";
}

std::string runner::check_grammar_token(request_state& r, int32_t token) {
  // Past its end id (ignore_eos or min_tokens keep the request going) a request is unconstrained, as vLLM's.
  if (!r.replay || r.replay->ended()) return "";
  std::vector<uint32_t> words(static_cast<size_t>(r.replay->bitmask_words()));
  r.replay->fill_next_token_bitmask(words);
  // The sampler's fallback: a grammar that allows no id ends the sequence on an end id.
  std::vector<uint32_t> allowed(static_cast<size_t>(bitmask_words(b_.vocab_size)));
  words.resize(allowed.size());
  effective_bitmask(words, b_.vocab_size, b_.eos_token_ids, allowed);
  const std::string at = " output token " + std::to_string(r.outputs.size()) + " (" + std::to_string(token) + ")";
  if (!(allowed[static_cast<size_t>(token) / 32] >> (token % 32) & 1u)) return at + " is not allowed by its grammar there";
  if (!r.replay->accept_token(token))
    return at + " is allowed by its grammar's bitmask but not accepted by its matcher";
  return "";
}

std::string runner::check_grammar_end(const request_state& r) {
  if (!r.replay) return "";
  ++stats_.num_constrained;
  if (r.reason == finish_reason::stop && !r.stop_token && r.stop_string.empty() && !r.outputs.empty() &&
      contains(b_.eos_token_ids, r.outputs.back())) {
    if (!r.replay->is_terminated())
      return "grammar: " + name_of(id_of(r.label, r.copy)) + " ended on EOS, but its grammar is not complete";
    ++stats_.num_grammar_complete;
  }
  return "";
}

std::string runner::check_constraint_table() {
  const constraint_table* table = sampling_constraints();
  if (!table) return "";
  size_t want = 0;
  for (const auto& [id, seq] : shard_) {
    const bool constrained = requests.at(id).params.structured.has_value();
    want += constrained;
    if (table->holds(id) != constrained)
      return "constraints: step " + std::to_string(step_) + ": the sampling shard " +
             (constrained ? "holds no matcher for " : "holds a matcher for unconstrained ") + name_of(id);
  }
  if (table->num_constraints() != want)
    return "constraints: step " + std::to_string(step_) + ": the sampling shard holds " +
           std::to_string(table->num_constraints()) + " matchers for " + std::to_string(want) + " constrained sequences";
  return "";
}

std::string runner::check_finish(request_state& r, const request_output& o) {
  const std::string who = "finish: " + name_of(o.id) + " ";
  const sampling_params& p = r.params;
  const auto num = static_cast<int32_t>(r.outputs.size());
  const int32_t last = r.outputs.back();
  r.reason = o.reason;
  r.stop_string = o.stop_string;
  r.stop_token = o.stop_token;
  if (o.reason == finish_reason::length) {
    if (num != p.max_tokens && static_cast<int32_t>(r.prompt.size()) + num != s_.max_model_len)
      return who + "ended for length after " + std::to_string(num) + " tokens (max_tokens " + std::to_string(p.max_tokens) + ")";
  } else if (o.reason == finish_reason::stop) {
    ++stats_.num_stopped;
    if (o.stop_token) {
      if (*o.stop_token != last || !contains(p.stop_token_ids, last) || num < p.min_tokens)
        return who + "stopped on token " + std::to_string(*o.stop_token) + " wrongly";
    } else if (!o.stop_string.empty()) {
      if (std::find(p.stop.begin(), p.stop.end(), o.stop_string) == p.stop.end())
        return who + "stopped on a string it did not ask for";
      if (p.include_stop_str_in_output && !r.text.ends_with(o.stop_string))
        return who + "stopped on a string its text does not end with";
    } else if (p.ignore_eos || !contains(b_.eos_token_ids, last) || num < p.min_tokens) {
      return who + "stopped on token " + std::to_string(last) + " as if it were EOS";
    }
  } else {
    return who + "finished without a reason";
  }
  if (o.num_cached_tokens < 0 || o.num_cached_tokens % s_.block_size != 0 ||
      o.num_cached_tokens >= static_cast<int32_t>(r.prompt.size()) || (!s_.prefix_caching && o.num_cached_tokens != 0))
    return who + "reports " + std::to_string(o.num_cached_tokens) + " cached prompt tokens";
  if (p.min_tokens == 0 && !p.include_stop_str_in_output)
    for (const std::string& stop : p.stop)
      if (r.text.find(stop) != std::string::npos) return who + "has the stop string \"" + stop + "\" in its text";
  return check_against_reference(r);
}

std::string runner::check_outputs(const step_result& result, const std::vector<request_output>& outs,
                                  const std::set<request_id>& ended_in_flight) {
  const std::string step = "step " + std::to_string(step_) + ": ";
  std::unordered_map<request_id, int32_t> sampled;
  for (size_t i = 0; i < result.ids.size(); ++i)
    if (!ended_in_flight.count(result.ids[i])) sampled.emplace(result.ids[i], result.tokens[i]);
  for (const request_output& o : outs) {
    const std::string who = step + name_of(o.id);
    auto it = requests.find(o.id);
    if (it == requests.end() || it->second.ended) return "output: " + who + " gets an output but is unknown or ended";
    request_state& r = it->second;
    if (o.aborted || !o.error.empty()) return "output: " + who + " fails or is aborted by a step: " + o.error;
    auto want = sampled.find(o.id);
    if (want == sampled.end()) return "output: " + who + " gets an output but sampled nothing (or got two)";
    if (o.new_token_ids != std::vector<int32_t>{want->second})
      return "output: " + who + " gets other tokens than the step sampled";
    sampled.erase(want);
    if (o.new_token_ids[0] < 0 || o.new_token_ids[0] >= b_.vocab_size) return "output: " + who + " gets a token out of the vocabulary";
    if (std::string f = check_grammar_token(r, o.new_token_ids[0]); !f.empty()) return "grammar: " + who + f;
    r.append(o.new_token_ids[0]);
    r.outputs.push_back(o.new_token_ids[0]);
    r.text += o.text;
    if (o.num_output_tokens != static_cast<int32_t>(r.outputs.size()) ||
        o.num_prompt_tokens != static_cast<int32_t>(r.prompt.size()))
      return "output: " + who + " reports " + std::to_string(o.num_output_tokens) + " outputs, it has " +
             std::to_string(r.outputs.size());
    if (model_ && r.params.logprobs.has_value() != o.logprobs.has_value())
      return "output: " + who + (o.logprobs ? " gets logprobs it did not ask for" : " asked for logprobs and got none");
    if (o.logprobs && o.logprobs->top_ids.size() != static_cast<size_t>(std::min(*r.params.logprobs, b_.vocab_size)))
      return "output: " + who + " gets " + std::to_string(o.logprobs->top_ids.size()) + " top logprobs";
    if (o.finished) {
      r.ended = true;
      if (std::string f = check_finish(r, o); !f.empty()) return f;
      if (std::string f = check_grammar_end(r); !f.empty()) return f;
      continue;
    }
    const auto total = static_cast<int32_t>(r.history.size());
    if (static_cast<int32_t>(r.outputs.size()) >= r.params.max_tokens || total >= s_.max_model_len)
      return "output: " + who + " goes on past max_tokens or max_model_len";
    if (std::string f = check_against_reference(r); !f.empty()) return f;
  }
  if (!sampled.empty()) return "output: " + step + name_of(sampled.begin()->first) + " sampled a token that no output carries";
  return "";
}

// The outputs of engine_core::fail: one error for each of the step's requests still live, nothing else.
std::string runner::check_failed(const step_plan& plan, const std::vector<request_output>& outs) {
  const std::string step = "step error: step " + std::to_string(step_) + ": ";
  std::set<request_id> want;
  for (const scheduled_seq& s : plan.seqs)
    if (!requests.at(s.id).ended) want.insert(s.id);
  for (const request_output& o : outs) {
    if (want.erase(o.id) == 0) return step + name_of(o.id) + " gets an error but was not live in the failed step";
    if (!o.finished || o.error.empty() || o.aborted || !o.new_token_ids.empty())
      return step + name_of(o.id) + " does not end with just an error";
    requests.at(o.id).ended = true;
    ++stats_.num_failed;
    if (std::string f = check_grammar_end(requests.at(o.id)); !f.empty()) return f;
  }
  if (!want.empty()) return step + name_of(*want.begin()) + " was in the failed step but gets no error";
  return "";
}

std::string runner::check_blocks() {
  const kv_cache_manager& kv = core_->kv();
  if (std::string c = kv.check_consistency(); !c.empty()) return "blocks: step " + std::to_string(step_) + ": " + c;
  int64_t held = 0, refs = 0;
  int32_t running = 0, live = 0;
  for (const auto& [id, r] : requests) {
    if (r.ended) continue;
    ++live;
    const auto n = static_cast<int64_t>(kv.block_table(id).size());
    held += n;
    running += n > 0 ? 1 : 0;
  }
  for (int32_t b = 0; b < kv.pool().num_blocks(); ++b) refs += kv.pool().ref_count(b);
  if (held != refs)
    return "blocks: step " + std::to_string(step_) + ": live requests hold " + std::to_string(held) +
           " block references, the pool counts " + std::to_string(refs);
  if (core_->num_running() + core_->num_waiting() != live)
    return "requests: step " + std::to_string(step_) + ": the engine counts " + std::to_string(core_->num_running()) +
           " running and " + std::to_string(core_->num_waiting()) + " waiting requests, " + std::to_string(live) + " are live";
  if (running > s_.max_num_seqs)
    return "seq cap: step " + std::to_string(step_) + ": " + std::to_string(running) + " requests hold blocks, over max_num_seqs";
  return "";
}

run_result runner::run() {
  run_result out;
  auto fail = [&](std::string f) {
    out.failure = std::move(f);
    out.stats = stats_;
    return out;
  };
  if (s_.num_blocks <= 0 || static_cast<int64_t>(s_.num_blocks) * s_.block_size > b_.max_kv_tokens ||
      s_.max_num_batched_tokens > b_.max_num_batched_tokens || s_.max_num_seqs > b_.max_num_seqs ||
      s_.max_model_len > b_.max_model_len)
    return fail("plan: its limits exceed what the backend's models were built for");
  try {
    engine_config ec;
    ec.sched.max_num_seqs = s_.max_num_seqs;
    ec.sched.max_num_batched_tokens = s_.max_num_batched_tokens;
    ec.sched.max_model_len = s_.max_model_len;
    ec.sched.policy = s_.policy;
    ec.sched.long_prefill_token_threshold = s_.long_prefill_token_threshold;
    ec.sched.long_request_threshold = s_.long_request_threshold;
    ec.sched.long_max_fraction = s_.long_max_fraction;
    ec.kv.num_blocks = s_.num_blocks;
    ec.kv.block_size = s_.block_size;
    ec.kv.enable_prefix_caching = s_.prefix_caching;
    ec.vocab_size = b_.vocab_size;
    ec.eos_token_ids = b_.eos_token_ids;
    if (s_.colliding_hash)
      ec.block_hash = [](const block_key& parent, std::span<const int32_t> tokens, std::string_view extra) {
        // Five values: blocks of different content (and salt) share keys all the time.
        const uint64_t v = (parent.lo + (tokens.empty() ? 0 : static_cast<uint64_t>(tokens[0])) + extra.size()) % 5;
        return block_key{v, 0};
      };
    if (b_.compile_grammar)
      ec.compile_structured = [compile = b_.compile_grammar](const structured_output& spec) { compile(spec); };
    core_ = std::make_unique<engine_core>(ec, b_.tok, p_.seed);
    model_ = b_.model_for ? b_.model_for(s_.block_size) : nullptr;
    runner_ = std::make_unique<model_runner>(model_, s_.block_size, b_.vocab_size, b_.eos_token_ids);
    if (b_.shards_for) {
      const std::vector<model*> shards = b_.shards_for(s_.block_size);
      model_ = shards.at(0);
      for (model* m : shards)
        shard_runners_.push_back(std::make_unique<model_runner>(m, s_.block_size, b_.vocab_size, b_.eos_token_ids));
    }
    // Structured outputs: only the shard that samples keeps matchers (actors/engine.cpp).
    if (b_.compile_grammar)
      (shard_runners_.empty() ? *runner_ : *shard_runners_[0]).enable_constraints(grammar_constraint_factory(b_.compile_grammar));
    shadow_.assign(static_cast<size_t>(s_.num_blocks) * s_.block_size, never_written);
    written_.assign(shadow_.size(), -1);

    int64_t total_tokens = 0;
    for (const event& e : p_.events)
      if (e.kind == event_kind::add) total_tokens += static_cast<int64_t>(e.add.prompt.size() + e.add.params.max_tokens) * e.add.n;
    // Preemption recomputes, so a run may take several times its tokens in steps, but not without end.
    const int64_t max_steps = 1000 + 64 * total_tokens;

    std::vector<event> triggers;      // aborts waiting for their point
    std::vector<event> in_flight;     // events to apply while the next step runs
    size_t next = 0;
    int64_t tick = 0;
    int32_t step_errors = 0;  // due: the next steps to run fail
    auto fire_triggers = [&]() -> std::string {
      for (size_t i = 0; i < triggers.size();) {
        const event& t = triggers[i];
        auto it = requests.find(id_of(t.label, t.copy));
        const bool due = it != requests.end() && !it->second.ended &&
                         (t.point == abort_point::mid_prefill ? it->second.mid_prefill
                                                              : static_cast<int32_t>(it->second.outputs.size()) >= t.num_outputs);
        if (!due) {
          ++i;
          continue;
        }
        event e = t;
        e.point = abort_point::at_tick;
        triggers.erase(triggers.begin() + static_cast<std::ptrdiff_t>(i));
        if (e.in_flight) {
          in_flight.push_back(e);
        } else if (std::string f = apply(e); !f.empty()) {
          return f;
        }
      }
      return "";
    };
    auto apply_in_flight = [&]() -> std::string {
      for (const event& e : in_flight)
        if (std::string f = apply(e); !f.empty()) return f;
      in_flight.clear();
      return "";
    };

    for (;;) {
      // Events due by this tick: now, or while its step runs.
      for (; next < p_.events.size() && p_.events[next].tick <= tick; ++next) {
        const event& e = p_.events[next];
        if (e.kind == event_kind::step_error) {
          ++step_errors;
        } else if (e.kind == event_kind::abort && e.point != abort_point::at_tick) {
          triggers.push_back(e);
        } else if (e.in_flight) {
          in_flight.push_back(e);
        } else if (std::string f = apply(e); !f.empty()) {
          return fail(f);
        }
      }
      if (std::string f = fire_triggers(); !f.empty()) return fail(f);
      step_plan plan;
      if (core_->has_work()) plan = core_->schedule();
      if (plan.seqs.empty()) {
        // No step runs: what was to happen during it happens now, and idle time passes at once.
        if (!in_flight.empty()) {
          if (std::string f = apply_in_flight(); !f.empty()) return fail(f);
          continue;
        }
        if (next == p_.events.size()) {
          if (core_->has_work())
            return fail("stuck: " + std::to_string(core_->num_waiting()) + " waiting and " +
                        std::to_string(core_->num_running()) + " running requests, and the engine schedules nothing");
          break;
        }
        // As the scheduler actor does, a plan with no sequences goes nowhere (its releases wait for the next).
        tick = std::max<int64_t>(tick + 1, p_.events[next].tick);
        continue;
      }
      ++step_;
      if (step_ > max_steps) return fail("livelock: " + std::to_string(max_steps) + " steps and the requests are not done");
      if (std::string f = check_plan(plan); !f.empty()) return fail(f);
      // What rank 0 sends the other ranks of an mpirun job (structured specs included) comes out the same.
      if (decode_rank_message(encode_step_plan(plan)).plan != plan)
        return fail("codec: step " + std::to_string(step_) + "'s plan does not come back the same from the wire codec");
      std::string shard_failure;
      step_result result = execute(plan, shard_failure);
      if (!shard_failure.empty()) return fail(shard_failure);
      if (std::string f = check_constraint_table(); !f.empty()) return fail(f);
      if (result.step != plan.step) return fail("result: step " + std::to_string(step_) + " comes back with another step number");
      std::vector<request_id> want_ids;
      for (const scheduled_seq& s : plan.seqs)
        if (s.sample) want_ids.push_back(s.id);
      if (result.ids != want_ids || result.tokens.size() != want_ids.size())
        return fail("result: step " + std::to_string(step_) + " samples other sequences than the plan says");
      if (std::string f = shadow_step(plan, result); !f.empty()) return fail(f);
      if (b_.fault) b_.fault(plan, result);
      // Messages that reach the scheduler while the shards compute.
      std::set<request_id> live_before;
      for (const auto& [id, r] : requests)
        if (!r.ended) live_before.insert(id);
      if (std::string f = apply_in_flight(); !f.empty()) return fail(f);
      std::set<request_id> ended_in_flight;
      for (request_id id : live_before)
        if (requests.at(id).ended) ended_in_flight.insert(id);
      if (step_errors > 0) {
        // As the scheduler actor does with a step whose shard reports an error: no update, the step's
        // requests fail.
        --step_errors;
        if (std::string f = check_failed(plan, core_->fail(plan, "internal error: the torture plan fails this step"));
            !f.empty())
          return fail(f);
      } else {
        const std::vector<request_output> outs = core_->update(plan, result);
        if (std::string f = check_outputs(result, outs, ended_in_flight); !f.empty()) return fail(f);
      }
      if (std::string f = check_blocks(); !f.empty()) return fail(f);
      if (std::string f = fire_triggers(); !f.empty()) return fail(f);
      ++tick;
    }
    // Aborts that never found their point: their requests ended first, so they must find nothing.
    for (event e : triggers) {
      e.point = abort_point::at_tick;
      if (std::string f = apply(e); !f.empty()) return fail(f);
    }
    for (const auto& [id, r] : requests)
      if (!r.ended) return fail("end: " + name_of(id) + " never ended");
    if (core_->num_running() != 0 || core_->num_waiting() != 0) return fail("end: the engine still holds requests");
    if (core_->kv().num_free_blocks() != s_.num_blocks)
      return fail("blocks: at the end " + std::to_string(core_->kv().num_free_blocks()) + " of " +
                  std::to_string(s_.num_blocks) + " blocks are free");
    if (std::string c = core_->kv().check_consistency(); !c.empty()) return fail("blocks: at the end: " + c);
    if (std::string f = check_constraint_table(); !f.empty()) return fail(f);
    stats_.num_steps = step_;
    stats_.num_preemptions = core_->stats().num_preemptions;
    stats_.num_cached_tokens = core_->stats().num_cached_prompt_tokens;
  } catch (const std::exception& e) {
    stats_.num_steps = step_;
    return fail("exception: step " + std::to_string(step_) + ": " + e.what());
  }
  out.stats = stats_;
  return out;
}

} // namespace

harness::harness(backend b) : backend_(std::move(b)) {
  if (backend_.tok && !backend_.compile_grammar) {
    // As model_front does: the tokenizer's vocabulary over the model's logits, one cache of compiled grammars.
    auto cache = std::make_shared<grammar_cache>();
    auto vocab = make_token_vocabulary(*backend_.tok, backend_.eos_token_ids, backend_.vocab_size);
    backend_.compile_grammar = [cache, vocab](const structured_output& spec) { return cache->get(spec, vocab); };
  }
}
harness::~harness() = default;

const harness::output& harness::alone(const engine_shape& shape, const arrival& a, uint64_t seed) {
  std::ostringstream key;
  key << shape.block_size << " " << shape.max_model_len << " " << describe(a.params) << " |";
  for (int32_t t : a.prompt) key << " " << t;
  auto& slot = alone_[key.str()];
  if (slot) return *slot;
  plan p;
  p.seed = seed;
  engine_shape& s = p.shape;
  s.block_size = shape.block_size;
  s.max_model_len = shape.max_model_len;
  s.num_blocks = static_cast<int32_t>(std::min<int64_t>((shape.max_model_len + shape.block_size - 1) / shape.block_size + 1,
                                                        backend_.max_kv_tokens / shape.block_size));
  s.max_num_seqs = 1;
  s.max_num_batched_tokens = std::min(backend_.max_num_batched_tokens, shape.max_model_len);
  s.prefix_caching = false;
  event e;
  e.add = a;
  e.add.n = 1;
  p.events.push_back(e);
  runner r(backend_, p, [](const arrival&, int32_t) { return nullptr; });
  const run_result res = r.run();
  if (!res.failure.empty()) throw std::runtime_error("the request run alone fails: " + res.failure);
  const request_state& st = r.requests.at(id_of(0, 0));
  slot = std::make_unique<output>(output{st.outputs, st.text, st.reason, st.stop_string, st.stop_token});
  return *slot;
}

run_result harness::run_in_child(const plan& p) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    for (int sig : {SIGFPE, SIGSEGV, SIGBUS, SIGILL, SIGABRT}) std::signal(sig, SIG_DFL);  // the parent reports
    isolated_ = false;
    const run_result r = run(p);
    const run_stats& s = r.stats;
    std::ostringstream o;
    o << s.num_steps << " " << s.num_requests << " " << s.num_refused << " " << s.num_aborted << " " << s.num_failed << " "
      << s.num_stopped << " " << s.num_preemptions << " " << s.num_cached_tokens << " " << s.num_compared << " "
      << s.num_constrained << " " << s.num_grammar_complete << "\n"
      << r.failure;
    const std::string text = o.str();
    for (size_t at = 0; at < text.size();) {
      const ssize_t n = ::write(fds[1], text.data() + at, text.size() - at);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    return {"crash: signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")", {}};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.find('\n') == std::string::npos)
    return {"crash: the child running the plan exited with status " + std::to_string(WEXITSTATUS(status)), {}};
  run_result r;
  std::istringstream in(text.substr(0, text.find('\n')));
  run_stats& s = r.stats;
  in >> s.num_steps >> s.num_requests >> s.num_refused >> s.num_aborted >> s.num_failed >> s.num_stopped >>
      s.num_preemptions >> s.num_cached_tokens >> s.num_compared >> s.num_constrained >> s.num_grammar_complete;
  r.failure = text.substr(text.find('\n') + 1);
  return r;
}

run_result harness::run(const plan& p) {
  if (isolated_) return run_in_child(p);
  // The runs alone first: they use the same models, whose KV caches the plan's run must keep to itself.
  try {
    for (const event& e : p.events)
      if (e.kind == event_kind::add)
        for (int32_t c = 0; c < e.add.n; ++c) {
          arrival a = e.add;
          if (a.params.seed) *a.params.seed += static_cast<uint64_t>(c);
          if (compared_alone(backend_, a.params) && !must_refuse(backend_, p.shape, a)) alone(p.shape, a, p.seed);
        }
  } catch (const std::exception& e) {
    return {std::string("alone: ") + e.what(), {}};
  }
  runner r(backend_, p, [&](const arrival& a, int32_t copy) -> const output* {
    arrival one = a;
    if (one.params.seed) *one.params.seed += static_cast<uint64_t>(copy);
    return &alone(p.shape, one, p.seed);
  });
  return r.run();
}

} // namespace troupe::torture
