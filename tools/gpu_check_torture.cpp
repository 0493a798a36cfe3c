// troupe_gpu_check, part 5: the engine torture test's plans (tests/support/torture.hpp) on the CUDA
// backend for a bounded time: the same generator, invariants and shrinker as in CI, with the reference
// model llama_f32 in fp32, plain, with an FP8 KV cache and with rtn 4-bit weights. NEEDS A GPU.
//
// Greedy outputs are not compared with the same request run alone here, as they are on the CPU: the
// GEMMs pick their cuBLASLt algorithm per token-count bucket (kernels/cuda/linear.cpp), so a row's
// logits depend on how many rows share its step, by rounding; a near-tie can then flip and the whole
// continuation differs, correctly. Instead each greedy token must be the best of the CPU reference's
// logits for the same history (teacher-forced), within 1e-3 of the row's largest magnitude. Seeded
// sampled requests get every other check (the KV each step reads, block counts, finish reasons, ...).

#include <cmath>
#include <cstdio>
#include <string>

#include "kernels/cpu/cpu_ops.hpp"
#include "tests/support/torture.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace gpu_check {

namespace {

// One form of llama_f32 on the GPU against the same form on the CPU for `seconds`; a row in the results.
void torture_form(cuda_ops& gpu, const fs::path& dir, const char* name, const torture::model_room& room,
                  uint64_t first_seed, double seconds) {
  torture::checkpoint_models on_gpu(gpu, dir, dtype::f32, room);
  // The reference computes one sequence of up to max_model_len tokens in one step, in the same form.
  cpu_ops cpu;
  torture::model_room one_sequence = room;
  one_sequence.max_num_batched_tokens = room.max_model_len;
  one_sequence.max_num_seqs = 1;
  one_sequence.max_kv_tokens = room.max_model_len + 64;
  torture::checkpoint_models on_cpu(cpu, dir, dtype::f32, one_sequence);

  torture::backend b = on_gpu.make_backend(std::string("cuda llama_f32") + name, {16, 16, 8, 32});
  b.reference_for = [&](int32_t block_size) { return on_cpu.get(block_size); };
  b.argmax_tolerance = 1e-3f;
  torture::harness h(b);
  const auto budget = std::chrono::seconds(static_cast<int64_t>(seconds));
  const torture::soak_result r = torture::soak(h, first_seed, INT64_MAX, budget, false, std::chrono::seconds(120));
  const torture::run_stats& s = r.stats;
  char shape[160];
  std::snprintf(shape, sizeof shape, "llama_f32%s, %lld plans from seed %llu, %lld steps, %lld requests", name,
                static_cast<long long>(r.num_plans), static_cast<unsigned long long>(first_seed),
                static_cast<long long>(s.num_steps), static_cast<long long>(s.num_requests));
  char note[200];
  std::snprintf(note, sizeof note, "%lld aborted, %lld stopped, %lld greedy checked against the CPU, %lld preemptions",
                static_cast<long long>(s.num_aborted), static_cast<long long>(s.num_stopped),
                static_cast<long long>(s.num_compared), static_cast<long long>(s.num_preemptions));
  report("engine torture", dtype::f32, shape, r.failure.empty() ? 0 : INFINITY, 0, note);
  if (!r.failure.empty()) std::printf("%s\n", r.failure.c_str());
}

} // namespace

// Half the time on plain f32 weights and cache; a quarter each on an FP8 (e4m3) KV cache and on rtn 4-bit
// weights, against the CPU twin of the same form. Both stay within f32 noise of their twin: the cache's codes
// use a static scale and the 4-bit weights dequantize exactly, so no near-tie code flips and cascades, as FP8
// activations' dynamic scales do (tools/gpu_check_models.cpp), which is why FP8 weights are not among them.
void check_torture(cuda_ops& gpu, const fs::path& data, uint64_t first_seed, double seconds) {
  const fs::path dir = data / "llama_f32";
  torture::model_room plain, fp8_kv, rtn;
  fp8_kv.kv_cache_type = dtype::f8_e4m3;
  rtn.quantization = "rtn";
  torture_form(gpu, dir, "", plain, first_seed, seconds / 2);
  torture_form(gpu, dir, " kv=fp8_e4m3", fp8_kv, first_seed + 1000, seconds / 4);
  torture_form(gpu, dir, " rtn", rtn, first_seed + 2000, seconds / 4);
}

} // namespace gpu_check
