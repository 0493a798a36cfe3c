#pragma once
// A reference checkpoint (tests/data/reference) as a model on a backend with small limits, and one step
// of two sequences (5 and 3 new tokens in blocks 0 and 4) that both sample: what model-level tests of
// the sampling paths start from.

#include <filesystem>
#include <memory>
#include <string>

#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/safetensors.hpp"

namespace troupe::testing {

inline std::unique_ptr<model> reference_model_on(ops& backend, const std::string& name = "llama_f32") {
  const auto dir = std::filesystem::path(TROUPE_TEST_DATA) / "reference" / name;
  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  model_limits limits;
  limits.max_num_tokens = 64;
  limits.max_num_seqs = 4;
  limits.max_model_len = 64;
  limits.block_size = 16;
  limits.num_blocks = 16;
  return std::make_unique<model>(config, backend,
                                 load_model_weights(config, backend, dtype::f32, checkpoint_weight_source(ckpt, config)),
                                 dtype::f32, limits);
}

inline step_input two_sequence_step() {
  step_input in;
  in.token_ids = {5, 17, 99, 3, 250, 7, 8, 9};
  in.positions = {0, 1, 2, 3, 4, 0, 1, 2};
  in.slot_mapping = {0, 1, 2, 3, 4, 64, 65, 66};
  in.query_start = {0, 5, 8};
  in.seq_lens = {5, 3};
  in.max_blocks_per_seq = 1;
  in.block_tables = {0, 4};
  in.logits_indices = {4, 7};
  return in;
}

} // namespace troupe::testing
