// linear through cuBLASLt: out = x · weightᵀ (+ bias) (+ out).
//
// Row-major out [T, N] = x [T, K] · weight [N, K]ᵀ is, read column-major, outᵀ [N, T] = weight [K, N]ᵀ ·
// xᵀ [K, T]: A = weight (transposed), B = x, D = out, with m = N, n = T, k = K and no copies. Compute is
// fp32 for every dtype (CUBLAS_COMPUTE_32F, never the TF32 mode), so fp32 GEMMs match the CPU.
// The bias rides on the epilogue. Plans (descriptors and the heuristic's algorithm) are cached per shape,
// dtype and pointer alignment: the heuristic costs more than a small GEMM.

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/launchers.hpp"

namespace troupe {
namespace {

void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt: ") + what + ": " + cublasLtGetStatusString(s));
}

cudaDataType_t cuda_type(dtype t) {
  switch (t) {
    case dtype::f32: return CUDA_R_32F;
    case dtype::f16: return CUDA_R_16F;
    case dtype::bf16: return CUDA_R_16BF;
    case dtype::f8_e4m3: return CUDA_R_8F_E4M3;
    default: throw std::invalid_argument("cuda linear: expects f32, f16 or bf16 tensors, got " + std::string(name(t)));
  }
}

// The largest power of two, at most 256, that divides the address.
uint16_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return a == 0 ? 256 : static_cast<uint16_t>(std::min<uintptr_t>(256, a & (~a + 1)));
}

// Asks cuBLASLt's heuristic for up to `max` algorithms of `key`, its best guess first (costs far more
// than a small GEMM; on a first use of a kernel CUDA also loads its module). Empty when none fits.
std::vector<cublasLtMatmulAlgo_t> heuristic_algos(cuda_context& ctx, const gemm_plan& plan, const gemm_key& key,
                                                  int max, cublasStatus_t* status);

// The operands of the call that makes a plan, so candidates can be timed on them.
struct gemm_operands {
  const void* weight;
  const void* x;
  const void* bias;
  const void* weight_scales = nullptr;  // FP8 with outer-vector scales: [m] and [n] f32
  const void* x_scales = nullptr;
};

// Of the heuristic's candidates, the fastest on these operands (timed into a scratch output, so the
// call's own output is untouched), if it beats the heuristic's first choice by 3% or more; otherwise,
// or while the stream is being captured into a graph, the first choice. bf16 and f16 only: fp32 keeps
// the heuristic's choice, so its results stay the same from run to run.
cublasLtMatmulAlgo_t fastest(cuda_context& ctx, const gemm_plan& plan, const gemm_key& key,
                             const std::vector<cublasLtMatmulAlgo_t>& candidates, const gemm_operands& ops);

// Split-K variants of the heuristic's first candidates, for fastest() to time beside them, where the output has too few
// tiles to fill the GPU: a 256-row decode step's down_proj ([256, 18944] by [3584, 18944]ᵀ) makes about 56 tiles of
// 128 x 128 for 132 SMs, and ran at 441 TFLOP/s in FP8 where gate_up ran at 883 (H100, W1 profile, 2026-12-05); the
// heuristic's 8 candidates held no split. Each variant splits K in 2, 3 or 4 parts reduced in fp32 in the workspace
// (CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE: the same order on every call) and is kept only if cuBLASLt accepts it for
// this shape within the workspace. fastest() keeps one only where it wins by 3% or more. Written in the ninth session
// of 2026-12-05 after the last GPU call, so off until timed: gemm_settings().split_k, TROUPE_GEMM_SPLIT_K=1 (figures.sh
// VARIANTS=1 runs W1 with it in bf16 and FP8; the GPU check's timings time the decode step's GEMMs both ways).
void add_split_k(cuda_context& ctx, const gemm_plan& plan, const gemm_key& key,
                 std::vector<cublasLtMatmulAlgo_t>& candidates) {
  if (!key.split_k) return;
  const int sms = ctx.sm_count;
  const int64_t tiles = (key.m + 127) / 128 * ((key.n + 127) / 128);
  if (key.ab == dtype::f32 || tiles >= sms) return;
  const size_t first = std::min<size_t>(candidates.size(), 4);
  for (size_t i = 0; i < first; ++i) {
    int32_t supported = 0;
    size_t written = 0;
    if (cublasLtMatmulAlgoCapGetAttribute(&candidates[i], CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &supported,
                                          sizeof(supported), &written) != CUBLAS_STATUS_SUCCESS || supported == 0)
      continue;
    for (const int32_t splits : {2, 3, 4}) {
      if (key.k / splits < 256 || tiles * splits > 4 * sms) continue;
      cublasLtMatmulAlgo_t algo = candidates[i];
      const uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
      if (cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof(splits)) !=
              CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof(scheme)) !=
              CUBLAS_STATUS_SUCCESS)
        continue;
      cublasLtMatmulHeuristicResult_t result{};
      if (cublasLtMatmulAlgoCheck(ctx.lt, plan.desc, plan.a, plan.b, plan.c, plan.c, &algo, &result) ==
              CUBLAS_STATUS_SUCCESS &&
          result.workspaceSize <= ctx.workspace_bytes)
        candidates.push_back(algo);
    }
  }
}

gemm_plan make_plan(cuda_context& ctx, const gemm_key& key, const gemm_operands& operands) {
  gemm_plan plan;
  const cudaDataType_t ab = cuda_type(key.ab), c = cuda_type(key.c);
  check_lt(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)), "transa");
  check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)), "transb");
  if (key.outer_vec_scales) {
    // cuBLAS 12.9+: D[i][j] = scale_A[i] · scale_B[j] · Σ_l A[i][l] B[l][j] for FP8 A and B (the "outer vector"
    // mode); with A the weight, scale_A is per output feature and scale_B per token. The pointers are set
    // again for every call (cublaslt_linear_fp8); the heuristic and the timing below see these.
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)), "A scale mode");
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)), "B scale mode");
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &operands.weight_scales,
                                            sizeof(operands.weight_scales)), "A scale pointer");
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &operands.x_scales,
                                            sizeof(operands.x_scales)), "B scale pointer");
  }
  if (key.fast_accum) {
    const int8_t fast = 1;
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)), "fast accum");
  }
  if (key.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
             "epilogue");
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &c, sizeof(c)), "bias type");
  }
  check_lt(cublasLtMatrixLayoutCreate(&plan.a, ab, static_cast<uint64_t>(key.k), static_cast<uint64_t>(key.m), key.k),
           "layout A");
  check_lt(cublasLtMatrixLayoutCreate(&plan.b, ab, static_cast<uint64_t>(key.k), static_cast<uint64_t>(key.n), key.k),
           "layout B");
  check_lt(cublasLtMatrixLayoutCreate(&plan.c, c, static_cast<uint64_t>(key.m), static_cast<uint64_t>(key.n), key.m),
           "layout C");

  // The algorithm comes from the heuristic run once per token-count bucket (small counts exact, then
  // powers of two): a step's token count varies from step to step, and asking for each count anew cost
  // milliseconds per new shape (seen on the H100 in the profile, 2026-11-25). The bucket's algorithm is
  // checked against this exact shape and the heuristic asked again only if it does not fit.
  gemm_key bucket = key;
  bucket.n = key.n <= 16 ? key.n : static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(key.n)));
  cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
  auto cached = ctx.bucket_algos.find(bucket);
  bool ok = false;
  if (cached != ctx.bucket_algos.end()) {
    cublasLtMatmulHeuristicResult_t check_result{};
    ok = cublasLtMatmulAlgoCheck(ctx.lt, plan.desc, plan.a, plan.b, plan.c, plan.c, &cached->second, &check_result) ==
             CUBLAS_STATUS_SUCCESS &&
         check_result.workspaceSize <= ctx.workspace_bytes;
    if (ok) plan.algo = cached->second;
  }
  if (!ok && bucket.n != key.n && cached == ctx.bucket_algos.end()) {
    gemm_plan probe;
    probe.desc = plan.desc;
    check_lt(cublasLtMatrixLayoutCreate(&probe.a, cuda_type(key.ab), static_cast<uint64_t>(key.k),
                                        static_cast<uint64_t>(key.m), key.k), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&probe.b, cuda_type(key.ab), static_cast<uint64_t>(key.k),
                                        static_cast<uint64_t>(bucket.n), key.k), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&probe.c, cuda_type(key.c), static_cast<uint64_t>(key.m),
                                        static_cast<uint64_t>(bucket.n), key.m), "layout C");
    const auto found = heuristic_algos(ctx, probe, bucket, 1, &s);
    cublasLtMatrixLayoutDestroy(probe.a);
    cublasLtMatrixLayoutDestroy(probe.b);
    cublasLtMatrixLayoutDestroy(probe.c);
    if (!found.empty()) {
      const cublasLtMatmulAlgo_t algo = found.front();
      ctx.bucket_algos.emplace(bucket, algo);
      cublasLtMatmulHeuristicResult_t check_result{};
      ok = cublasLtMatmulAlgoCheck(ctx.lt, plan.desc, plan.a, plan.b, plan.c, plan.c, &algo, &check_result) ==
               CUBLAS_STATUS_SUCCESS &&
           check_result.workspaceSize <= ctx.workspace_bytes;
      if (ok) plan.algo = algo;
    }
  }
  if (!ok) {
    auto candidates = heuristic_algos(ctx, plan, key, key.candidates, &s);
    ok = !candidates.empty();
    if (ok) {
      add_split_k(ctx, plan, key, candidates);
      plan.algo = fastest(ctx, plan, key, candidates, operands);
    }
    if (ok && bucket.n == key.n) ctx.bucket_algos.emplace(bucket, plan.algo);
  }
  if (!ok) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.desc);
    throw std::runtime_error("cuBLASLt: no algorithm for a " + std::to_string(key.n) + "x" + std::to_string(key.k) +
                             " by " + std::to_string(key.m) + "x" + std::to_string(key.k) + "ᵀ " +
                             std::string(name(key.ab)) + " product" + (s != CUBLAS_STATUS_SUCCESS ? std::string(": ") +
                             cublasLtGetStatusString(s) : std::string()));
  }
  return plan;
}

std::vector<cublasLtMatmulAlgo_t> heuristic_algos(cuda_context& ctx, const gemm_plan& plan, const gemm_key& key,
                                                  int max, cublasStatus_t* status) {
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "preference");
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, uint32_t v) {
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v)), "preference attribute");
  };
  const uint64_t ws = ctx.workspace_bytes;
  check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
           "workspace preference");
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c);
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(max));
  int found = 0;
  const cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(ctx.lt, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, max, results.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  *status = s;
  std::vector<cublasLtMatmulAlgo_t> algos;
  if (s != CUBLAS_STATUS_SUCCESS) return algos;
  for (int i = 0; i < found; ++i)
    if (results[static_cast<size_t>(i)].state == CUBLAS_STATUS_SUCCESS) algos.push_back(results[static_cast<size_t>(i)].algo);
  return algos;
}

cublasLtMatmulAlgo_t fastest(cuda_context& ctx, const gemm_plan& plan, const gemm_key& key,
                             const std::vector<cublasLtMatmulAlgo_t>& candidates, const gemm_operands& ops) {
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (candidates.size() < 2 || key.ab == dtype::f32 ||
      cudaStreamIsCapturing(ctx.stream, &capturing) != cudaSuccess || capturing != cudaStreamCaptureStatusNone)
    return candidates.front();
  const size_t out_bytes = static_cast<size_t>(key.m * key.n) * size_in_bytes(key.c);
  void* scratch = nullptr;
  if (cudaMalloc(&scratch, out_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return candidates.front();
  }
  cuda::check(cudaMemsetAsync(scratch, 0, out_bytes, ctx.stream), "GEMM tuning scratch");
  cudaEvent_t start = nullptr, stop = nullptr;
  cuda::check(cudaEventCreate(&start), "GEMM tuning event");
  cuda::check(cudaEventCreate(&stop), "GEMM tuning event");
  if (key.bias)
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ops.bias, sizeof(ops.bias)),
             "bias pointer");
  const float alpha = 1.0f, beta = key.accumulate ? 1.0f : 0.0f;
  auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(ctx.lt, plan.desc, &alpha, ops.weight, plan.a, ops.x, plan.b, &beta, scratch, plan.c, scratch,
                          plan.c, &algo, ctx.workspace, ctx.workspace_bytes, ctx.stream);
  };
  std::vector<float> ms(candidates.size(), -1.0f);
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (run(candidates[i]) != CUBLAS_STATUS_SUCCESS) continue;  // warm: module loading, caches
    constexpr int reps = 3;
    cuda::check(cudaEventRecord(start, ctx.stream), "GEMM tuning event");
    bool ok = true;
    for (int r = 0; r < reps && ok; ++r) ok = run(candidates[i]) == CUBLAS_STATUS_SUCCESS;
    cuda::check(cudaEventRecord(stop, ctx.stream), "GEMM tuning event");
    cuda::check(cudaEventSynchronize(stop), "GEMM tuning");
    float t = 0;
    cuda::check(cudaEventElapsedTime(&t, start, stop), "GEMM tuning");
    if (ok) ms[i] = t / reps;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cuda::check(cudaFree(scratch), "GEMM tuning scratch");
  size_t best = 0;
  for (size_t i = 1; i < candidates.size(); ++i)
    if (ms[i] > 0 && (ms[best] <= 0 || ms[i] < ms[best])) best = i;
  if (ms[0] > 0 && ms[best] > 0.97f * ms[0]) best = 0;  // not worth leaving the heuristic's choice
  return candidates[best];
}

} // namespace

cuda::gemm_switches& cuda::gemm_settings() {
  static gemm_switches s{[] {
                           const char* v = std::getenv("TROUPE_GEMM_SPLIT_K");
                           return v && *v && *v != '0';
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_GEMM_CANDIDATES");
                           return v && *v ? std::clamp(std::atoi(v), 1, 64) : 8;
                         }(),
                         [] {
                           const char* v = std::getenv("TROUPE_GEMM_FP8_FAST_ACCUM");
                           return !(v && *v == '0');
                         }()};
  return s;
}

namespace {
// gemm_settings().candidates as a plan's key holds it: 1 to 64 (a check may set any value).
uint8_t timed_candidates() { return static_cast<uint8_t>(std::clamp(cuda::gemm_settings().candidates, 1, 64)); }
} // namespace

void cublaslt_linear(cuda_context& ctx, const tensor& x, const tensor& weight, const tensor& bias, const tensor& out,
                     bool accumulate) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (weight.dim(1) != k || out.dim(0) != rows || out.row_elems() != n || (!bias.empty() && bias.numel() != n))
    throw std::invalid_argument("cuda linear: x " + cuda::shape_of(x) + ", weight " + cuda::shape_of(weight) +
                                ", output " + cuda::shape_of(out) + " disagree");
  if (x.type != weight.type) throw std::invalid_argument("cuda linear: x and weight must share a dtype");
  if (!bias.empty() && bias.type != out.type) throw std::invalid_argument("cuda linear: bias must have the output's dtype");
  if (rows == 0) return;

  gemm_key key;
  key.m = n;
  key.n = rows;
  key.k = k;
  key.ab = x.type;
  key.c = out.type;
  key.bias = !bias.empty();
  key.accumulate = accumulate;
  key.split_k = cuda::gemm_settings().split_k;
  key.candidates = timed_candidates();
  key.align_a = alignment(weight.data);
  key.align_b = alignment(x.data);
  key.align_c = alignment(out.data);
  key.align_bias = key.bias ? alignment(bias.data) : 0;
  auto it = ctx.plans.find(key);
  if (it == ctx.plans.end()) it = ctx.plans.emplace(key, make_plan(ctx, key, {weight.data, x.data, bias.data})).first;
  gemm_plan& plan = it->second;
  if (key.bias) {
    const void* ptr = bias.data;
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr, sizeof(ptr)),
             "bias pointer");
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_lt(cublasLtMatmul(ctx.lt, plan.desc, &alpha, weight.data, plan.a, x.data, plan.b, &beta, out.data, plan.c,
                          out.data, plan.c, &plan.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream),
           "matmul");
}

bool cublaslt_linear_fp8(cuda_context& ctx, const tensor& xq, const tensor& weight, const float* weight_scales,
                         const float* x_scales, const tensor& bias, const tensor& out) {
  const int64_t rows = xq.dim(0), k = xq.dim(1), n = weight.dim(0);
  if (xq.type != dtype::f8_e4m3 || weight.type != dtype::f8_e4m3 || weight.dim(1) != k || out.dim(0) != rows ||
      out.row_elems() != n || (!bias.empty() && (bias.numel() != n || bias.type != out.type)) ||
      (weight_scales == nullptr) != (x_scales == nullptr))
    throw std::invalid_argument("cuda linear_fp8 GEMM: x " + cuda::shape_of(xq) + ", weight " + cuda::shape_of(weight) +
                                ", output " + cuda::shape_of(out) + " disagree");
  if (rows == 0) return true;
  gemm_key key;
  key.m = n;
  key.n = rows;
  key.k = k;
  key.ab = dtype::f8_e4m3;
  key.c = out.type;
  key.bias = !bias.empty();
  key.outer_vec_scales = weight_scales != nullptr;
  key.split_k = cuda::gemm_settings().split_k;
  key.fast_accum = cuda::gemm_settings().fp8_fast_accum;
  key.candidates = timed_candidates();
  key.align_a = alignment(weight.data);
  key.align_b = alignment(xq.data);
  key.align_c = alignment(out.data);
  key.align_bias = key.bias ? alignment(bias.data) : 0;
  if (ctx.fp8_refused.count(key)) return false;
  auto it = ctx.plans.find(key);
  if (it == ctx.plans.end()) {
    try {
      it = ctx.plans.emplace(key, make_plan(ctx, key, {weight.data, xq.data, bias.data, weight_scales, x_scales})).first;
    } catch (const std::runtime_error&) {  // no algorithm: the caller takes another path
      ctx.fp8_refused.insert(key);
      return false;
    }
  }
  gemm_plan& plan = it->second;
  if (key.bias) {
    const void* ptr = bias.data;
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ptr, sizeof(ptr)), "bias pointer");
  }
  if (key.outer_vec_scales) {
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &weight_scales,
                                            sizeof(weight_scales)), "A scale pointer");
    check_lt(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scales, sizeof(x_scales)),
             "B scale pointer");
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = cublasLtMatmul(ctx.lt, plan.desc, &alpha, weight.data, plan.a, xq.data, plan.b, &beta, out.data,
                                          plan.c, out.data, plan.c, &plan.algo, ctx.workspace, ctx.workspace_bytes, ctx.stream);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE) {  // a refusal, before any launch
    ctx.fp8_refused.insert(key);
    return false;
  }
  check_lt(s, "FP8 matmul");
  return true;
}

} // namespace troupe
