// troupe_gpu_check: checks the CUDA backend. NEEDS A GPU (scripts/gpu/check.sh runs it there).
//
// 1. Every CUDA op against its CPU twin over random shapes and dtypes: the same inputs (rounded to the
//    dtype) go to both; the CPU computes in fp32. Outputs are poisoned with NaN first, so an element the
//    kernel never writes fails. Error is ‖gpu − cpu‖ / ‖cpu‖ over the whole output
//    (tools/gpu_check_ops.cpp; at 0, 1 and a few rows: tools/gpu_check_rows.cpp).
// 2. Whole models (tests/data/reference/*) on the GPU against transformers' last-position logits, in
//    fp32 and bf16, plus chunked prefill, one batch of all prompts, greedy and sampled continuations.
//    The 4-bit references (<name>_awq, _gptq, _rtn) load with their quantization, weights packed on the GPU.
//    The same for a model of real size (Qwen2.5-7B shapes) that scripts/gpu/make_large_reference.py
//    makes on the GPU machine (scripts/gpu/check.sh with LARGE=1; --no-ops --data that folder).
//    tools/gpu_check_models.cpp.
// 3. The sampling op against sample_cpu (tools/gpu_check_sampling.cpp).
// 4. A few timings at Qwen2.5-7B shapes (informative, no pass/fail): tools/gpu_check_timings.cpp.
// 5. The engine torture test's plans on the CUDA backend for --torture-seconds (default 60; 0: none):
//    tools/gpu_check_torture.cpp.
// 6. The communicators of tensor parallelism: ranks sharing this GPU against the CPU thread communicator,
//    bit for bit; NCCL of size 1, also inside a CUDA graph; µs per all-reduce (tools/gpu_check_comm.cpp).
// 7. The tensor-parallel forward: each reference model split over 2 and 4 shards sharing this GPU against
//    the whole model (f32 greedy tokens) and transformers (logits), NCCL of size 1 on the sharded path
//    against the whole model, eagerly and in graphs; decode step and collective times at Qwen2.5-7B
//    shapes (the qwen2.5-7b-shape folder beside --data, else scripts/gpu/'s) at batch 1 and 256
//    (tools/gpu_check_tp.cpp).
// 8. The custom all-reduce (issue 16): around 2 and 4 ranks sharing this GPU, and NCCL ranks one per GPU when
//    there are 2 or more, against the CPU twin's bits; us per all-reduce against the wrapped communicator
//    (tools/gpu_check_custom_all_reduce.cpp). --custom-all-reduce runs only it; --custom-all-reduce-mpi, under
//    `mpirun -np N`, runs it with one rank per process (CUDA IPC), on one GPU or several.
//
// Prints a table (op, dtype, shapes, error, tolerance, pass) and exits 1 when a check fails.
//
//   troupe_gpu_check [--data DIR] [--seed N] [--no-ops] [--no-models] [--no-timing] [--torture-seconds S]
//                    [--no-comm] [--no-tp] [--only-4-bit] [--sampling | --sampling-quick | --sampling-timing |
//                    --torture | --comm | --tp | --models | --fp8-kv | --fp8-weights | --int4 | --custom-all-reduce |
//                    --custom-all-reduce-mpi]
//
// --models: only the reference models, whole (2) and split (7, without its timings; --no-tp leaves it out).
// --only-4-bit: of the reference folders, only the 4-bit ones (issue 12's rows: --models --only-4-bit).
// --fp8-kv: only the FP8 KV cache's rows (issue 13): its ops in f32, bf16 and f16 (part of 1), the reference
//   models with an FP8 cache against the CPU twin (part of 2) and against torch's FP8 references (FP8 cache, FP8
//   weights + cache: reference_fp8.json, scripts/gpu/make_fp8_references.py), and the attention timings, bf16 and FP8.
// --int4: only the 4-bit weights' rows (issue 12): linear_int4 in f32, bf16 and f16 on each kernel and variant, the
//   4-bit reference models and the random AWQ model on each 4-bit path, and linear_int4's timings.
// --fp8-weights: only the FP8 weights' rows (issue 13): linear_fp8 in f32, bf16 and f16 on each GEMM path and at
//   0, 1 and 3 rows (part of 1), the reference models with FP8 weights against the CPU twin (part of 2) and against
//   torch's FP8 references (FP8 weights, FP8 weights + cache), and gate_up timings beside bf16.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
#include "tests/support/quantized_reference.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace gpu_check {
namespace {

struct result_row {
  std::string op, type, shape;
  double error = 0, tolerance = 0;
  bool pass = false;
  bool informative = false;  // a timing or an agreement count: never fails
  std::string note;
};

std::vector<result_row> results;

// One row as the table prints it.
void print_row(std::FILE* to, const result_row& r) {
  if (r.informative)
    std::fprintf(to, "%-22s %-5s %-64s %10s %8s  %s\n", r.op.c_str(), r.type.c_str(), r.shape.c_str(), "-", "-", r.note.c_str());
  else
    std::fprintf(to, "%-22s %-5s %-64s %10.2e %8.0e  %s%s%s\n", r.op.c_str(), r.type.c_str(), r.shape.c_str(), r.error,
                 r.tolerance, r.pass ? "pass" : "FAIL", r.note.empty() ? "" : "  ", r.note.c_str());
}

// TROUPE_GPU_CHECK_STREAM=1 (scripts/gpu/check.sh sets it): each row also goes to stderr when it is made, so a run
// cut off by a time limit keeps the rows it finished (the table comes only at the end).
void stream_row(const result_row& r) {
  static const bool on = [] {
    const char* v = std::getenv("TROUPE_GPU_CHECK_STREAM");
    return v && *v && *v != '0';
  }();
  if (on) print_row(stderr, r);
}

} // namespace

std::mt19937_64 rng;

void report(std::string op, dtype t, std::string shape, double error, double tolerance, std::string note) {
  const bool pass = std::isfinite(error) && error <= tolerance;
  results.push_back({std::move(op), std::string(name(t)), std::move(shape), error, tolerance, pass, false, std::move(note)});
  stream_row(results.back());
}
void inform(std::string op, dtype t, std::string shape, std::string note) {
  results.push_back({std::move(op), std::string(name(t)), std::move(shape), 0, 0, true, true, std::move(note)});
  stream_row(results.back());
}

double time_ms(cuda_ops& gpu, const std::function<void()>& f, int reps) { return stream_ms(gpu, f, 1, reps); }

double stream_ms(cuda_ops& gpu, const std::function<void()>& f, int calls, int trials) {
  f();
  gpu.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < trials; ++i) {
    const auto a = std::chrono::steady_clock::now();
    for (int c = 0; c < calls; ++c) f();
    gpu.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count() / calls);
  }
  std::nth_element(ms.begin(), ms.begin() + trials / 2, ms.end());
  return ms[trials / 2];
}

double tolerance_for(dtype t) { return t == dtype::f32 ? 1e-4 : 1e-2; }

double fp8_gemm_tolerance(int64_t k) {
  if (!cuda::gemm_settings().fp8_fast_accum) return 1e-3;
  return std::max(1e-3, 2.0 * std::ldexp(1.0, -13) * std::sqrt(static_cast<double>(k) / 32.0));
}

// ‖a − b‖ / ‖b‖; infinity when a holds a NaN or infinity.
double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

// bf16/f16 attention on the CUDA-core kernel (on) or the tensor cores (off).
void set_simt_attention(bool on) { cuda::attention_settings().simt = on; }

// Runs one part of the check; a part that throws becomes a failing row. Each part's end goes to stderr at
// once (the table comes only at the end), so a run cut off by a time limit says how far it got.
void guarded(const char* what, const std::function<void()>& f) {
  static const auto start = std::chrono::steady_clock::now();
  try {
    f();
  } catch (const std::exception& e) {
    results.push_back({what, "-", std::string("threw: ") + e.what(), INFINITY, 0, false, false, {}});
    stream_row(results.back());
  }
  const auto failing = std::count_if(results.begin(), results.end(), [](const result_row& r) { return !r.pass; });
  std::fprintf(stderr, "[%6.1f s] %s done: %zu rows, %td failing\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), what, results.size(), failing);
}

struct watchdog::state {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  std::thread thread;
};

watchdog::watchdog(std::string what, double seconds) : state_(std::make_unique<state>()) {
  state_->thread = std::thread([s = state_.get(), what = std::move(what), seconds] {
    std::unique_lock lock(s->mutex);
    if (!s->done_cv.wait_for(lock, std::chrono::duration<double>(seconds), [s] { return s->done; })) {
      std::fprintf(stderr, "troupe_gpu_check: %s did not finish within %.0f s (a rank stuck in a collective?)\n",
                   what.c_str(), seconds);
      std::fflush(stdout);
      std::_Exit(3);
    }
  });
}

watchdog::~watchdog() {
  {
    std::lock_guard lock(state_->mutex);
    state_->done = true;
  }
  state_->done_cv.notify_all();
  state_->thread.join();
}

} // namespace gpu_check

using namespace gpu_check;

namespace {

void print_table() {
  std::printf("\n%-22s %-5s %-64s %10s %8s  %s\n", "op", "dtype", "shapes", "rel err", "tol", "result");
  int failed = 0;
  for (const auto& r : results) {
    print_row(stdout, r);
    if (r.informative) continue;
    failed += !r.pass;
  }
  int checks = 0;
  for (const auto& r : results) checks += !r.informative;
  std::printf("\n%d of %d checks pass\n", checks - failed, checks);
}

} // namespace

int main(int argc, char** argv) {
  fs::path data = "tests/data/reference";
  uint64_t seed = 1;
  bool models = true, timing = true, ops = true, sampling = true, quick_sampling = false, comm = true,
       sample_timing = true, tp = true, only_4_bit = false, only_fp8_kv = false, only_fp8_weights = false, only_int4 = false,
       only_custom_all_reduce = false, custom_all_reduce_mpi = false, fp8_decode_timing = false,
       attention_timing = false, fp8_silu = false, fp8_kv_f16 = false;
  double torture_seconds = 60;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else if (a == "--no-models") models = false;
    else if (a == "--no-ops") ops = sampling = comm = tp = false;  // models (and timings) only
    else if (a == "--no-timing") timing = false;
    else if (a == "--no-comm") comm = false;
    else if (a == "--no-tp") tp = false;
    else if (a == "--sampling") ops = models = comm = tp = false;  // only the sampling checks and timings
    else if (a == "--sampling-quick") ops = models = timing = comm = tp = false, quick_sampling = true;  // small vocabularies
    else if (a == "--sampling-timing") ops = models = sampling = comm = tp = false;  // only the sampling timings
    else if (a == "--torture-seconds" && i + 1 < argc) torture_seconds = std::stod(argv[++i]);
    else if (a == "--torture") ops = models = sampling = timing = comm = tp = false;  // only the engine torture run
    else if (a == "--comm") ops = models = sampling = sample_timing = tp = false, torture_seconds = 0;  // only the communicators
    else if (a == "--tp") ops = models = sampling = sample_timing = comm = false, torture_seconds = 0;  // only tensor parallelism
    else if (a == "--models") ops = sampling = sample_timing = comm = timing = false, torture_seconds = 0;  // only the models
    else if (a == "--custom-all-reduce")  // only the custom all-reduce's checks and timings
      ops = models = sampling = sample_timing = tp = comm = false, torture_seconds = 0, only_custom_all_reduce = true;
    else if (a == "--custom-all-reduce-mpi") custom_all_reduce_mpi = true;  // under mpirun: one rank per process
    else if (a == "--only-4-bit") only_4_bit = true;  // of the reference folders, the 4-bit ones
    else if (a == "--fp8-kv") sampling = sample_timing = comm = tp = false, torture_seconds = 0, only_fp8_kv = true;
    else if (a == "--int4") sampling = sample_timing = comm = tp = false, torture_seconds = 0, only_int4 = only_4_bit = true;
    else if (a == "--fp8-weights") sampling = sample_timing = comm = tp = false, torture_seconds = 0, only_fp8_weights = true;
    else if (a == "--fp8-decode-timing")  // only the FP8 decode products' timings
      ops = models = sampling = sample_timing = comm = tp = false, torture_seconds = 0, fp8_decode_timing = true;
    else if (a == "--fp8-kv-f16")  // only the FP8 cache's F16 attention rows
      ops = models = sampling = sample_timing = comm = tp = timing = false, torture_seconds = 0, fp8_kv_f16 = true;
    else if (a == "--fp8-silu")  // only linear_fp8_silu's op rows
      ops = models = sampling = sample_timing = comm = tp = timing = false, torture_seconds = 0, fp8_silu = true;
    else if (a == "--attention-timing")  // only the attention timings (bf16 and FP8 caches)
      ops = models = sampling = sample_timing = comm = tp = false, torture_seconds = 0, attention_timing = true;
    else {
      std::fprintf(stderr,
                   "usage: troupe_gpu_check [--data DIR] [--seed N] [--no-ops] [--no-models] [--no-timing] "
                   "[--torture-seconds S] [--no-comm] [--no-tp] [--only-4-bit] [--sampling | --sampling-quick | "
                   "--sampling-timing | --torture | --comm | --tp | --models | --fp8-kv | --fp8-weights | --fp8-decode-timing | --attention-timing | --fp8-silu | --fp8-kv-f16 | --int4 | "
                   "--custom-all-reduce | --custom-all-reduce-mpi]\n");
      return 2;
    }
  }
  rng.seed(seed);
  if (custom_all_reduce_mpi) {
    try {
      return check_custom_all_reduce_mpi(seed);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "troupe_gpu_check --custom-all-reduce-mpi: %s\n", e.what());
      return 1;
    }
  }
  const bool custom_all_reduce = comm || only_custom_all_reduce;
  try {
    cuda_ops gpu;
    std::printf("device: %s\n", gpu.device_description().c_str());
    if (fp8_decode_timing) guarded("fp8 decode timings", [&] { time_fp8_decode_timing(gpu); });
    if (attention_timing) guarded("attention timings", [&] { time_ops(gpu, true); });
    if (fp8_silu)
      for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) check_fp8_silu_ops(gpu, t);
    if (fp8_kv_f16)
      for (dtype t : {dtype::bf16, dtype::f16}) check_fp8_kv_f16_ops(gpu, t);
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) {
      if (!ops) break;
      if (only_int4) {
        check_int4_ops(gpu, t);
        guarded("op rows", [&] { check_op_rows(gpu, t, false, false, true); });
        continue;
      }
      if (only_fp8_kv) check_fp8_kv_ops(gpu, t);
      else if (only_fp8_weights) check_fp8_weight_ops(gpu, t);
      else check_ops(gpu, t);
      guarded("op rows", [&] { check_op_rows(gpu, t, only_fp8_kv, only_fp8_weights); });
    }
    if (ops && !only_fp8_kv && !only_fp8_weights && !only_int4) guarded("argmax", [&] { check_argmax(gpu); });
    if (sampling) guarded("sample", [&] { check_sampling(gpu, quick_sampling); });
    if (comm) guarded("communicators", [&] { check_communicators(gpu); });
    if (custom_all_reduce) guarded("custom all-reduce", [&] { check_custom_all_reduce(); });
    std::vector<fs::path> dirs;  // the reference models
    if (models || tp) {
      for (const auto& e : fs::directory_iterator(data))
        if (fs::exists(e.path() / "reference.json") &&
            (!only_4_bit || troupe::testing::is_4_bit_reference(e.path().filename().string())))
          dirs.push_back(e.path());
      std::sort(dirs.begin(), dirs.end());
      if (dirs.empty()) results.push_back({"models", "-", "no reference models under " + data.string(), INFINITY, 0, false, false, {}});
    }
    if (models)
      for (const auto& dir : dirs)
        for (dtype t : {dtype::f32, dtype::bf16}) {
          const bool four_bit = troupe::testing::is_4_bit_reference(dir.filename().string());
          if (!only_fp8_kv && !only_fp8_weights)
            guarded(("model " + dir.filename().string()).c_str(), [&] { check_model(gpu, dir, t); });
          if (!four_bit && !only_fp8_weights)
            guarded(("model " + dir.filename().string() + " fp8 kv").c_str(), [&] { check_model_fp8_kv(gpu, dir, t); });
          if (!four_bit && !only_fp8_kv)
            guarded(("model " + dir.filename().string() + " fp8 weights").c_str(), [&] { check_model_fp8_weights(gpu, dir, t); });
          if (!four_bit)
            guarded(("model " + dir.filename().string() + " fp8 torch").c_str(),
                    [&] { check_model_fp8_torch(gpu, dir, t, !only_fp8_weights, !only_fp8_kv); });
        }
    if (models && !only_fp8_kv && !only_fp8_weights) guarded("model int4 paths", [&] { check_model_int4_paths(gpu); });
    if (models && !only_fp8_kv && !only_4_bit) guarded("model fp8 paths", [&] { check_model_fp8_paths(gpu); });
    if (tp)
      for (const auto& dir : dirs)
        guarded(("tp " + dir.filename().string()).c_str(), [&] { check_tensor_parallel(dir); });
    if (torture_seconds > 0 && fs::exists(data / "llama_f32"))
      guarded("engine torture", [&] { check_torture(gpu, data, seed, torture_seconds); });
    if (timing && ops && only_int4) guarded("int4 timings", [&] { time_int4(gpu); });
    if (timing && ops && !only_fp8_weights && !only_int4) guarded("timings", [&] { time_ops(gpu, only_fp8_kv); });
    if (timing && ops && !only_fp8_kv && !only_int4) guarded("fp8 weight timings", [&] { time_fp8_weights(gpu); });
    if (timing && sample_timing) guarded("sample timings", [&] { time_sampling(gpu); });
    if (timing && comm) guarded("communicator timings", [&] { time_communicators(gpu); });
    if (timing && custom_all_reduce) guarded("custom all-reduce timings", [&] { time_custom_all_reduce(); });
    if (timing && tp) {
      // The bundle keeps the shape beside the reference models (bundle/data/); the repository in scripts/gpu/.
      fs::path shape;
      for (const fs::path& p : {data.parent_path() / "qwen2.5-7b-shape", fs::path("scripts/gpu/qwen2.5-7b-shape")})
        if (shape.empty() && fs::exists(p / "config.json")) shape = p;
      if (shape.empty())
        results.push_back({"tp timings", "-", "no qwen2.5-7b-shape/config.json beside " + data.string() + " or in scripts/gpu",
                           INFINITY, 0, false, false, {}});
      else
        guarded("tp timings", [&] { time_tensor_parallel(shape); });
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_gpu_check: %s\n", e.what());
    print_table();
    return 1;
  }
  print_table();
  for (const auto& r : results)
    if (!r.pass) return 1;
  return 0;
}
