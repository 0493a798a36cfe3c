#include "kernels/model_runner.hpp"

#include <algorithm>
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
  return p.greedy() && p.logit_bias.empty() && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f && !min_tokens_mask;
}

} // namespace

model_runner::model_runner(model* m, int32_t block_size, int32_t vocab_size, std::vector<int32_t> eos_token_ids,
                           int32_t null_token)
    : model_(m), block_size_(block_size), vocab_size_(vocab_size), eos_token_ids_(std::move(eos_token_ids)),
      null_token_(null_token) {}

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
                    eos_token_ids_});
  }
  if (plan.seqs.empty()) return result;
  if (model_ && std::all_of(reqs.begin(), reqs.end(), plain_greedy)) {
    model_->forward_greedy(input_, result.tokens);
  } else if (model_) {
    model_->forward(input_, logits_);
    result.tokens = sample_cpu(logits_, vocab_size_, reqs);
  } else {
    result.tokens.assign(reqs.size(), null_token_);
  }
  for (size_t i = 0; i < result.ids.size(); ++i) seqs_.at(result.ids[i]).tokens.push_back(result.tokens[i]);
  return result;
}

} // namespace troupe
