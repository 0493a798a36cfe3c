#include "runtime/engine/constraint_table.hpp"

#include <stdexcept>
#include <string>

namespace troupe {

constraint_table::constraint_table(constraint_factory make, int32_t vocab_size)
    : make_(std::move(make)), words_((vocab_size + 31) / 32) {
  if (!make_) throw std::invalid_argument("constraint_table: no constraint factory");
}

void constraint_table::begin_step(const step_plan& plan) {
  for (request_id id : plan.released) constraints_.erase(id);
  rows_.clear();
  num_masked_ = 0;
  for (const scheduled_seq& s : plan.seqs) {
    if (s.is_new) {
      // A first step or a resume after preemption: whatever was held for the id is stale.
      constraints_.erase(s.id);
      if (s.params.structured) {
        std::unique_ptr<token_constraint> c = make_(*s.params.structured);
        const auto outputs = std::span<const int32_t>(s.all_token_ids).subspan(
            static_cast<size_t>(std::min<int64_t>(s.num_prompt_tokens, static_cast<int64_t>(s.all_token_ids.size()))));
        for (int32_t id : outputs) {
          if (c->ended()) break;  // what followed the end was unconstrained
          if (!c->accept_token(id)) ++num_refused_;
        }
        constraints_.emplace(s.id, std::move(c));
      }
    }
    if (!s.sample) continue;
    auto it = constraints_.find(s.id);
    rows_.push_back(it == constraints_.end() || it->second->ended() ? nullptr : it->second.get());
    num_masked_ += rows_.back() != nullptr;
  }
  // Unconstrained steps leave the mask block alone (at 256 rows of a 151,936-token vocabulary it is 4.9 MB).
  if (num_masked_ > 0) masks_.resize(rows_.size() * static_cast<size_t>(words_));
}

void constraint_table::fill_masks() {
  for (size_t r = 0; r < rows_.size(); ++r)
    if (rows_[r])
      rows_[r]->fill_next_token_bitmask(std::span<uint32_t>(masks_).subspan(r * static_cast<size_t>(words_),
                                                                             static_cast<size_t>(words_)));
}

std::span<const uint32_t> constraint_table::mask_of_row(size_t row) const {
  if (row >= rows_.size() || !rows_[row]) return {};
  return std::span<const uint32_t>(masks_).subspan(row * static_cast<size_t>(words_), static_cast<size_t>(words_));
}

void constraint_table::accept(std::span<const int32_t> tokens) {
  if (tokens.size() != rows_.size())
    throw std::invalid_argument("constraint_table: " + std::to_string(tokens.size()) + " tokens for " +
                                std::to_string(rows_.size()) + " sampled rows");
  for (size_t r = 0; r < rows_.size(); ++r)
    if (rows_[r] && !rows_[r]->accept_token(tokens[r])) ++num_refused_;
}

bool constraint_table::terminated(request_id id) const {
  auto it = constraints_.find(id);
  return it != constraints_.end() && it->second->is_terminated();
}

} // namespace troupe
