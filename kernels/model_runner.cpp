#include "kernels/model_runner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <numeric>
#include <stdexcept>

#include "kernels/cpu/sampler.hpp"

namespace troupe {
namespace {

// A greedy draw that no logits processor touches: the argmax of the raw logits, which the backend can
// take on the device (see sampler.hpp for the processors that run before a greedy argmax).
bool plain_greedy(const sample_request& r) {
  const sampling_params& p = *r.params;
  const bool min_tokens_mask =
      static_cast<int32_t>(r.output_ids.size()) < p.min_tokens && (!r.eos_token_ids.empty() || !p.stop_token_ids.empty());
  return p.greedy() && !p.logprobs && !p.structured && p.logit_bias.empty() && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f && !min_tokens_mask;
}

// log(softmax(row)), in double for the sum so large vocabularies do not lose the tail.
std::vector<float> log_softmax_row(std::span<const float> row) {
  const float max = *std::max_element(row.begin(), row.end());
  double sum = 0;
  for (float v : row) sum += std::exp(static_cast<double>(v - max));
  const float log_sum = static_cast<float>(std::log(sum)) + max;
  std::vector<float> out(row.size());
  for (size_t i = 0; i < row.size(); ++i) out[i] = row[i] - log_sum;
  return out;
}

// The chosen token's logprob and the k most likely tokens (ties: lower id first).
sampled_logprobs top_logprobs(const std::vector<float>& lp, int32_t chosen, int32_t k) {
  sampled_logprobs s;
  s.logprob = lp[static_cast<size_t>(chosen)];
  const size_t n = std::min(lp.size(), static_cast<size_t>(std::max(0, k)));
  std::vector<int32_t> ids(lp.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(),
                    [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
  for (size_t i = 0; i < n; ++i) {
    s.top_ids.push_back(ids[i]);
    s.top_logprobs.push_back(lp[static_cast<size_t>(ids[i])]);
  }
  return s;
}

// The null backend's token for a constrained row: an id its bitmask allows (the end ids when it allows none),
// drawn with the row's seed, or with a hash of its history when greedy (the engine draws a greedy row's seed,
// which would make its pick depend on the order requests came in).
int32_t null_allowed_token(const sample_request& r, int32_t vocab) {
  std::vector<uint32_t> words(r.allowed_tokens.size());
  effective_bitmask(r.allowed_tokens, vocab, r.eos_token_ids, words);
  std::vector<int32_t> allowed;
  for (int32_t id = 0; id < vocab; ++id)
    if (words[static_cast<size_t>(id) / 32] >> (id % 32) & 1u) allowed.push_back(id);
  if (allowed.empty()) return 0;
  uint64_t key = r.seed;
  if (r.params->greedy()) {
    key = 0x6e756c6cULL;
    for (int32_t t : r.prompt_ids) key = key * 0x100000001b3ULL ^ static_cast<uint32_t>(t);
    for (int32_t t : r.output_ids) key = key * 0x100000001b3ULL ^ static_cast<uint32_t>(t);
  }
  const double u = sampling_uniform(key, r.output_ids.size());
  return allowed[std::min(allowed.size() - 1, static_cast<size_t>(u * static_cast<double>(allowed.size())))];
}

} // namespace

model_runner::model_runner(model* m, int32_t block_size, int32_t vocab_size, std::vector<int32_t> eos_token_ids,
                           int32_t null_token)
    : model_(m), block_size_(block_size), vocab_size_(vocab_size), eos_token_ids_(std::move(eos_token_ids)),
      null_token_(null_token) {}

void model_runner::enable_constraints(constraint_factory make) {
  constraints_ = std::make_unique<constraint_table>(std::move(make), vocab_size_);
}

void model_runner::prepare(const step_plan& plan) {
  for (request_id id : plan.released) seqs_.erase(id);
  input_.clear();
  input_.query_start.push_back(0);
  for (const scheduled_seq& s : plan.seqs) {
    if (s.is_new) {
      seqs_[s.id] = seq_state{s.block_ids, s.all_token_ids, s.num_prompt_tokens, s.params, s.seed};
    } else {
      auto it = seqs_.find(s.id);
      if (it == seqs_.end()) throw std::invalid_argument("step plan continues unknown sequence " + std::to_string(s.id));
      it->second.block_table.insert(it->second.block_table.end(), s.block_ids.begin(), s.block_ids.end());
    }
    const seq_state& st = seqs_.at(s.id);
    const int32_t n = static_cast<int32_t>(s.token_ids.size());
    if (static_cast<int64_t>(st.block_table.size()) * block_size_ < s.start_position + n)
      throw std::invalid_argument("step plan gives sequence " + std::to_string(s.id) + " too few blocks");
    for (int32_t i = 0; i < n; ++i) {
      const int32_t pos = s.start_position + i;
      input_.token_ids.push_back(s.token_ids[i]);
      input_.positions.push_back(pos);
      input_.slot_mapping.push_back(int64_t(st.block_table[pos / block_size_]) * block_size_ + pos % block_size_);
    }
    input_.query_start.push_back(static_cast<int32_t>(input_.token_ids.size()));
    input_.seq_lens.push_back(s.start_position + n);
    input_.max_blocks_per_seq = std::max(input_.max_blocks_per_seq, static_cast<int32_t>(st.block_table.size()));
    if (s.sample) input_.logits_indices.push_back(static_cast<int32_t>(input_.token_ids.size()) - 1);
  }
  const size_t width = static_cast<size_t>(input_.max_blocks_per_seq);
  input_.block_tables.assign(plan.seqs.size() * width, 0);
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const auto& table = seqs_.at(plan.seqs[i].id).block_table;
    std::copy(table.begin(), table.end(), input_.block_tables.begin() + static_cast<std::ptrdiff_t>(i * width));
  }
}

step_result model_runner::execute(const step_plan& plan) {
  prepare(plan);
  step_result result;
  result.step = plan.step;
  std::vector<sample_request> reqs;
  for (const scheduled_seq& s : plan.seqs) {
    if (!s.sample) continue;
    const seq_state& st = seqs_.at(s.id);
    result.ids.push_back(s.id);
    const std::span<const int32_t> all(st.tokens);
    reqs.push_back({&st.params, all.first(st.num_prompt_tokens), all.subspan(st.num_prompt_tokens), st.seed,
                    eos_token_ids_, {}});
  }
  if (constraints_) constraints_->begin_step(plan);
  if (plan.seqs.empty()) return result;

  // Structured outputs: the bitmasks are computed on another thread while the forward pass runs here (CPU)
  // or on the device (CUDA), and joined just before sampling reads them.
  const bool masked = constraints_ && constraints_->any_masks();
  last_mask_ns_ = last_mask_wait_ns_ = 0;
  std::future<int64_t> masks;
  if (masked)
    masks = std::async(std::launch::async, [table = constraints_.get()] {
      const auto start = std::chrono::steady_clock::now();
      table->fill_masks();
      return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
    });
  auto join_masks = [&] {
    if (!masks.valid()) return;
    const auto start = std::chrono::steady_clock::now();
    last_mask_ns_ = masks.get();  // rethrows what fill_masks threw
    last_mask_wait_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
    for (size_t i = 0; i < reqs.size(); ++i) reqs[i].allowed_tokens = constraints_->mask_of_row(i);
  };
  // A forward pass that throws must not leave the mask thread running over the table.
  struct joiner {
    std::future<int64_t>& f;
    ~joiner() {
      if (f.valid()) f.wait();
    }
  } join_on_exit{masks};

  const bool any_logprobs =
      std::any_of(reqs.begin(), reqs.end(), [](const sample_request& r) { return r.params->logprobs.has_value(); });
  if (model_ && std::all_of(reqs.begin(), reqs.end(), plain_greedy)) {
    model_->forward_greedy(input_, result.tokens);
  } else if (model_ && !any_logprobs) {
    // Sampled on the backend: only the token ids come back. The sampling inputs are built once the masks
    // are in, after the forward pass is computed or enqueued.
    model_->forward_sample(input_, sampling_, result.tokens, [&] {
      join_masks();
      sampling_.build(reqs, vocab_size_);
    });
  } else if (model_) {
    // Logprobs need the whole rows on the host: this step downloads the logits and samples there.
    model_->forward(input_, logits_);
    join_masks();
    // Logprobs come from the raw model output, so take them before sampling edits the rows in place.
    std::vector<std::vector<float>> raw(reqs.size());
    bool any = false;
    for (size_t i = 0; i < reqs.size(); ++i)
      if (reqs[i].params->logprobs) {
        any = true;
        raw[i] = log_softmax_row(std::span<const float>(logits_).subspan(i * vocab_size_, vocab_size_));
      }
    result.tokens = sample_cpu(logits_, vocab_size_, reqs);
    if (any) {
      result.logprobs.resize(reqs.size());
      for (size_t i = 0; i < reqs.size(); ++i)
        if (!raw[i].empty()) result.logprobs[i] = top_logprobs(raw[i], result.tokens[i], *reqs[i].params->logprobs);
    }
  } else {
    result.tokens.assign(reqs.size(), null_token_);
    // The null backend still keeps constrained rows inside their grammar (their matchers advance only over
    // allowed tokens): one allowed id, picked by the row's seed, or by its history when greedy, so that a
    // row's pick never depends on the batch.
    join_masks();
    for (size_t i = 0; i < reqs.size(); ++i)
      if (!reqs[i].allowed_tokens.empty()) result.tokens[i] = null_allowed_token(reqs[i], vocab_size_);
  }
  if (constraints_) constraints_->accept(result.tokens);
  for (size_t i = 0; i < result.ids.size(); ++i) seqs_.at(result.ids[i]).tokens.push_back(result.tokens[i]);
  return result;
}

} // namespace troupe
