#pragma once
// Shared by the parts of troupe_gpu_check (tools/gpu_check*.cpp): the results table, the random
// source and the timer. NEEDS A GPU to run.

#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/custom_all_reduce_rules.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
#include "runtime/engine/step_input.hpp"
#include "tests/support/scoped_value.hpp"

namespace troupe {
class model;
struct model_config;
}

namespace gpu_check {

extern std::mt19937_64 rng;

// A checked result: passes when error <= tolerance (and is finite).
void report(std::string op, troupe::dtype t, std::string shape, double error, double tolerance, std::string note = {});
// A timing or a count that never fails.
void inform(std::string op, troupe::dtype t, std::string shape, std::string note);
// Median wall time of f over `reps` runs (after one warm-up), synchronizing after each: what a caller that waits
// for each result pays, launch and synchronization (~10 us on an H100) included.
double time_ms(troupe::cuda_ops& gpu, const std::function<void()>& f, int reps = 20);
// The time of one f inside a stream of them: `calls` back to back and one synchronization, divided by `calls`;
// the median of `trials` such runs (after a warm-up). What a kernel costs inside a step, where the next launch
// is queued while it runs (the launch and the wait of time_ms hidden), for the op timings.
double stream_ms(troupe::cuda_ops& gpu, const std::function<void()>& f, int calls = 5, int trials = 5);
// Runs f; an exception it throws becomes a failed row named `what`, and the checks go on.
void guarded(const char* what, const std::function<void()>& f);

// Ends the process (exit code 3) with a message naming `what` unless destroyed within `seconds`: a rank that
// fails inside a collective leaves the others waiting at a barrier for good, and must not hold the GPU session.
class watchdog {
public:
  watchdog(std::string what, double seconds);
  ~watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

private:
  struct state;
  std::unique_ptr<state> state_;
};
using bytes = std::vector<std::byte>;
// `n` random values in `t` (normal, scale 4, from rng), as the bytes the tensor holds.
bytes random_bits(troupe::dtype t, int64_t n);
// Bytes no correct result holds (NaN in every floating dtype), so an element never written fails.
bytes poison(size_t n);
// Elements of `elem` bytes that differ between a and b.
int64_t differing_elements(const bytes& a, const bytes& b, size_t elem);

// "2x3x4": a shape for the table.
std::string dims(std::initializer_list<int64_t> d);
// bf16/f16 attention on the CUDA-core kernel (on) or the tensor cores (off).
void set_simt_attention(bool on);

// tools/gpu_check_ops.cpp: rows, norms, linear, silu_and_mul, rope_write_kv and paged attention in `t`
// against the CPU twins, each guarded; argmax (f32 logits) exactly.
void check_ops(troupe::cuda_ops& gpu, troupe::dtype t);
// The FP8 KV cache (issue 13; part of check_ops): rope_write_kv must write the CPU's bytes, paged attention
// over the same codes must agree, both formats, scales of 1.0 and not, activations in `t`.
void check_fp8_kv_ops(troupe::cuda_ops& gpu, troupe::dtype t);
// Only the FP8 cache's F16 attention form (troupe_gpu_check --fp8-kv-f16).
void check_fp8_kv_f16_ops(troupe::cuda_ops& gpu, troupe::dtype t);
void check_argmax(troupe::cuda_ops& gpu);
// FP8 weights (issue 13; part of check_ops): linear_fp8 against the CPU twin, rows 1 to 300, with a bias and a
// static input scale, on each GEMM path the shape allows, activations in `t`.
void check_fp8_weight_ops(troupe::cuda_ops& gpu, troupe::dtype t);
// linear_fp8_silu's rows alone (troupe_gpu_check --fp8-silu; also part of check_fp8_weight_ops).
void check_fp8_silu_ops(troupe::cuda_ops& gpu, troupe::dtype t);
// Only linear_int4's rows (--int4).
void check_int4_ops(troupe::cuda_ops& gpu, troupe::dtype t);

// tools/gpu_check_models.cpp: the reference model in `dir` (with reference.json) in `t` against
// transformers; a 4-bit reference (tests/support/quantized_reference.hpp) with its weights packed on the GPU.
void check_model(troupe::cuda_ops& gpu, const std::filesystem::path& dir, troupe::dtype t);

// The reference model in `dir` with an FP8 KV cache on the GPU (activations in `t`) against the CPU twin with
// the same cache (f32 activations): last logits, chunked prefill over the cached prefix, greedy decoding
// through the decode graphs.
void check_model_fp8_kv(troupe::cuda_ops& gpu, const std::filesystem::path& dir, troupe::dtype t);
// tools/gpu_check_models.cpp: a random 4-bit model with K a multiple of 128 on each 4-bit path (GEMM, ring kernels)
// against its CPU twin.
void check_model_int4_paths(troupe::cuda_ops& gpu);
// FP8 weights on each GEMM path (cuBLASLt, the warpgroup-MMA GEMM) at K the wgmma GEMM takes, against the CPU twin.
void check_model_fp8_paths(troupe::cuda_ops& gpu);

// The reference model in `dir` with FP8 weights on the GPU (activations in `t`) against the CPU twin with the same
// weights (f32 activations): --quantization fp8 (per-channel scales made at load, dynamic activations), and a
// compressed-tensors copy with per-tensor scales and static activations; last logits, chunked prefill, greedy
// decoding through the decode graphs.
void check_model_fp8_weights(troupe::cuda_ops& gpu, const std::filesystem::path& dir, troupe::dtype t);

// The reference model in `dir` on the GPU (activations in `t`) with FP8 weights, an FP8 KV cache and both against
// torch's logits of the same rounding (<dir>/reference_fp8.json, scripts/gpu/make_fp8_references.py; a failed row
// where the folder has none): the variants with an FP8 cache when `kv`, those with FP8 weights when `weights`.
void check_model_fp8_torch(troupe::cuda_ops& gpu, const std::filesystem::path& dir, troupe::dtype t, bool kv, bool weights);

// What a reference model's logits in `t` may differ from transformers' (relative): fp32 1e-4 as on the CPU, or
// with 4-bit weights issue 12's 1e-3 (the reference ran on the dequantized weights); bf16 3e-2, as bf16 weights
// and activations land near 1e-2 on the small models.
double model_tolerance(troupe::dtype t, const troupe::model_config& config);

// tools/gpu_check_timings.cpp: informative timings at Qwen2.5-7B shapes (only_attention: the attention
// rows alone, bf16 and FP8 caches).
void time_ops(troupe::cuda_ops& gpu, bool only_attention = false);
// linear_int4 at Qwen2.5-7B shapes on each kernel and variant (part of time_ops; --int4 runs it alone).
void time_int4(troupe::cuda_ops& gpu);
// linear_fp8 gate_up at Qwen2.5-7B shapes, 1, 8, 256 and 4096 rows, beside the bf16 linear.
void time_fp8_weights(troupe::cuda_ops& gpu);
// The FP8 decode products alone (--fp8-decode-timing): 256 rows on cuBLASLt and the wgmma GEMM, one row with and
// without the quantizer inside the GEMV.
void time_fp8_decode_timing(troupe::cuda_ops& gpu);

// tools/gpu_check_sampling.cpp: the CUDA sample op against sample_cpu; quick keeps to small vocabularies.
void check_sampling(troupe::cuda_ops& gpu, bool quick);
// Sample op timings at 256 rows of Qwen2.5's 152,064-token vocabulary.
void time_sampling(troupe::cuda_ops& gpu);

// ‖a − b‖ / ‖b‖; infinity when a holds a NaN or infinity.
double relative_error(std::span<const float> a, std::span<const float> b);
// What a check of `t` tolerates: 1e-4 relative in fp32, 1e-2 in bf16 and f16.
double tolerance_for(troupe::dtype t);
// What an f32 FP8 product of inner length k on a path that may accumulate fast (cuBLASLt, the wgmma GEMM) tolerates
// against exact f32 sums of the same codes: 1e-3 (the sums' order), or with fast accumulation
// (cuda::gemm_settings().fp8_fast_accum) 2 · 2^-13 · sqrt(k / 32) where that is more. Hopper's FP8 MMA rounds its running sum to about 13 bits of mantissa once an instruction (k 32); the rounding
// errors of k / 32 instructions add as a random walk. Measured (H100, 2026-12-07): 1.1-1.2e-3 at k 3,584 (bound 2.6e-3),
// 3.1e-3 at 18,944 (bound 5.9e-3); e4m3's own rounding of x and w is 2^-4.
double fp8_gemm_tolerance(int64_t k);

// tools/gpu_check_rows.cpp: every op of tests/support/op_cases.hpp at 0, 1 and 3 rows against the CPU
// (only_fp8_kv: only the cases with an FP8 KV cache; only_fp8_weights: only linear_fp8's).
void check_op_rows(troupe::cuda_ops& gpu, troupe::dtype t, bool only_fp8_kv = false, bool only_fp8_weights = false,
                   bool only_int4 = false);
// The prompt prefilled in chunks whose steps sample nothing, through each model entry point, must give
// the whole prompt's first greedy token. step_of(tokens, cached) builds a one-sequence step.
void check_unsampled_steps(troupe::model& net, const std::string& label, troupe::dtype t, const std::vector<int32_t>& prompt,
                           const std::function<troupe::step_input(const std::vector<int32_t>&, int32_t)>& step_of);

// tools/gpu_check_torture.cpp: the engine torture test's plans from first_seed on, for about `seconds`,
// on the CUDA backend with data/llama_f32 in fp32.
void check_torture(troupe::cuda_ops& gpu, const std::filesystem::path& data, uint64_t first_seed, double seconds);

// tools/gpu_check_comm.cpp: the shared-GPU communicator (2 and 4 ranks on this GPU) against the thread
// communicator's bits, and NCCL's of size 1 (each collective, and inside a CUDA graph).
void check_communicators(troupe::cuda_ops& gpu);
// µs per bf16 all_reduce_sum at 1 and 256 rows of 3584: shared-GPU ranks and NCCL of size 1.
void time_communicators(troupe::cuda_ops& gpu);

// tools/gpu_check_custom_all_reduce.cpp: the custom all-reduce around 2 and 4 ranks sharing this GPU (and NCCL
// ranks one per GPU when there are 2 or more) against the CPU twin's bits, at every size that matters, in a row
// and inside CUDA graphs.
void check_custom_all_reduce();
// us per bf16 all_reduce_sum at [1, 3584] and [256, 3584]: the wrapped communicator alone against the custom kernel.
void time_custom_all_reduce();
// Under mpirun (--custom-all-reduce-mpi): this process as one rank, its peers' buffers through CUDA IPC; prints a
// line per check and returns the exit code (1 when any rank failed one).
int check_custom_all_reduce_mpi(uint64_t seed);
// Every rank's communicator (comms[r] on backends[r]) wrapped in the custom all-reduce, each set up on a thread of
// its own (the set-up is a rendezvous); `why_not` gets why it is off ("" when on).
std::vector<std::unique_ptr<troupe::communicator>> with_custom_all_reduce(std::vector<std::unique_ptr<troupe::communicator>> comms,
                                                                          const std::vector<troupe::ops*>& backends,
                                                                          std::string* why_not = nullptr,
                                                                          const troupe::custom_all_reduce_options& options = {});
// tools/gpu_check_tp.cpp: the reference model in `dir` split over 2 and 4 shards sharing this GPU against
// the whole model (f32 greedy tokens) and transformers (f32 and bf16 logits), and on the sharded path with
// NCCL of size 1 against the whole model (greedy tokens, eagerly and with decode graphs). A 4-bit reference
// keeps each rank's slices packed; a split its groups do not allow must be refused with the flag's error.
void check_tensor_parallel(const std::filesystem::path& dir);
// Decode step time and collective time per step at batch 1 and 256 for the model at `shape_dir` (dummy
// bf16 weights): 2 shards sharing this GPU, and the whole model beside NCCL of size 1.
void time_tensor_parallel(const std::filesystem::path& shape_dir);

// A kernel switch set while it lives (tests/support/scoped_value.hpp).
using troupe::testing::scoped_value;

// linear_int4's FP8 form (int4_fp8_rows()) the four ways the op rows and timings run it: the channels' scales found by
// the kernel (0), given as the loader makes them (1, int4_device_weight::fp8_scale), the fused kernel
// (int4_settings().w4a8, 2), given with the conversion's quotient a weight instead of its table (3, fp8_table off).
inline constexpr const char* kInt4Fp8Forms[] = {" fp8 form", " fp8 form, scales given", " fp8 form fused",
                                               " fp8 form, scales given, quotient"};

} // namespace gpu_check
