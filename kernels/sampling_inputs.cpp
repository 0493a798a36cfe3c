#include "kernels/sampling_inputs.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace troupe {
namespace {

bool in_vocab(int32_t id, int32_t vocab) { return id >= 0 && id < vocab; }

size_t aligned8(size_t bytes) { return (bytes + 7) / 8 * 8; }

struct layout {
  size_t rows = 0, masks = 0, biases = 0, penalties = 0, bitmasks = 0, end = 0;  // byte offsets
};

layout layout_of(size_t num_rows, size_t num_masks, size_t num_biases, size_t num_penalties, size_t num_words) {
  layout l;
  l.masks = aligned8(num_rows * sizeof(sampling_row));
  l.biases = l.masks + aligned8(num_masks * sizeof(int32_t));
  l.penalties = l.biases + aligned8(num_biases * sizeof(logit_bias_entry));
  l.bitmasks = l.penalties + aligned8(num_penalties * sizeof(penalty_entry));
  l.end = l.bitmasks + aligned8(num_words * sizeof(uint32_t));
  return l;
}

} // namespace

void sampling_inputs::build(std::span<const sample_request> reqs, int32_t vocab) {
  rows_.clear();
  masks_.clear();
  biases_.clear();
  penalties_.clear();
  bitmasks_.clear();
  bitmask_words_ = troupe::bitmask_words(std::max(vocab, 0));
  if (slot_.size() != static_cast<size_t>(std::max(vocab, 0))) slot_.assign(static_cast<size_t>(std::max(vocab, 0)), -1);

  for (const sample_request& r : reqs) {
    if (r.params == nullptr) throw std::invalid_argument("sampling_inputs: a sample_request has no params");
    const sampling_params& p = *r.params;
    sampling_row row;
    row.seed = r.seed;
    row.draw_index = r.output_ids.size();
    row.greedy = p.greedy() ? 1 : 0;
    row.temperature = std::max(p.temperature, min_positive_temperature);
    row.top_p = p.top_p < 1.0f ? p.top_p : 1.0f;
    row.min_p = p.min_p > 0.0f ? p.min_p : 0.0f;
    row.top_k = p.top_k > 0 && p.top_k < vocab ? p.top_k : 0;
    row.repetition_penalty = p.repetition_penalty;
    row.frequency_penalty = p.frequency_penalty;
    row.presence_penalty = p.presence_penalty;

    // The same lists, in the same order, that apply_min_tokens_cpu and apply_logit_bias_cpu walk.
    row.mask_begin = static_cast<int32_t>(masks_.size());
    if (min_tokens_applies(r, vocab)) {
      for (int32_t id : r.eos_token_ids)
        if (in_vocab(id, vocab)) masks_.push_back(id);
      for (int32_t id : p.stop_token_ids)
        if (in_vocab(id, vocab)) masks_.push_back(id);
    }
    row.mask_end = static_cast<int32_t>(masks_.size());

    row.bias_begin = static_cast<int32_t>(biases_.size());
    for (const auto& [id, bias] : p.logit_bias)
      if (in_vocab(id, vocab)) biases_.push_back({id, std::fmin(max_logit_bias, std::fmax(-max_logit_bias, bias))});
    row.bias_end = static_cast<int32_t>(biases_.size());

    // One entry per distinct token of the output (and of the prompt when the repetition penalty is on),
    // for the rows apply_penalties_cpu does not skip.
    row.penalty_begin = static_cast<int32_t>(penalties_.size());
    const bool repetition = p.repetition_penalty != 1.0f;
    if (repetition || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
      auto entry = [&](int32_t id) -> penalty_entry& {
        int32_t& s = slot_[static_cast<size_t>(id)];
        if (s < 0) {
          s = static_cast<int32_t>(penalties_.size());
          penalties_.push_back({id, 0, 0});
        }
        return penalties_[static_cast<size_t>(s)];
      };
      for (int32_t id : r.output_ids)
        if (in_vocab(id, vocab)) ++entry(id).output_count;
      if (repetition)
        for (int32_t id : r.prompt_ids)
          if (in_vocab(id, vocab)) entry(id).in_prompt = 1;
      for (size_t i = static_cast<size_t>(row.penalty_begin); i < penalties_.size(); ++i)
        slot_[static_cast<size_t>(penalties_[i].id)] = -1;
    }
    row.penalty_end = static_cast<int32_t>(penalties_.size());

    if (!r.allowed_tokens.empty()) {
      const size_t at = bitmasks_.size();
      row.bitmask_row = static_cast<int32_t>(at / static_cast<size_t>(bitmask_words_));
      bitmasks_.resize(at + static_cast<size_t>(bitmask_words_));
      effective_bitmask(r.allowed_tokens, vocab, r.eos_token_ids, std::span<uint32_t>(bitmasks_).subspan(at));
    }
    rows_.push_back(row);
  }
}

size_t sampling_inputs::packed_bytes() const {
  return layout_of(rows_.size(), masks_.size(), biases_.size(), penalties_.size(), bitmasks_.size()).end;
}

void sampling_inputs::pack(void* dst) const {
  const layout l = layout_of(rows_.size(), masks_.size(), biases_.size(), penalties_.size(), bitmasks_.size());
  std::byte* out = static_cast<std::byte*>(dst);
  std::memset(out, 0, l.end);
  if (!rows_.empty()) std::memcpy(out + l.rows, rows_.data(), rows_.size() * sizeof(sampling_row));
  if (!masks_.empty()) std::memcpy(out + l.masks, masks_.data(), masks_.size() * sizeof(int32_t));
  if (!biases_.empty()) std::memcpy(out + l.biases, biases_.data(), biases_.size() * sizeof(logit_bias_entry));
  if (!penalties_.empty())
    std::memcpy(out + l.penalties, penalties_.data(), penalties_.size() * sizeof(penalty_entry));
  if (!bitmasks_.empty()) std::memcpy(out + l.bitmasks, bitmasks_.data(), bitmasks_.size() * sizeof(uint32_t));
}

sampling_batch sampling_inputs::view(void* base) const {
  const layout l = layout_of(rows_.size(), masks_.size(), biases_.size(), penalties_.size(), bitmasks_.size());
  std::byte* b = static_cast<std::byte*>(base);
  sampling_batch v;
  v.rows = tensor(b + l.rows, dtype::i32, {static_cast<int64_t>(rows_.size()), int64_t{sizeof(sampling_row) / 4}});
  v.masks = tensor(b + l.masks, dtype::i32, {static_cast<int64_t>(masks_.size())});
  v.biases = tensor(b + l.biases, dtype::i32, {static_cast<int64_t>(biases_.size()), 2});
  v.penalties = tensor(b + l.penalties, dtype::i32, {static_cast<int64_t>(penalties_.size()), 3});
  const int64_t words = std::max<int64_t>(bitmask_words_, 1);
  v.bitmasks = tensor(b + l.bitmasks, dtype::i32, {static_cast<int64_t>(bitmasks_.size()) / words, words});
  return v;
}

} // namespace troupe
