#pragma once
// The sampling shard's constrained sequences (structured outputs): one token_constraint per sequence whose
// sampling params carry a spec, kept across steps, keyed by request id. Each step:
//
//   begin_step(plan)   forget released ids; a new or resumed (is_new) constrained sequence gets a fresh
//                      constraint advanced over the outputs it already has, so a recomputed sequence is
//                      where it was and no token is accepted twice;
//   fill_masks()       the bitmask of every sampled constrained row: the expensive part, which the model
//                      runner runs on another thread while the forward pass runs (it touches only the
//                      constraints and the mask buffer);
//   mask_of_row(i)     row i's bitmask for the sampler (i counts the plan's sampled seqs; empty when the
//                      row is unconstrained); chunked-prefill rows that do not sample get none;
//   accept(tokens)     advances each sampled constrained row over its token.
//
// Once a constraint has accepted an end id (the output is complete, and ignore_eos or min_tokens kept the
// sequence going), its row is unconstrained for the rest of the sequence, as vLLM's structured output
// manager fills a terminated grammar's row with the full mask: vLLM does not stop a request whose grammar
// ended (check_stop knows no grammar), so a fixed-length run (ignore_eos, as benchmarks send) keeps the
// length it asked for and the tokens vLLM's would.
//
// NOTE: a token the constraint refuses (only the sampler's end-id fallback or the null backend produce one)
// leaves its constraint unchanged and is counted in num_refused().

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "runtime/engine/step_plan.hpp"
#include "runtime/structured/token_constraint.hpp"

namespace troupe {

class constraint_table {
 public:
  constraint_table(constraint_factory make, int32_t vocab_size);

  // Applies a plan's bookkeeping before its step runs. Throws std::invalid_argument when the factory refuses
  // a spec (the gateway compiled it already, so that means a broken invariant, and the step fails).
  void begin_step(const step_plan& plan);
  // True when some sampled row of the current step is constrained.
  bool any_masks() const { return num_masked_ > 0; }
  // Fills the bitmasks of the current step's constrained sampled rows.
  void fill_masks();
  // The bitmask of sampled row `row` (bitmask_words() words), or empty for an unconstrained row.
  std::span<const uint32_t> mask_of_row(size_t row) const;
  // Advances the current step's constrained rows over their sampled tokens (one per sampled row, in order).
  void accept(std::span<const int32_t> tokens);

  int32_t bitmask_words() const { return words_; }
  size_t num_constraints() const { return constraints_.size(); }
  bool holds(request_id id) const { return constraints_.count(id) != 0; }
  bool terminated(request_id id) const;
  int64_t num_refused() const { return num_refused_; }

 private:
  constraint_factory make_;
  int32_t words_;
  std::unordered_map<request_id, std::unique_ptr<token_constraint>> constraints_;
  std::vector<token_constraint*> rows_;  // per sampled row of the current step; null: unconstrained
  std::vector<uint32_t> masks_;          // [rows_.size(), words_]
  size_t num_masked_ = 0;
  int64_t num_refused_ = 0;
};

} // namespace troupe
