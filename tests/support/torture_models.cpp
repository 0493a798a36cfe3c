// A checkpoint's models for the torture harness (tests/support/torture.hpp).

#include <algorithm>
#include <thread>

#include "kernels/model.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/quantization.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/support/torture.hpp"

namespace troupe::torture {
namespace {

model_limits limits_for(const model_room& room, int32_t block_size) {
  model_limits limits;
  limits.max_num_tokens = room.max_num_batched_tokens;
  limits.max_num_seqs = room.max_num_seqs;
  limits.max_model_len = room.max_model_len;
  limits.block_size = block_size;
  limits.num_blocks = room.max_kv_tokens / block_size;
  limits.kv_cache_type = room.kv_cache_type;
  return limits;
}

} // namespace

checkpoint_models::checkpoint_models(ops& compute, std::filesystem::path dir, dtype type, model_room room)
    : compute_(compute), dir_(std::move(dir)), type_(type), room_(room), config_(model_config::from_dir(dir_)) {
  room_.max_model_len = static_cast<int32_t>(std::min<int64_t>(room_.max_model_len, config_.max_position_embeddings));
  if (!room_.quantization.empty()) config_.quantization = resolve_quantization(config_.quantization, room_.quantization, dir_);
  if (std::filesystem::exists(dir_ / "tokenizer.json"))
    tok_ = std::make_unique<tokenizer>(tokenizer::from_file(dir_ / "tokenizer.json"));
}

struct checkpoint_models::split {
  std::vector<std::unique_ptr<communicator>> comms;
  std::vector<sharding_plan> plans;
  std::vector<std::unique_ptr<model>> models;
};

checkpoint_models::~checkpoint_models() = default;

std::vector<model*> checkpoint_models::get_split(int32_t block_size, const std::vector<ops*>& shard_ops) {
  auto& sp = splits_[block_size];
  if (!sp) {
    const int tp = static_cast<int>(shard_ops.size());
    auto made = std::make_unique<split>();
    made->comms = make_thread_communicators(tp);
    const checkpoint ckpt = checkpoint::open(dir_);
    const model_limits limits = limits_for(room_, block_size);
    for (int r = 0; r < tp; ++r) made->plans.push_back(sharding_plan::make(config_, tp, r));
    for (int r = 0; r < tp; ++r) {
      const sharding_plan& plan = made->plans[static_cast<size_t>(r)];
      const model_config local = local_config(config_, plan);
      ops& compute = *shard_ops[static_cast<size_t>(r)];
      made->models.push_back(std::make_unique<model>(
          local, compute, load_model_weights(local, compute, type_, sharded_weight_source(ckpt, config_, plan)), type_,
          limits, shard_context{made->comms[static_cast<size_t>(r)].get(), plan.vocab_begin, config_.vocab_size}));
    }
    // The warm-up's steps run collectives: every shard at once.
    std::vector<std::thread> threads;
    for (auto& m : made->models) threads.emplace_back([&m] { m->warm_up(); });
    for (auto& t : threads) t.join();
    sp = std::move(made);
  }
  std::vector<model*> out;
  for (auto& m : sp->models) out.push_back(m.get());
  return out;
}

backend checkpoint_models::make_split_backend(std::string name, std::vector<int32_t> block_sizes, std::vector<ops*> shard_ops) {
  backend b = make_backend(std::move(name), std::move(block_sizes));
  b.model_for = nullptr;
  b.shards_for = [this, shard_ops](int32_t block_size) { return get_split(block_size, shard_ops); };
  return b;
}

model* checkpoint_models::get(int32_t block_size) {
  auto& m = models_[block_size];
  if (!m) {
    const checkpoint ckpt = checkpoint::open(dir_);
    const model_limits limits = limits_for(room_, block_size);
    // The 4-bit and FP8 sources are empty for plain weights; with --quantization the linears stay packed.
    m = std::make_unique<model>(config_, compute_,
                                load_model_weights(config_, compute_, type_, checkpoint_weight_source(ckpt, config_),
                                                   checkpoint_int4_source(ckpt, config_), checkpoint_fp8_source(ckpt, config_)),
                                type_, limits);
    m->warm_up();
  }
  return m.get();
}

backend checkpoint_models::make_backend(std::string name, std::vector<int32_t> block_sizes) {
  backend b;
  b.name = std::move(name);
  b.vocab_size = static_cast<int32_t>(config_.vocab_size);
  b.max_model_len = room_.max_model_len;
  b.eos_token_ids = config_.eos_token_ids;
  if (tok_ && tok_->eos_id() && std::find(b.eos_token_ids.begin(), b.eos_token_ids.end(), *tok_->eos_id()) == b.eos_token_ids.end())
    b.eos_token_ids.push_back(*tok_->eos_id());
  b.tok = tok_.get();
  b.block_sizes = std::move(block_sizes);
  b.max_num_batched_tokens = room_.max_num_batched_tokens;
  b.max_num_seqs = room_.max_num_seqs;
  b.max_kv_tokens = room_.max_kv_tokens;
  b.model_for = [this](int32_t block_size) { return get(block_size); };
  return b;
}

} // namespace troupe::torture
