#pragma once
// A model split over tensor-parallel shards, each on a backend of its own, driven as the engine drives its
// shards: every step runs on every shard at once, one thread each. tests/tensor_parallel_test.cpp runs it
// on CPU backends joined by the thread communicator; tools/gpu_check_tp.cpp on CUDA backends sharing one
// GPU (the shared-GPU communicator) and with NCCL of size 1.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/model.hpp"
#include "kernels/ops.hpp"
#include "runtime/model/sharding_plan.hpp"

namespace troupe {
class checkpoint;
}

namespace troupe::testing {

// Runs body(rank) for every rank in [0, size) at once, one thread each (on the calling thread when size
// is 1), and waits for all; returns each rank's exception message, "" where it threw none.
// NOTE: a rank that throws before or inside a collective leaves the others waiting in it for good: a
// program that cannot afford that runs under a deadline (troupe_gpu_check's watchdog).
std::vector<std::string> on_rank_threads(int size, const std::function<void(int)>& body);

// "rank R: message" for the first rank that threw; "" when none did.
std::string first_error(const std::vector<std::string>& errors);

class split_model {
public:
  // One shard per backend. With no communicators, backends[0] alone holds the whole model: the config and
  // the weights as they are, no shard_context. Otherwise comms[r] joins shard r to the others (one per
  // backend, rank r at index r) and shard r is built as the engine builds it, even for one shard (NCCL of
  // size 1 runs that path): sharding_plan::make(config, size, r), local_config, the rank's slices of the
  // weights, shard_context{comms[r], vocab_begin, vocab_size}. The weights are `ckpt`'s, or with no
  // checkpoint dummy_weight_source(seed)'s values. The shards load at once, one thread each. Throws
  // std::invalid_argument for mismatched backends and communicators, std::runtime_error naming the first
  // shard whose plan, weights or model failed. With `packed_4_bit` and config.quantization, the linear weights
  // stay in 4 bits as on a GPU (the int4 sources of kernels/model_loader.hpp: each rank's slices alone).
  split_model(const model_config& config, std::vector<std::unique_ptr<ops>> backends,
              std::vector<std::unique_ptr<communicator>> comms, const checkpoint* ckpt, uint64_t seed, dtype type,
              const model_limits& limits, bool packed_4_bit = false);

  int size() const { return static_cast<int>(backends_.size()); }
  const sharding_plan& plan(int r) const { return plans_[static_cast<size_t>(r)]; }
  model& shard(int r) { return *models_[static_cast<size_t>(r)]; }
  ops& backend(int r) { return *backends_[static_cast<size_t>(r)]; }

  // Runs one step on every shard at once; returns each shard's logits ([shard][row * V + v]). Throws
  // std::runtime_error naming the first shard that threw.
  std::vector<std::vector<float>> forward(const step_input& in);
  // Greedy tokens from every shard at once (model::forward_greedy: the argmax on the backend):
  // [shard][sampled row]. Throws as forward does.
  std::vector<std::vector<int32_t>> forward_greedy(const step_input& in);
  // model::warm_up on every shard at once (its dry steps run the collectives), as the engine does on GPUs.
  void warm_up();

private:
  // Runs f(r) for every shard at once; throws std::runtime_error naming the first shard that threw.
  void on_every_shard(const std::function<void(int)>& f);

  // NOTE: declared so that they go in reverse: the models, then the communicators they use, then the
  // backends that both enqueue on.
  std::vector<std::unique_ptr<ops>> backends_;
  std::vector<std::unique_ptr<communicator>> comms_;
  std::vector<sharding_plan> plans_;  // empty for the whole model
  std::vector<std::unique_ptr<model>> models_;
};

// Greedy continuations of `prompts` decoded together in one batch for `steps` steps, as each shard
// computed them: [shard][prompt][step]. Step 0 is the prompts' prefill, in as few steps as the limits
// allow (consecutive prompts while they fit max_num_tokens and max_num_seqs); every later step decodes all
// of them, one token each, fed shard 0's tokens, and runs as around(step, run) where `around` calls run()
// (to time it; none: run() alone). Steps come from make_step (tests/support/reference_steps.hpp), so the
// limits must hold its layout for prompts.size() sequences (reference_limits). Throws
// std::invalid_argument for a prompt longer than max_num_tokens.
using step_wrapper = std::function<void(int step, const std::function<void()>& run)>;
std::vector<std::vector<std::vector<int32_t>>> greedy_tokens(split_model& m, const std::vector<std::vector<int32_t>>& prompts,
                                                             int steps, const step_wrapper& around = {});

// Where two sets of greedy continuations ([prompt][step]) first differ, as "prompt 1 step 4: 213 instead
// of 97"; "" when they are equal.
std::string first_difference(const std::vector<std::vector<int32_t>>& got, const std::vector<std::vector<int32_t>>& want);

} // namespace troupe::testing
