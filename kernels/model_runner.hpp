#pragma once
// What a shard runs: it keeps each sequence's block table and token history across steps, turns a
// step_plan into the model's input, runs the forward pass and samples.

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kernels/model.hpp"
#include "runtime/engine/constraint_table.hpp"
#include "runtime/engine/step_plan.hpp"

namespace troupe {

class model_runner {
public:
  // m may be null: the null backend, which does no arithmetic and samples `null_token` for every
  // sequence, to measure what scheduling and messaging cost per step.
  model_runner(model* m, int32_t block_size, int32_t vocab_size, std::vector<int32_t> eos_token_ids,
               int32_t null_token = 0);

  // Runs one step. Throws std::invalid_argument for a plan that contradicts the state it holds.
  step_result execute(const step_plan& plan);

  int32_t num_sequences() const { return static_cast<int32_t>(seqs_.size()); }

  // Makes this runner the sampling shard's for structured outputs: sequences whose params carry a spec are
  // sampled under their constraint, whose bitmasks are computed on another thread while the forward pass
  // runs. Only the shard that samples (shard 0) gets one; without it, specs are not this runner's business.
  void enable_constraints(constraint_factory make);
  const constraint_table* constraints() const { return constraints_.get(); }
  // Time the last step spent computing bitmasks, and waiting for them after the forward pass (ns).
  int64_t last_mask_ns() const { return last_mask_ns_; }
  int64_t last_mask_wait_ns() const { return last_mask_wait_ns_; }

private:
  struct seq_state {
    std::vector<int32_t> block_table;
    std::vector<int32_t> tokens;  // prompt, then outputs
    int32_t num_prompt_tokens = 0;
    sampling_params params;
    uint64_t seed = 0;
  };
  // Builds input_ from the plan and the held state.
  void prepare(const step_plan& plan);

  model* model_;
  int32_t block_size_;
  int32_t vocab_size_;
  std::vector<int32_t> eos_token_ids_;
  int32_t null_token_;
  std::unordered_map<request_id, seq_state> seqs_;
  step_input input_;
  sampling_inputs sampling_;
  std::vector<float> logits_;
  std::unique_ptr<constraint_table> constraints_;
  int64_t last_mask_ns_ = 0, last_mask_wait_ns_ = 0;
};

} // namespace troupe
