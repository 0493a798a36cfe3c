#include "tests/support/split_model.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "kernels/model_loader.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_steps.hpp"

namespace troupe::testing {

std::vector<std::string> on_rank_threads(int size, const std::function<void(int)>& body) {
  std::vector<std::string> errors(static_cast<size_t>(size));
  auto run = [&](int r) {
    try {
      body(r);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(r)] = e.what();
    }
  };
  if (size == 1) {
    run(0);
    return errors;
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(run, r);
  for (auto& t : threads) t.join();
  return errors;
}

std::string first_error(const std::vector<std::string>& errors) {
  for (size_t r = 0; r < errors.size(); ++r)
    if (!errors[r].empty()) return "rank " + std::to_string(r) + ": " + errors[r];
  return "";
}

split_model::split_model(const model_config& config, std::vector<std::unique_ptr<ops>> backends,
                         std::vector<std::unique_ptr<communicator>> comms, const checkpoint* ckpt, uint64_t seed,
                         dtype type, const model_limits& limits, bool packed_4_bit)
    : backends_(std::move(backends)), comms_(std::move(comms)) {
  const int n = size();
  if (n == 0 || (comms_.empty() ? n != 1 : static_cast<int>(comms_.size()) != n))
    throw std::invalid_argument("split_model: " + std::to_string(n) + " backends and " + std::to_string(comms_.size()) +
                                " communicators; give one communicator per backend, or one backend and none");
  const bool sharded = !comms_.empty();
  // Every plan before any weight source that refers to one (the vector must not move under them).
  if (sharded)
    for (int r = 0; r < n; ++r) plans_.push_back(sharding_plan::make(config, n, r));
  models_.resize(static_cast<size_t>(n));
  on_every_shard([&](int r) {
    const size_t i = static_cast<size_t>(r);
    const model_config local = sharded ? local_config(config, plans_[i]) : config;
    const weight_source source = !sharded ? (ckpt ? checkpoint_weight_source(*ckpt, config) : dummy_weight_source(seed))
                                 : ckpt   ? sharded_weight_source(*ckpt, config, plans_[i])
                                          : sharded_dummy_weight_source(seed, plans_[i]);
    int4_source int4;
    if (packed_4_bit)
      int4 = !sharded ? (ckpt ? checkpoint_int4_source(*ckpt, config) : dummy_int4_source(seed, config.quantization))
             : ckpt   ? sharded_int4_source(*ckpt, config, plans_[i])
                      : sharded_dummy_int4_source(seed, plans_[i], config.quantization);
    shard_context where;
    if (sharded) where = {comms_[i].get(), plans_[i].vocab_begin, config.vocab_size};
    ops& b = *backends_[i];
    models_[i] = std::make_unique<model>(local, b, load_model_weights(local, b, type, source, int4), type, limits, where);
  });
}

void split_model::on_every_shard(const std::function<void(int)>& f) {
  const std::vector<std::string> errors = on_rank_threads(size(), f);
  for (size_t r = 0; r < errors.size(); ++r)
    if (!errors[r].empty()) throw std::runtime_error("shard " + std::to_string(r) + ": " + errors[r]);
}

std::vector<std::vector<float>> split_model::forward(const step_input& in) {
  std::vector<std::vector<float>> logits(static_cast<size_t>(size()));
  on_every_shard([&](int r) { models_[static_cast<size_t>(r)]->forward(in, logits[static_cast<size_t>(r)]); });
  return logits;
}

std::vector<std::vector<int32_t>> split_model::forward_greedy(const step_input& in) {
  std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(size()));
  on_every_shard([&](int r) { models_[static_cast<size_t>(r)]->forward_greedy(in, tokens[static_cast<size_t>(r)]); });
  return tokens;
}

void split_model::warm_up() {
  on_every_shard([&](int r) { models_[static_cast<size_t>(r)]->warm_up(); });
}

std::vector<std::vector<std::vector<int32_t>>> greedy_tokens(split_model& m, const std::vector<std::vector<int32_t>>& prompts,
                                                             int steps, const step_wrapper& around) {
  const size_t shards = static_cast<size_t>(m.size());
  std::vector<std::vector<std::vector<int32_t>>> out(shards, std::vector<std::vector<int32_t>>(prompts.size()));
  if (steps <= 0) return out;
  const model_limits& limits = m.shard(0).limits();
  // Step 0: the prefill, chunk by chunk; sequence i keeps its own blocks whichever chunk it is in.
  for (size_t begin = 0; begin < prompts.size();) {
    std::vector<std::pair<std::vector<int32_t>, int32_t>> chunk;
    int64_t tokens = 0;
    for (size_t i = begin; i < prompts.size(); ++i) {
      const int64_t len = static_cast<int64_t>(prompts[i].size());
      if (len > limits.max_num_tokens)
        throw std::invalid_argument("greedy_tokens: prompt " + std::to_string(i) + " has " + std::to_string(len) +
                                    " tokens, more than the " + std::to_string(limits.max_num_tokens) + " a step holds");
      if (tokens + len > limits.max_num_tokens || static_cast<int64_t>(chunk.size()) == limits.max_num_seqs) break;
      chunk.push_back({prompts[i], 0});
      tokens += len;
    }
    const auto sampled = m.forward_greedy(make_step(chunk, begin));
    for (size_t r = 0; r < shards; ++r)
      for (size_t i = 0; i < chunk.size(); ++i) out[r][begin + i].push_back(sampled[r].at(i));
    begin += chunk.size();
  }
  for (int s = 1; s < steps; ++s) {
    std::vector<std::pair<std::vector<int32_t>, int32_t>> seqs;
    for (size_t i = 0; i < prompts.size(); ++i)
      seqs.push_back({{out[0][i].back()}, static_cast<int32_t>(prompts[i].size()) + s - 1});
    const step_input in = make_step(seqs);
    std::vector<std::vector<int32_t>> sampled;
    const std::function<void()> run = [&] { sampled = m.forward_greedy(in); };
    if (around) around(s, run);
    else run();
    for (size_t r = 0; r < shards; ++r)
      for (size_t i = 0; i < prompts.size(); ++i) out[r][i].push_back(sampled[r].at(i));
  }
  return out;
}

std::string first_difference(const std::vector<std::vector<int32_t>>& got, const std::vector<std::vector<int32_t>>& want) {
  if (got.size() != want.size())
    return std::to_string(got.size()) + " prompts instead of " + std::to_string(want.size());
  for (size_t p = 0; p < want.size(); ++p)
    for (size_t s = 0; s < std::max(got[p].size(), want[p].size()); ++s) {
      if (s >= got[p].size()) return "prompt " + std::to_string(p) + " step " + std::to_string(s) + ": no token";
      if (s >= want[p].size()) return "prompt " + std::to_string(p) + " step " + std::to_string(s) + ": an extra token";
      if (got[p][s] != want[p][s])
        return "prompt " + std::to_string(p) + " step " + std::to_string(s) + ": " + std::to_string(got[p][s]) +
               " instead of " + std::to_string(want[p][s]);
    }
  return "";
}

} // namespace troupe::testing
