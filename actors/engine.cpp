#include "actors/engine.hpp"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/engine_impl.hpp"
#include "actors/scheduler_actor.hpp"
#include "actors/shard_actor.hpp"
#include "kernels/backend_factory.hpp"
#include "kernels/cpu/mpi_communicator.hpp"
#include "kernels/cuda/custom_all_reduce.hpp"
#include "kernels/cuda/nccl_communicator.hpp"
#include "kernels/cuda/shared_gpu_communicator.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/error.hpp"
#include "runtime/engine/step_plan_codec.hpp"
#include "runtime/model/job_fingerprint.hpp"
#include "runtime/model/kv_cache_dtype.hpp"
#include "runtime/model/memory_plan.hpp"
#include "runtime/model/random_model.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/structured/grammar_constraint.hpp"

namespace troupe {
namespace fs = std::filesystem;
namespace {

caf::actor_system_config& with_middleman(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  return cfg;
}

int64_t bytes_per_block(const model_config& c, int32_t block_size, size_t elem_bytes) {
  return kv_block_bytes(c.num_layers, block_size, c.num_kv_heads, c.head_dim, static_cast<int64_t>(elem_bytes));
}

// Collects the outputs of a generate() call as the sink actor receives them.
struct generate_collector {
  std::mutex mutex;
  std::condition_variable cv;
  std::unordered_map<request_id, completion> done;
  std::unordered_map<request_id, completion> open;
  std::function<void()> on_finished;

  void add(request_output& out) {
    std::lock_guard lock(mutex);
    completion& c = open[out.id];
    c.token_ids.insert(c.token_ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
    c.text += out.text;
    if (!out.finished) return;
    c.finish_reason = !out.error.empty() ? "error" : out.aborted ? "abort" : std::string(to_string(out.reason));
    c.error = out.error;
    c.num_cached_tokens = out.num_cached_tokens;
    done[out.id] = std::move(c);
    open.erase(out.id);
    if (on_finished) on_finished();
    cv.notify_all();
  }
};

// Runs fn(rank) for every rank at once, one thread each, and waits for all; then rethrows the lowest
// rank's exception, if any.
// NOTE: a rank that throws before a collective leaves the others waiting in it (no timeout yet).
void run_on_ranks(int n, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Refuses to start, on every rank with the same message, when any rank's build, flags or checkpoint
// differ from rank 0's (the model path may differ: nodes mount checkpoints in different places).
void check_ranks_agree(const engine_options& o, const fs::path& dir, const mpi_session& mpi) {
  job_fingerprint f;
  add_build_identity(f);
  f.add("--load-format", o.load_format);
  f.add("--backend", o.backend);
  f.add("--dtype", o.dtype);
  f.add("--quantization", o.quantization);
  f.add("--tensor-parallel-size", std::to_string(o.tensor_parallel_size));
  f.add("--max-model-len", std::to_string(o.max_model_len));
  f.add("--max-num-seqs", std::to_string(o.max_num_seqs));
  f.add("--max-num-batched-tokens", std::to_string(o.max_num_batched_tokens));
  f.add("--block-size", std::to_string(o.block_size));
  f.add("--kv-cache-memory", std::to_string(o.kv_cache_memory));
  f.add("--kv-cache-dtype", o.kv_cache_dtype);
  f.add("--num-gpu-blocks-override", std::to_string(o.num_gpu_blocks_override));
  f.add("--gpu-memory-utilization", std::to_string(o.gpu_memory_utilization));
  f.add("--enforce-eager", o.enforce_eager ? "true" : "false");
  f.add("--disable-custom-all-reduce", o.disable_custom_all_reduce ? "true" : "false");
  f.add("--seed", o.seed ? std::to_string(*o.seed) : "none");
  add_checkpoint_identity(f, dir);
  const std::vector<std::string> all = mpi.all_gather_string(f.serialize());
  const job_fingerprint first = job_fingerprint::parse(all[0]);
  for (size_t r = 1; r < all.size(); ++r)
    if (std::string why = first_difference(first, 0, job_fingerprint::parse(all[r]), static_cast<int>(r)); !why.empty())
      throw user_error("the ranks of this mpirun job disagree: " + why + "; start every rank with the same build, flags and checkpoint");
}

void check_kv_capacity(int64_t num_blocks, int32_t block_size, int64_t max_model_len, bool on_gpu) {
  if (num_blocks * block_size < max_model_len)
    throw user_error("the KV cache holds " + std::to_string(num_blocks * block_size) +
                     " tokens, fewer than the maximum context length " + std::to_string(max_model_len) + "; raise " +
                     (on_gpu ? "--gpu-memory-utilization" : "--kv-cache-memory") + " or lower --max-model-len");
}

} // namespace

batch_limits default_batch_limits(const std::string& backend, int64_t device_memory, usage_context usage) {
  const bool offline = usage == usage_context::offline;
  if (backend != "cuda" || device_memory <= 0) return {256, 2048};
  if (device_memory >= (int64_t{70} << 30)) return {1024, offline ? 16384 : 8192};
  return {256, offline ? 8192 : 2048};
}

engine::impl::impl(const engine_options& requested) : system(with_middleman(system_config)), options(requested) {
  engine_options& o = options;
  front = load_model_front({.model = o.model,
                            .tokenizer = o.tokenizer,
                            .chat_template = o.chat_template,
                            .served_model_names = o.served_model_names,
                            .generation_config = o.generation_config,
                            .override_generation_config = o.override_generation_config,
                            .max_model_len = o.max_model_len,
                            .allow_long_max_model_len = o.allow_long_max_model_len});
  const fs::path& dir = front.dir;
  const int64_t max_model_len = front.max_model_len;
  config = front.config;
  config.quantization = resolve_quantization(config.quantization, o.quantization, dir);
  if (o.max_num_seqs < 0) throw user_error("--max-num-seqs must be positive");
  if (o.max_num_batched_tokens < 0) throw user_error("--max-num-batched-tokens must be positive");
  // Left at 0: vLLM's defaults, which depend on the device's memory (known once the backend is up).
  auto fill_batch_defaults = [&](int64_t device_memory) {
    const batch_limits d = default_batch_limits(o.backend, device_memory, o.usage);
    if (o.max_num_seqs == 0) o.max_num_seqs = d.max_num_seqs;
    if (o.max_num_batched_tokens == 0) o.max_num_batched_tokens = d.max_num_batched_tokens;
  };
  if (o.block_size <= 0 || o.block_size > 1024) throw user_error("--block-size must be between 1 and 1024");

  const std::vector<int32_t>& eos = front.eos_token_ids;
  const tokenizer* tok = front.tok.get();

  const int tp = o.tensor_parallel_size;
  if (tp < 1) throw user_error("--tensor-parallel-size must be at least 1, got " + std::to_string(tp));
  std::vector<sharding_plan> plans;  // validates the split first: a shape that cannot be split says so
  for (int r = 0; r < tp; ++r) plans.push_back(sharding_plan::make(config, tp, r));
  const std::optional<dtype> kv_type = parse_kv_cache_dtype(o.kv_cache_dtype);
  // --kv-cache-memory is each shard's; the CPU keeps activations (and an auto cache) in f32.
  int64_t num_blocks = kv_blocks_from_flags(
      o.num_gpu_blocks_override, o.kv_cache_memory,
      bytes_per_block(local_config(config, plans[0]), o.block_size, kv_type ? size_in_bytes(*kv_type) : sizeof(float)));

  // The ranks whose shards this process builds: every rank, or under mpirun its own (one process per shard).
  const mpi_session* mpi = o.mpi.get();
  std::vector<int> ranks;
  if (mpi) {
    if (mpi->size() != tp)
      throw user_error("mpirun started " + std::to_string(mpi->size()) + " processes but --tensor-parallel-size is " +
                       std::to_string(tp) + ": start one process per shard (mpirun -np " + std::to_string(tp) + ")");
    check_ranks_agree(o, dir, *mpi);
    ranks.push_back(mpi->rank());
  } else {
    for (int r = 0; r < tp; ++r) ranks.push_back(r);
  }
  const int n_local = static_cast<int>(ranks.size());
  std::vector<std::shared_ptr<shard_resources>> res;
  for (int i = 0; i < n_local; ++i) res.push_back(std::make_shared<shard_resources>());
  const bool on_gpu = o.backend == "cuda";
  if (o.backend != "null") {
    // Which GPU each shard drives: its own (shard r on GPU r; under mpirun the node-local rank's), or, when
    // one process has more shards than GPUs, GPU 0 for all of them (shared: for testing, no speed-up).
    const int gpus = on_gpu ? device_count(o.backend) : 0;
    const bool shared_gpu = on_gpu && !mpi && tp > 1 && gpus >= 1 && tp > gpus;  // none: make_backend says so
    if (shared_gpu) {
      spdlog::warn("{} shards share GPU 0 (this machine has {}): the sharded forward runs, without any speed-up", tp, gpus);
      if (o.num_gpu_blocks_override <= 0)
        throw user_error("shards sharing one GPU cannot each measure its free memory: give --num-gpu-blocks-override N "
                         "(the KV blocks every shard holds)");
    }
    if (on_gpu && mpi && mpi->local_rank() >= gpus)
      throw user_error("rank " + std::to_string(mpi->rank()) + " is process " + std::to_string(mpi->local_rank() + 1) +
                       " on its node, which has " + std::to_string(gpus) + " GPUs: start at most one process per GPU");
    for (int i = 0; i < n_local; ++i) {
      const int r = ranks[static_cast<size_t>(i)];
      const int device = !on_gpu ? 0 : mpi ? mpi->local_rank() : shared_gpu ? 0 : r;
      res[static_cast<size_t>(i)]->backend = make_backend(o.backend, device);  // kernels/backend_factory
    }
    const auto memory = device_memory(*res[0]->backend);
    fill_batch_defaults(memory ? memory->second : 0);
    const dtype act = activation_dtype(o.backend, o.dtype);
    std::optional<checkpoint> ckpt;
    if (o.load_format == "auto" || o.load_format == "safetensors") ckpt.emplace(checkpoint::open(dir));
    else if (o.load_format != "dummy")
      throw user_error("--load-format must be auto, safetensors or dummy, got '" + o.load_format + "'");
    model_limits limits;
    limits.max_num_tokens = o.max_num_batched_tokens;
    limits.max_num_seqs = o.max_num_seqs;
    limits.max_model_len = max_model_len;
    limits.block_size = o.block_size;
    limits.enforce_eager = o.enforce_eager;
    limits.kv_cache_type = kv_type;
    if (kv_type && ckpt) {  // the checkpoint's per-layer k_scale / v_scale, 1.0 where it has none
      kv_cache_scales scales = checkpoint_kv_cache_scales(*ckpt, config);
      limits.k_scales = std::move(scales.k);
      limits.v_scales = std::move(scales.v);
    }
    // The communicators the shards' forwards use: on the CPU, threads of this process or MPI between
    // processes; on GPUs, NCCL (made on each shard's thread below, from one unique id that rank 0 makes and,
    // under mpirun, sends to the other ranks), or the shared-GPU communicator when shards share GPU 0.
    std::vector<std::unique_ptr<communicator>> comms(static_cast<size_t>(n_local));
    nccl_unique_id nccl_id;
    if (tp > 1 && on_gpu && !shared_gpu) {
      if (!mpi || mpi->rank() == 0) nccl_id = make_nccl_unique_id();
      if (mpi) {
        std::vector<std::byte> bytes(nccl_id.bytes.size());
        std::memcpy(bytes.data(), nccl_id.bytes.data(), bytes.size());
        mpi->broadcast_bytes(bytes, 0);
        std::memcpy(nccl_id.bytes.data(), bytes.data(), nccl_id.bytes.size());
      }
    } else if (tp > 1 && shared_gpu) {
      std::vector<ops*> backends;
      for (auto& shard : res) backends.push_back(shard->backend.get());
      comms = make_shared_gpu_communicators(backends);
    } else if (tp > 1 && mpi) {
      comms[0] = mpi->make_world_communicator();  // CPU shards in other processes
    } else if (tp > 1) {
      comms = make_thread_communicators(tp);  // CPU shards: threads of this process
    }
    // On GPUs the all-reduces of sums up to 8 MiB take the custom one-shot kernel over peer-to-peer memory
    // (kernels/cuda/custom_all_reduce.hpp), the communicator above being the fallback. Its ranks swap buffer
    // records: through MPI across processes, through `records` within this one.
    const bool custom_all_reduce = tp > 1 && on_gpu;
    custom_all_reduce_options custom;
    custom.enabled = !o.disable_custom_all_reduce;
    in_process_exchange records(n_local);
    std::vector<std::string> custom_why_not(static_cast<size_t>(n_local));
    const bool profile = memory && o.num_gpu_blocks_override <= 0;
    if (!profile) check_kv_capacity(num_blocks, o.block_size, max_model_len, on_gpu);

    // Each shard loads its own slices and builds its model on a thread of its own: the profiling step
    // and the warm-up run collectives, which every rank must enter.
    std::vector<int64_t> shard_blocks(static_cast<size_t>(n_local), std::min<int64_t>(num_blocks, INT32_MAX));
    run_on_ranks(n_local, [&](int i) {
      const int r = ranks[static_cast<size_t>(i)];
      shard_resources& shard = *res[static_cast<size_t>(i)];
      const sharding_plan& plan = plans[static_cast<size_t>(r)];
      const model_config local = tp > 1 ? local_config(config, plan) : config;
      // This shard's GPU before it loads anything: its own baseline (another process may hold memory on one GPU and
      // not on the next). Shards sharing GPU 0 load at once and plan nothing from memory: the one baseline.
      const auto before = memory && !shared_gpu ? device_memory(*shard.backend) : memory;
      weight_source source = o.load_format == "dummy" ? (tp > 1 ? sharded_dummy_weight_source(o.seed.value_or(0), plan, config.quantization)
                                                                  : dummy_weight_source(o.seed.value_or(0), config.quantization))
                             : tp > 1 ? sharded_weight_source(*ckpt, config, plan)
                                      : checkpoint_weight_source(*ckpt, config);
      std::unique_ptr<communicator> comm;
      if (tp > 1) {
        comm = std::move(comms[static_cast<size_t>(i)]);
        if (!comm) comm = make_nccl_communicator(nccl_id, r, tp, *shard.backend);  // every rank at once
      }
      // 4-bit weights stay packed on a GPU (ops::linear_int4), a split model's each rank's slices alone; the CPU
      // runs the dequantized f32 forward (the reference). FP8 weights stay in FP8 on both (ops::linear_fp8: the
      // CPU twin quantizes the activations as the GPU does).
      const bool dummy = o.load_format == "dummy";
      const std::optional<quantization_config>& q = config.quantization;
      int4_source int4;
      const uint64_t seed = o.seed.value_or(0);
      if (on_gpu && q && q->four_bit())
        int4 = tp > 1 ? (dummy ? sharded_dummy_int4_source(seed, plan, q) : sharded_int4_source(*ckpt, config, plan))
                      : (dummy ? dummy_int4_source(seed, q) : checkpoint_int4_source(*ckpt, config));
      fp8_source fp8;
      if (q && q->fp8())
        fp8 = tp > 1 ? (dummy ? sharded_dummy_fp8_source(seed, plan, q) : sharded_fp8_source(*ckpt, config, plan))
                     : (dummy ? dummy_fp8_source(seed, q) : checkpoint_fp8_source(*ckpt, config));
      const int64_t elem = static_cast<int64_t>(size_in_bytes(act));
      const linear_weight_bytes linear = linear_weights_in_memory(local, elem);
      const bool kept = int4 || fp8;
      const int64_t weight_bytes = local.num_parameters() * elem - (kept ? linear.dense - linear.kept : 0);
      const int64_t least_weight_bytes = local.num_parameters() * elem - (linear.dense - linear.least);
      if (before) check_weights_fit(weight_bytes, std::string(name(act)), before->first, before->second, o.gpu_memory_utilization);
      if (kept && i == 0)
        spdlog::info("{} weights kept in {}: {} linear layers take about {:.2f} GiB instead of {:.2f} GiB in {}{}",
                     name(q->method), int4 ? "4 bits" : "FP8", tp > 1 ? "each shard's" : "the",
                     static_cast<double>(linear.kept) / (1 << 30), static_cast<double>(linear.dense) / (1 << 30), name(act),
                     on_gpu ? "; the KV cache gets the difference" : "");
      // Dummy weights are made by the backend where they live: a 70B model's half is 35 billion values, a minute
      // of one host thread and 140 GB of f32 copies otherwise.
      const weight_fill fill = dummy ? dummy_weight_fill(seed, tp > 1 ? &plan : nullptr, q) : weight_fill{};
      const auto load_start = std::chrono::steady_clock::now();
      model_weights weights = load_model_weights(local, *shard.backend, act, source, int4, fp8, fill);
      int4 = {}, fp8 = {};  // the quantizing sources' buffers (a weight's f32 values) go back before the profiling step
      const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
      shard_context where;
      if (tp > 1) {
        // After loading: the custom all-reduce's set-up is a rendezvous, so no rank's kernel waits out its
        // deadline for a peer still reading its weights.
        if (custom_all_reduce) {
          const exchange_strings exchange =
              mpi ? exchange_strings([mpi](const std::string& mine) { return mpi->all_gather_string(mine); })
                  : records.for_rank(i);
          comm = make_custom_all_reduce(std::move(comm), *shard.backend, exchange, custom,
                                        &custom_why_not[static_cast<size_t>(i)], mpi ? nullptr : records.launch_gate());
        }
        shard.comm = std::make_unique<timed_communicator>(std::move(comm));
        where = {shard.comm.get(), plan.vocab_begin, config.vocab_size};
      }
      if (!profile) {
        model_limits l = limits;
        l.num_blocks = shard_blocks[static_cast<size_t>(i)];
        shard.net = std::make_unique<model>(local, *shard.backend, std::move(weights), act, l, where);
        return;
      }
      // DESIGN.md, capacity: a profiling step at the largest batch over a one-block cache, then the KV
      // cache takes what is left of --gpu-memory-utilization.
      const int64_t after_weights = device_memory(*shard.backend)->first;
      model_limits l = limits;
      l.num_blocks = 1;
      shard.net = std::make_unique<model>(local, *shard.backend, std::move(weights), act, l, where);
      shard.net->profile_run();
      gpu_memory_profile p;
      p.total = before->second;
      p.free_before_loading = before->first;
      p.free_after_profile = device_memory(*shard.backend)->first;
      p.weight_bytes = before->first - after_weights;
      p.least_weight_bytes = least_weight_bytes;
      p.workspace_bytes = after_weights - p.free_after_profile - shard.net->kv_block_bytes();
      p.profiled_kv_bytes = shard.net->kv_block_bytes();
      p.block_bytes = shard.net->kv_block_bytes();
      p.block_size = o.block_size;
      p.max_model_len = max_model_len;
      p.profile_tokens = limits.max_num_tokens;
      p.utilization = o.gpu_memory_utilization;
      p.load_seconds = load_seconds;  // said as vLLM's "Loading weights took ... seconds" is
      shard_blocks[static_cast<size_t>(i)] = std::min<int64_t>(plan_kv_blocks(p), INT32_MAX);
      spdlog::info("{}{}", tp > 1 ? "shard " + std::to_string(r) + ": " : "", describe(p, shard_blocks[static_cast<size_t>(i)]));
    });
    // The scheduler's block tables are every shard's: the cache has the blocks the smallest shard holds.
    num_blocks = *std::min_element(shard_blocks.begin(), shard_blocks.end());
    if (custom_all_reduce) {  // the same verdict on every rank
      if (custom_why_not[0].empty())
        spdlog::info("custom all-reduce: on: sums up to {} MiB take the one-shot kernel over peer-to-peer GPU memory, "
                     "larger ones {}", custom.buffer_bytes >> 20, shared_gpu ? "the shared-GPU communicator" : "NCCL");
      else
        spdlog::info("custom all-reduce: off: {}; every all-reduce goes through {}", custom_why_not[0],
                     shared_gpu ? "the shared-GPU communicator" : "NCCL");
    }
    if (mpi) {  // and over the other processes' shards
      for (const std::string& blocks : mpi->all_gather_string(std::to_string(num_blocks)))
        num_blocks = std::min<int64_t>(num_blocks, std::stoll(blocks));
    }
    run_on_ranks(n_local, [&](int i) {
      shard_resources& shard = *res[static_cast<size_t>(i)];
      if (profile) shard.net->allocate_kv_cache(num_blocks);
      if (on_gpu) shard.net->warm_up();  // GEMM algorithms, kernel loading, the batch-1 decode graph
    });
    spdlog::info("weights and activations in {}", name(act));
    if (config.quantization && config.quantization->four_bit() && !on_gpu)
      spdlog::info("{} weights dequantized to f32 (the CPU reference)", name(config.quantization->method));
  } else {
    fill_batch_defaults(0);
    check_kv_capacity(num_blocks, o.block_size, max_model_len, on_gpu);
    num_blocks = std::min<int64_t>(num_blocks, INT32_MAX);
  }
  for (int i = 0; i < n_local; ++i) {
    shard_resources& shard = *res[static_cast<size_t>(i)];
    shard.runner = std::make_unique<model_runner>(shard.net.get(), o.block_size, static_cast<int32_t>(config.vocab_size),
                                                  eos, /*null_token=*/eos.empty() || eos[0] != 0 ? 0 : 1);
    // Structured outputs: only the shard that samples keeps matchers.
    if (ranks[static_cast<size_t>(i)] == 0 && front.grammars)
      shard.runner->enable_constraints(
          grammar_constraint_factory([g = front.grammars](const structured_output& spec) { return g->compile(spec); }));
  }
  if (mpi && tp > 1) spdlog::info("tensor-parallel size {}: rank {} of an mpirun job, one shard per process", tp, mpi->rank());
  else if (tp > 1) spdlog::info("tensor-parallel size {}: {} shards in this process", tp, tp);
  if (mpi && mpi->rank() != 0) {
    rank_shard = std::move(res[0]);  // engine::run_rank runs the steps rank 0 sends
    return;
  }
  if (mpi && tp > 1) {
    // Rank 0's shard hands each plan to the other processes' shards before it runs it itself.
    auto buffer = std::make_shared<std::vector<std::byte>>();
    res[0]->before_step = [mpi = o.mpi, buffer](const step_plan& plan) {
      encode_step_plan(plan, *buffer);
      mpi->broadcast_bytes(*buffer, 0);
    };
  }
  if (o.before_step) {
    auto before = std::move(res[0]->before_step);  // MPI's broadcast, if any, goes first
    res[0]->before_step = [before = std::move(before), hook = o.before_step](const step_plan& plan) {
      if (before) before(plan);
      hook(plan.step);
    };
  }
  spdlog::info("{} on the {} backend: KV cache ({}) of {} blocks of {} tokens ({} tokens of context); at most {} "
               "sequences and {} tokens per step",
               config.architecture_name, o.backend, o.kv_cache_dtype, num_blocks, o.block_size, num_blocks * o.block_size, o.max_num_seqs,
               o.max_num_batched_tokens);

  engine_config ec;
  ec.sched.max_num_seqs = o.max_num_seqs;
  ec.sched.max_num_batched_tokens = o.max_num_batched_tokens;
  ec.sched.max_model_len = static_cast<int32_t>(max_model_len);
  if (o.scheduling_policy == "priority") ec.sched.policy = scheduling_policy::priority;
  else if (o.scheduling_policy != "fcfs") throw user_error("--scheduling-policy must be fcfs or priority, got '" + o.scheduling_policy + "'");
  ec.sched.long_request_threshold = o.long_request_threshold;
  ec.sched.long_max_fraction = o.long_max_fraction;
  ec.sched.long_prefill_token_threshold = o.long_prefill_token_threshold;
  if (o.long_max_fraction <= 0 || o.long_max_fraction > 1) throw user_error("--long-max-fraction must be in (0, 1]");
  ec.kv.num_blocks = static_cast<int32_t>(num_blocks);
  ec.kv.block_size = o.block_size;
  ec.kv.enable_prefix_caching = o.enable_prefix_caching;
  ec.vocab_size = static_cast<int32_t>(config.vocab_size);
  ec.eos_token_ids = eos;
  if (front.grammars)
    ec.compile_structured = [g = front.grammars](const structured_output& spec) { g->compile(spec); };

  engine_metrics_config mc;
  mc.model_name = front.served_model_names.front();
  mc.max_model_len = max_model_len;
  mc.tensor_parallel_size = tp;
  mc.prefix = o.metrics_prefix;
  metrics = std::make_unique<engine_metrics>(mc);
  auto core = std::make_unique<engine_core>(ec, tok, o.seed ? *o.seed : std::random_device{}());
  core->set_metrics(metrics.get());
  // One shard in this process (and no other process's): the scheduler runs its steps itself where the options allow
  // (spawn_scheduler says why; engine_options::steps_in_scheduler why not always).
  std::shared_ptr<shard_resources> lone;
  if (tp == 1 && o.steps_in_scheduler) lone = std::move(res[0]);
  else
    for (auto& shard : res) shards.push_back(spawn_shard(system, std::move(shard)));
  stall_watch watch;
  if (tp > 1) {
    // A rank that dies or stalls holds every other shard in a collective: end the process rather than hang.
    watch.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.distributed_timeout * 1000));
    watch.on_stall = [](const std::string& what) {
      spdlog::critical("{}; exiting in 1 s (exit code 3)", what);
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::seconds(1));  // the failed requests' errors go out first
        std::_Exit(3);
      }).detach();
    };
  }
  scheduler = spawn_scheduler(system, std::move(core), shards, healthy, std::move(watch), std::move(lone));
}

engine::impl::~impl() {
  if (!scheduler) return;  // a rank other than 0 of an mpirun job: no actors
  for (auto& a : extra_actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(scheduler, caf::exit_reason::user_shutdown);
  for (auto& s : shards) caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  // NOTE: the scheduler and the shards use members destroyed before `system` (metrics, the tokenizer):
  // they must have ended first. A message already in their mailboxes (a sink's down_msg aborting a
  // request, sent as a gateway stopped) otherwise reached freed metrics (valgrind, 2026-12-04).
  caf::scoped_actor self{system};
  self->wait_for(scheduler, shards, extra_actors);
  if (options.mpi && options.tensor_parallel_size > 1) {
    // The other ranks wait for their next message: tell them to stop (rank 0's shard thread has ended, so
    // this thread is the only one calling MPI now).
    std::vector<std::byte> stop;
    encode_stop_order(stop);
    options.mpi->broadcast_bytes(stop, 0);
  }
}

void engine::run_rank() {
  impl& i = *impl_;
  if (!i.rank_shard) throw std::logic_error("engine::run_rank: not a rank other than 0 of an mpirun job");
  std::vector<std::byte> bytes;
  rank_message m;  // decoded into step after step, reusing its vectors
  for (;;) {
    i.options.mpi->broadcast_bytes(bytes, 0);
    decode_rank_message(bytes, m);
    if (m.what == rank_message::kind::stop) return;
    try {
      i.rank_shard->runner->execute(m.plan);
    } catch (const std::exception& e) {
      // Rank 0 ran the same plan over the same state and fails the step's requests itself.
      spdlog::error("rank {}: step {} failed: {}", i.options.mpi->rank(), m.plan.step, e.what());
    }
  }
}

engine::engine(const engine_options& options) : impl_(std::make_unique<impl>(options)) {}
engine::~engine() = default;

const model_config& engine::config() const { return impl_->config; }
std::string engine::metrics_text() const { return impl_->metrics->render(); }
metrics_snapshot engine::metrics() const { return impl_->metrics->snapshot(); }
const std::string& engine::served_model_name() const { return impl_->front.served_model_names.front(); }
const std::vector<std::string>& engine::served_model_names() const { return impl_->front.served_model_names; }
bool engine::healthy() const { return *impl_->healthy; }
const tokenizer* engine::tok() const { return impl_->front.tok.get(); }
int64_t engine::max_model_len() const { return impl_->front.max_model_len; }
const model_front& engine::front() const { return impl_->front; }
batch_limits engine::limits() const { return {impl_->options.max_num_seqs, impl_->options.max_num_batched_tokens}; }

std::vector<int32_t> engine::encode(const std::string& text) const {
  if (!impl_->front.tok) throw user_error("the model folder has no tokenizer.json: give prompts as token ids");
  return impl_->front.tok->encode(text, true);
}

void engine::fail_all(const std::string& error) { caf::anon_send(impl_->scheduler, fail_all_atom::value, error); }

engine_stats engine::stats() {
  caf::scoped_actor self{impl_->system};
  engine_stats out;
  self->request(impl_->scheduler, caf::infinite, stats_atom::value)
      .receive([&](engine_stats& s) { out = s; }, [](caf::error&) {});
  return out;
}

std::vector<completion> engine::generate(const std::vector<prompt_input>& prompts, const sampling_params& params,
                                         const std::function<void()>& on_finished) {
  return generate(prompts, std::vector<sampling_params>(prompts.size(), params), on_finished);
}

std::vector<completion> engine::generate(const std::vector<prompt_input>& prompts,
                                         const std::vector<sampling_params>& params_per_prompt,
                                         const std::function<void()>& on_finished) {
  if (params_per_prompt.size() != prompts.size())
    throw std::invalid_argument("engine::generate: " + std::to_string(params_per_prompt.size()) + " parameter sets for " +
                                std::to_string(prompts.size()) + " prompts");
  auto collector = std::make_shared<generate_collector>();
  collector->on_finished = on_finished;
  auto sink = impl_->system.spawn([collector](output_sink::pointer) -> output_sink::behavior_type {
    return {[collector](output_atom, output_batch& outs) {
      for (auto& out : outs) collector->add(out);
    }};
  });
  std::vector<completion> results(prompts.size());
  std::vector<request_id> ids(prompts.size(), 0);
  caf::scoped_actor self{impl_->system};
  size_t expected = 0;
  // Every request goes in one message, admitted before the next step is planned. A lone shard's steps run in the
  // scheduler's own thread, so a submit waits for the step in progress: awaiting each reply before sending the next
  // admitted one prompt a step (W1, 256 prompts: 512 steps where 264 do), and even a message a prompt let the first
  // step start before the last was sent, spreading the batch over steps whenever this thread was descheduled.
  std::vector<engine_request> batch;
  std::vector<size_t> sent;  // batch[j] is prompt sent[j]
  batch.reserve(prompts.size());
  sent.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine_request req;
    try {
      req.prompt_ids = prompts[i].token_ids.empty() ? encode(prompts[i].text) : prompts[i].token_ids;
    } catch (const user_error& e) {
      results[i].error = e.what();
      results[i].finish_reason = "error";
      continue;
    }
    results[i].prompt_token_ids = req.prompt_ids;
    req.params = params_per_prompt[i];
    batch.push_back(std::move(req));
    sent.push_back(i);
  }
  if (!batch.empty())
    self->request(impl_->scheduler, caf::infinite, submit_atom::value, std::move(batch), sink)
        .receive(
            [&](std::vector<submit_reply>& replies) {
              for (size_t j = 0; j < sent.size(); ++j) {
                const size_t i = sent[j];
                if (j < replies.size() && replies[j].error.empty()) {
                  ids[i] = replies[j].id;
                  ++expected;
                } else {
                  results[i].error = j < replies.size() ? std::move(replies[j].error) : "the scheduler did not answer it";
                  results[i].finish_reason = "error";
                }
              }
            },
            [&](caf::error& e) {
              for (const size_t i : sent) {
                results[i].error = impl_->system.render(e);
                results[i].finish_reason = "error";
              }
            });
  {
    std::unique_lock lock(collector->mutex);
    collector->cv.wait(lock, [&] { return collector->done.size() == expected; });
  }
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (ids[i] == 0) continue;
    completion& c = collector->done.at(ids[i]);
    c.prompt_token_ids = std::move(results[i].prompt_token_ids);
    results[i] = std::move(c);
  }
  return results;
}

} // namespace troupe
