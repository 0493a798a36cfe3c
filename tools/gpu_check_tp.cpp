// troupe_gpu_check, tensor parallelism (issue 11): NEEDS A GPU.
//
// 1. Each reference model (tests/data/reference/*) split over 2 and 4 shards sharing GPU 0: one CUDA
//    backend (and stream) per shard, joined by the shared-GPU communicator, each step run on every shard
//    at once by a thread of its own (tests/support/split_model.hpp, as tests/tensor_parallel_test.cpp on
//    the CPU), with the custom all-reduce around it as the engine sets it up (the rows check that its kernel
//    ran). Gathers wait on the host, so these shards never record graphs (the eager path).
//    - f32 and bf16: every shard's last-position logits of all prompts in one batch against transformers'
//      (reference.json), within gpu_check_models' tolerances (1e-4, 3e-2); the same bits on every shard.
//    - f32: the greedy continuations of all prompts decoded together for 12 steps are, on every shard,
//      the whole model's on this GPU (TP 1, eager as the split is; whether the whole model's graphs give
//      the same tokens is shown beside, informative).
//    The 4-bit references (tests/support/quantized_reference.hpp) run the same with each rank's 4-bit slices
//    packed on the GPU, within 1e-3 in f32 (model_tolerance); a split whose ranks would cut a 4-bit group or
//    packed word (llama_f32_awq at 2: 48 of down_proj's 96 inputs, groups of 32) must be refused with the
//    error the flag prints, and that refusal is the row.
// 2. NCCL of size 1 on the sharded path (sharding_plan::make(config, 1, 0), local_config, shard_context
//    with an NCCL communicator of one): the whole model's greedy continuations, eagerly and with decode
//    graphs (the collectives captured inside, capturable() being true), each against the whole model run
//    the same way. Every TP 1 model is warmed up as the engine warms it (every decode graph recorded).
// 3. Timings (informative) at Qwen2.5-7B shapes with dummy bf16 weights (each shard makes its slices):
//    decode steps of 1 and of 256 sequences (128 tokens of context, one new token each) with 2 shards
//    sharing the GPU (without and with the custom all-reduce), the whole model beside NCCL of size 1, and with 2
//    or more GPUs, 2 ranks on GPUs 0 and 1 joined by NCCL without and with the custom all-reduce (issue 16); step time (host wall time of the step,
//    which ends with the sampled tokens on the host) and the collective time of shard 0
//    (timed_communicator: the host time inside collectives, waiting for the other shard included).
//
// A shard that fails inside a collective leaves the others at a barrier for good, so each part runs under
// a watchdog that ends the program after a deadline.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/backend_factory.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/custom_all_reduce.hpp"
#include "kernels/cuda/nccl_communicator.hpp"
#include "kernels/cuda/shared_gpu_communicator.hpp"
#include "kernels/model.hpp"
#include "kernels/timed_communicator.hpp"
#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/quantized_reference.hpp"
#include "tests/support/reference_steps.hpp"
#include "tests/support/split_model.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
namespace fs = std::filesystem;
using troupe::testing::first_difference;
using troupe::testing::greedy_tokens;
using troupe::testing::make_step;
using troupe::testing::reference_limits;
using troupe::testing::split_model;

namespace gpu_check {
namespace {

const int kSharedSizes[] = {2, 4};
constexpr int kSteps = 12;      // greedy tokens per prompt (the first from the prefill)
constexpr uint64_t kSeed = 7;   // dummy weights

// `n` CUDA backends on GPU 0, each with its own stream.
std::vector<std::unique_ptr<ops>> gpu_backends(int n) {
  std::vector<std::unique_ptr<ops>> backends;
  for (int r = 0; r < n; ++r) backends.push_back(std::make_unique<cuda_ops>(0));
  return backends;
}

// With `timers`, wraps each communicator in a timed_communicator, which `timers` receives, element r for rank r.
std::vector<std::unique_ptr<communicator>> with_timers(std::vector<std::unique_ptr<communicator>> comms,
                                                       std::vector<const timed_communicator*>* timers) {
  if (!timers) return comms;
  for (auto& c : comms) {
    auto t = std::make_unique<timed_communicator>(std::move(c));
    timers->push_back(t.get());
    c = std::move(t);
  }
  return comms;
}

// The model split over `tp` shards sharing GPU 0, joined by the shared-GPU communicator, with the custom
// all-reduce around it unless `custom` is false (as the engine sets them up); `custom_0`, when given, receives
// shard 0's custom all-reduce (for custom_all_reduce_calls). A quantized config's linear weights stay in 4 bits
// (each rank's slices packed on the GPU), as on the whole model below.
split_model shared_split(const model_config& config, int tp, const checkpoint* ckpt, dtype t, const model_limits& limits,
                         std::vector<const timed_communicator*>* timers = nullptr, bool custom = true,
                         const communicator** custom_0 = nullptr) {
  auto backends = gpu_backends(tp);
  std::vector<ops*> raw;
  for (const auto& b : backends) raw.push_back(b.get());
  std::vector<std::unique_ptr<communicator>> shared = make_shared_gpu_communicators(raw);
  if (custom) shared = with_custom_all_reduce(std::move(shared), raw);
  if (custom_0) *custom_0 = shared[0].get();
  auto comms = with_timers(std::move(shared), timers);
  return split_model(config, std::move(backends), std::move(comms), ckpt, kSeed, t, limits, config.quantization.has_value());
}

// The model split over GPUs 0 .. tp-1, one rank each, joined by NCCL, with the custom all-reduce around it unless
// `custom` is false.
split_model nccl_split(const model_config& config, int tp, dtype t, const model_limits& limits,
                       std::vector<const timed_communicator*>* timers, bool custom) {
  std::vector<std::unique_ptr<ops>> backends;
  std::vector<ops*> raw;
  for (int r = 0; r < tp; ++r) {
    backends.push_back(std::make_unique<cuda_ops>(r));
    raw.push_back(backends.back().get());
  }
  const nccl_unique_id id = make_nccl_unique_id();
  std::vector<std::unique_ptr<communicator>> comms(static_cast<size_t>(tp));
  const std::string error = troupe::testing::first_error(troupe::testing::on_rank_threads(tp, [&](int r) {
    comms[static_cast<size_t>(r)] = make_nccl_communicator(id, r, tp, *raw[static_cast<size_t>(r)]);
  }));
  if (!error.empty()) throw std::runtime_error("NCCL: " + error);
  if (custom) comms = with_custom_all_reduce(std::move(comms), raw);
  return split_model(config, std::move(backends), with_timers(std::move(comms), timers), nullptr, kSeed, t, limits,
                     config.quantization.has_value());
}

enum class one_gpu { whole, nccl_size_1 };

using continuations = std::vector<std::vector<int32_t>>;  // [prompt][step]

// The whole model's greedy continuations on this GPU, run eagerly and with decode graphs.
struct whole_tokens {
  continuations eager, graphs;
  const continuations& run(bool with_graphs) const { return with_graphs ? graphs : eager; }
};

// The model on one CUDA backend of GPU 0: whole, or on the sharded path with NCCL of size 1.
split_model on_one_gpu(one_gpu how, const model_config& config, const checkpoint* ckpt, dtype t, const model_limits& limits,
                       std::vector<const timed_communicator*>* timers = nullptr) {
  auto backends = gpu_backends(1);
  std::vector<std::unique_ptr<communicator>> comms;
  if (how == one_gpu::nccl_size_1) comms.push_back(make_nccl_communicator(make_nccl_unique_id(), 0, 1, *backends[0]));
  comms = with_timers(std::move(comms), timers);
  return split_model(config, std::move(backends), std::move(comms), ckpt, kSeed, t, limits, config.quantization.has_value());
}

// Why decode steps of `m` would not replay graphs ("" when they would).
std::string why_no_graphs(split_model& m) {
  if (!m.backend(0).graphs_available()) return "the backend records no graphs (TROUPE_CUDA_PROFILE set?)";
  const char* eager = std::getenv("TROUPE_ENFORCE_EAGER");
  if (eager && *eager && *eager != '0') return "TROUPE_ENFORCE_EAGER is set";
  return "";
}

std::string count_of(size_t n, const char* what) { return std::to_string(n) + " " + what; }

// Part 1 for one split and dtype: logits against transformers, and (f32) greedy tokens against the whole
// model's run eagerly (`whole`).
void check_shared_split(const std::string& label, const model_config& config, const checkpoint& ckpt,
                        const std::vector<std::vector<int32_t>>& prompts, const std::vector<std::vector<float>>& ref_logits,
                        const continuations& whole, int tp, dtype t) {
  const communicator* custom = nullptr;
  split_model m = shared_split(config, tp, &ckpt, t, reference_limits(), nullptr, true, &custom);
  const std::string where = "tp=" + std::to_string(tp) + " shared GPU + custom all-reduce, ";

  std::vector<std::pair<std::vector<int32_t>, int32_t>> all;
  for (const auto& p : prompts) all.push_back({p, 0});
  const auto logits = m.forward(make_step(all));
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  double worst = 0;
  int worst_shard = 0, first_unequal = -1;
  size_t unequal = 0;
  for (int r = 0; r < m.size(); ++r) {
    const std::vector<float>& mine = logits[static_cast<size_t>(r)];
    double err = 0;
    if (mine.size() != prompts.size() * vocab) err = INFINITY;
    else
      for (size_t p = 0; p < prompts.size(); ++p)
        err = std::max(err, relative_error(std::span<const float>(mine).subspan(p * vocab, vocab), ref_logits[p]));
    if (!(err <= worst)) worst = err, worst_shard = r;  // a NaN error is the worst
    if (mine != logits[0]) {
      ++unequal;
      if (first_unequal < 0) first_unequal = r;
    }
  }
  const double tol = model_tolerance(t, config);
  report(label, t, where + "last logits, " + count_of(prompts.size(), "prompts") + " in one batch", worst, tol,
         "worst: shard " + std::to_string(worst_shard));
  report(label, t, where + "logits of every shard", static_cast<double>(unequal), 0,
         unequal == 0 ? "the same bits on every shard"
                      : "shard " + std::to_string(first_unequal) + "'s differ from shard 0's (" +
                            count_of(unequal, "shards") + ")");
  const int64_t sums = custom_all_reduce_calls(*custom);
  report(label, t, where + "sums through the custom kernel", sums > 0 ? 0 : 1, 0,
         sums > 0 ? std::to_string(sums) + " on shard 0" : sums == 0 ? "none: every sum took the fallback" : "it was not set up");
  if (t != dtype::f32) return;

  // Recomputing the prefill rewrites the KV slots of the step above with the same values.
  const auto tokens = greedy_tokens(m, prompts, kSteps);
  size_t differ = 0;
  std::string first;
  for (int r = 0; r < m.size(); ++r) {
    const std::string d = first_difference(tokens[static_cast<size_t>(r)], whole);
    if (d.empty()) continue;
    ++differ;
    if (first.empty()) first = "shard " + std::to_string(r) + ", " + d + " (the whole model's, eager)";
  }
  report(label, t, where + "greedy " + std::to_string(kSteps) + " tokens x" + std::to_string(prompts.size()) + " together",
         static_cast<double>(differ), 0, differ == 0 ? "the whole model's tokens on every shard" : first);
}

// A split that valid_tensor_parallel_sizes leaves out (a rank's share of a 4-bit layer not in whole groups or
// packed words) must be refused before anything loads, with the error `--tensor-parallel-size` prints.
void check_refused_split(const std::string& label, const model_config& config, const checkpoint& ckpt, int tp) {
  const std::string flag = "--tensor-parallel-size " + std::to_string(tp) + " ";
  const std::string where = "tp=" + std::to_string(tp) + " shared GPU, refused (the split cuts 4-bit groups)";
  try {
    shared_split(config, tp, &ckpt, dtype::f32, reference_limits());
    report(label, dtype::f32, where, 1, 0, "loaded, though valid_tensor_parallel_sizes leaves it out");
  } catch (const user_error& e) {  // anything else fails the row through guarded()
    const std::string message = e.what();
    report(label, dtype::f32, where, message.starts_with(flag) ? 0 : 1, 0, message);
  }
}

// Part 2: NCCL of size 1 on the sharded path against the whole model, eagerly and with decode graphs.
void check_nccl_size_1(const std::string& label, const model_config& config, const checkpoint& ckpt,
                       const std::vector<std::vector<int32_t>>& prompts, const whole_tokens& whole) {
  const std::string what = "greedy " + std::to_string(kSteps) + " tokens x" + std::to_string(prompts.size()) + " together";
  if (!nccl_available()) {
    report(label, dtype::f32, "nccl size=1, " + what, INFINITY, 0, "this troupe was built without NCCL");
    return;
  }
  for (const bool graphs : {false, true}) {
    model_limits limits = reference_limits();
    limits.enforce_eager = !graphs;
    const std::string where = std::string("nccl size=1, ") + (graphs ? "decode graphs, " : "eager, ") + what;
    split_model m = on_one_gpu(one_gpu::nccl_size_1, config, &ckpt, dtype::f32, limits);
    if (const std::string no = why_no_graphs(m); graphs && !no.empty()) {
      report(label, dtype::f32, where, INFINITY, 0, no);
      continue;
    }
    // As the engine: eager steps of each size first (NCCL connects, the gather's staging buffer grows),
    // then every decode graph recorded with the collectives inside.
    m.warm_up();
    const std::string d = first_difference(greedy_tokens(m, prompts, kSteps)[0], whole.run(graphs));
    report(label, dtype::f32, where, d.empty() ? 0 : 1, 0,
           d.empty() ? "the whole model's tokens" : d + " (the whole model's, " + (graphs ? "graphs)" : "eager)"));
  }
}

// Decode step timings of one setup at one batch size.
struct step_timing {
  std::string setup;
  int64_t batch = 0;
  double build_s = 0;       // weights made and uploaded, model built
  double step_ms = 0;       // median host wall time of a decode step
  double collective_ms = 0; // median host time shard 0 spent in collectives during it
  bool timed = false;       // whether collective_ms was measured (a setup with a communicator)
  bool graphs = false;      // decode steps replay graphs, whose collectives no timer sees
};

constexpr int64_t kContext = 128;  // tokens of each sequence before the timed decode steps
constexpr int kWarmSteps = 3, kTimedSteps = 20;

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Warms `m` up as the engine does, then times decode steps at batch 1 and 256 (after prefilling each
// sequence's kContext tokens): one row each.
std::vector<step_timing> time_decode(const std::string& setup, split_model& m, double build_s,
                                     const timed_communicator* shard_0, bool graphs, int64_t vocab) {
  using clock = std::chrono::steady_clock;
  m.warm_up();
  std::vector<step_timing> rows;
  for (const int64_t batch : {int64_t{1}, int64_t{256}}) {
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(batch));
    for (int64_t p = 0; p < batch; ++p)
      for (int64_t i = 0; i < kContext; ++i)
        prompts[static_cast<size_t>(p)].push_back(static_cast<int32_t>((i * 7919 + p * 104729 + 17) % vocab));
    std::vector<double> step_ms, collective_ms;
    greedy_tokens(m, prompts, 1 + kWarmSteps + kTimedSteps, [&](int step, const std::function<void()>& run) {
      const int64_t busy = shard_0 ? shard_0->busy_ns() : 0;
      const auto begin = clock::now();
      run();
      const double ms = std::chrono::duration<double, std::milli>(clock::now() - begin).count();
      if (step <= kWarmSteps) return;
      step_ms.push_back(ms);
      collective_ms.push_back(shard_0 ? static_cast<double>(shard_0->busy_ns() - busy) / 1e6 : 0.0);
    });
    rows.push_back({setup, batch, build_s, median(step_ms), median(collective_ms), shard_0 != nullptr, graphs});
  }
  return rows;
}

} // namespace

void check_tensor_parallel(const fs::path& dir) {
  const std::string label = "tp " + dir.filename().string();
  watchdog deadline("the tensor-parallel checks of " + dir.filename().string(), 180);
  std::ifstream in(dir / "reference.json");
  const auto j = nlohmann::json::parse(in);
  const auto prompts = j.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const auto ref_logits = j.at("last_logits").get<std::vector<std::vector<float>>>();
  const model_config config = troupe::testing::reference_config(dir);  // 4-bit references: packed (rtn from the name)
  const checkpoint ckpt = checkpoint::open(dir);

  // The whole model's tokens on this GPU in f32, warmed up as the engine does it: eager (what every split,
  // which runs eagerly, must give) and with decode graphs (what NCCL of size 1 in graphs must give).
  whole_tokens whole;
  for (const bool graphs : {false, true}) {
    model_limits limits = reference_limits();
    limits.enforce_eager = !graphs;
    split_model m = on_one_gpu(one_gpu::whole, config, &ckpt, dtype::f32, limits);
    m.warm_up();
    (graphs ? whole.graphs : whole.eager) = greedy_tokens(m, prompts, kSteps)[0];
  }
  const std::string same = first_difference(whole.graphs, whole.eager);
  inform(label, dtype::f32, "tp=1 whole model, graphs against eager",
         same.empty() ? "the same greedy tokens" : same + " (eager's)");
  const std::vector<int64_t> valid = valid_tensor_parallel_sizes(config);
  for (const int tp : kSharedSizes) {
    if (std::find(valid.begin(), valid.end(), tp) == valid.end()) {
      guarded(label.c_str(), [&] { check_refused_split(label, config, ckpt, tp); });
      continue;
    }
    for (const dtype t : {dtype::f32, dtype::bf16})
      guarded(label.c_str(), [&] { check_shared_split(label, config, ckpt, prompts, ref_logits, whole.eager, tp, t); });
  }
  guarded(label.c_str(), [&] { check_nccl_size_1(label, config, ckpt, prompts, whole); });
}

void time_tensor_parallel(const fs::path& shape_dir) {
  watchdog deadline("the tensor-parallel timings", device_count("cuda") >= 2 ? 900 : 600);
  using clock = std::chrono::steady_clock;
  const model_config config = model_config::from_dir(shape_dir);
  // 256 sequences of up to 256 tokens in blocks of 16; prefill steps of up to 1024 tokens.
  const model_limits limits = reference_limits(256);
  const dtype t = dtype::bf16;
  auto seconds_since = [](clock::time_point begin) { return std::chrono::duration<double>(clock::now() - begin).count(); };

  std::vector<step_timing> shared, whole, nccl;
  for (const bool custom : {false, true})
    guarded("tp timings, 2 shards", [&] {
      std::vector<const timed_communicator*> timers;
      const auto begin = clock::now();
      split_model m = shared_split(config, 2, nullptr, t, limits, &timers, custom);
      const auto rows = time_decode(custom ? "tp=2, 2 shards sharing GPU 0 + custom (eager)" : "tp=2, 2 shards sharing GPU 0 (eager)",
                                    m, seconds_since(begin), timers[0], false, config.vocab_size);
      shared.insert(shared.end(), rows.begin(), rows.end());
    });
  guarded("tp timings, whole model", [&] {
    const auto begin = clock::now();
    split_model m = on_one_gpu(one_gpu::whole, config, nullptr, t, limits);
    whole = time_decode("tp=1, the whole model (graphs)", m, seconds_since(begin), nullptr, true, config.vocab_size);
  });
  if (!nccl_available()) inform("tp decode step", t, "nccl size=1", "this troupe was built without NCCL");
  else
    guarded("tp timings, nccl size 1", [&] {
      std::vector<const timed_communicator*> timers;
      const auto begin = clock::now();
      split_model m = on_one_gpu(one_gpu::nccl_size_1, config, nullptr, t, limits, &timers);
      nccl = time_decode("tp=1, NCCL size 1 (graphs)", m, seconds_since(begin), timers[0], true, config.vocab_size);
    });
  std::vector<step_timing> gpus_2;  // issue 16: NCCL against the custom all-reduce, one rank per GPU
  if (nccl_available() && device_count("cuda") >= 2)
    for (const bool custom : {false, true})
      guarded("tp timings, 2 GPUs", [&] {
        std::vector<const timed_communicator*> timers;
        const auto begin = clock::now();
        split_model m = nccl_split(config, 2, t, limits, &timers, custom);
        const auto rows = time_decode(custom ? "tp=2, GPUs 0 and 1, NCCL + custom (graphs)" : "tp=2, GPUs 0 and 1, NCCL (graphs)",
                                      m, seconds_since(begin), timers[0], true, config.vocab_size);
        gpus_2.insert(gpus_2.end(), rows.begin(), rows.end());
      });
  std::vector<step_timing> rows = shared;
  rows.insert(rows.end(), whole.begin(), whole.end());
  rows.insert(rows.end(), nccl.begin(), nccl.end());
  rows.insert(rows.end(), gpus_2.begin(), gpus_2.end());

  // The table for the closing note, and one informative row each in the results.
  std::printf("\ntensor parallelism at %s shapes (%lld layers, hidden %lld, dummy bf16 weights): decode steps of one new "
              "token per sequence after %lld of context, median of %d steps\n",
              shape_dir.filename().string().c_str(), static_cast<long long>(config.num_layers),
              static_cast<long long>(config.hidden_size), static_cast<long long>(kContext), kTimedSteps);
  std::printf("collective ms: host time shard 0 spends inside collectives (timed_communicator), waiting for the other "
              "shard included; graphs replay the collectives inside them, unseen by it\n");
  std::printf("%-40s %6s %10s %14s %7s %9s\n", "setup", "batch", "step ms", "collective ms", "share", "built in");
  for (const step_timing& r : rows) {
    char collective[32] = "-", share[16] = "-", note[200];
    const bool unseen = r.timed && r.graphs && r.collective_ms == 0;
    if (unseen) {
      std::snprintf(collective, sizeof collective, "in the graph");
    } else if (r.timed) {
      std::snprintf(collective, sizeof collective, "%.3f", r.collective_ms);
      std::snprintf(share, sizeof share, "%.1f%%", 100 * r.collective_ms / r.step_ms);
    }
    std::printf("%-40s %6lld %10.3f %14s %7s %8.1fs\n", r.setup.c_str(), static_cast<long long>(r.batch), r.step_ms,
                collective, share, r.build_s);
    if (!r.timed) std::snprintf(note, sizeof note, "%.3f ms per step; built in %.1f s", r.step_ms, r.build_s);
    else if (unseen)
      std::snprintf(note, sizeof note, "%.3f ms per step, collectives inside the graph; built in %.1f s", r.step_ms, r.build_s);
    else
      std::snprintf(note, sizeof note, "%.3f ms per step, %s ms in collectives (%s); built in %.1f s", r.step_ms,
                    collective, share, r.build_s);
    inform("tp decode step", t, r.setup + ", batch " + std::to_string(r.batch), note);
  }
  // What the identity collectives of NCCL of size 1 (and the sharded path) add to the whole model's step.
  if (whole.size() == nccl.size())
    for (size_t i = 0; i < nccl.size(); ++i)
      std::printf("NCCL size 1 against the whole model at batch %lld: %+.3f ms per step (%+.1f%%)\n",
                  static_cast<long long>(nccl[i].batch), nccl[i].step_ms - whole[i].step_ms,
                  100 * (nccl[i].step_ms - whole[i].step_ms) / whole[i].step_ms);
}

} // namespace gpu_check
