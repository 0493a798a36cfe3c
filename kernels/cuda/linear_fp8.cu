// ops::linear_fp8: W8A8 FP8 (kernels/ops.hpp, fp8_device_weight), as vLLM's Fp8LinearOp runs it.
//
// 1. fp8_quantize_rows_kernel: one block per token finds max|x|, takes its scale (or the static one) and writes
//    the token's e4m3 codes and scale to ctx's scratch; the same f32 division and rounding as the CPU twin
//    (fp8_formats.hpp), so both hold the same codes.
// 2. The product, by the first path that takes the shape:
//    gemv      one row of a weight of kGemvChosenBytes or more (gate_up, down; fp8_settings().gemv), forced up to
//              kGemvRows: one warp per output feature streams its weight row in 512-byte runs and sums exact e4m3
//              products in f32 on the CUDA cores, as simt does but with whole 16-byte loads, several in flight a lane.
//              Where K is long (fp8_settings().gemv_split, off by default), fp8_gemv_split_kernel ("gemv_split"):
//              a block an output, every load of its row in flight at once.
//    mma       up to kMmaChosenRows (8) rows (decode: bandwidth-bound; forced, up to 32) with K a multiple of 16:
//              fp8_mma_kernel streams every weight byte once and multiplies on the tensor cores (mma.sync
//              m16n8k32 e4m3, fp32 accumulators), no conversion of either operand; the scales and the bias
//              after the sum, as "epilogue" applies them. Where N >= K, fp8_mma_async_kernel ("mma_async"), the
//              same with the weights staged through shared memory by cp.async (fp8_settings().mma_async).
//    outer     cuBLASLt's FP8 GEMM (e4m3 A and B, fp32 accumulation, TN as linear.cpp lays every GEMM out) with
//              both scales in its epilogue: CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F (cuBLAS 12.9+) multiplies
//              output (n, t) by weight scale n and token scale t; the bias rides on the epilogue too, and the
//              output is rounded once. The per-tensor A/B_SCALE_POINTER of older cuBLASLt cannot hold per-channel
//              or per-token scales.
//              Where it takes the scales but not the bias beside them, the bias follows in a kernel of its
//              own ("outer+bias").
//    epilogue  where cuBLASLt refuses vector scales: the FP8 GEMM's unscaled sums into the output itself
//              (bf16, f32; f16 into f32 scratch, its range too small for them), then a kernel that applies the
//              scales and the bias in place and rounds to the output dtype: bf16 outputs are rounded twice (within
//              one unit of the last place of the twin's single rounding), which halves the bytes of the f32 round
//              trip (gate_up at 4,096 rows, forced: H100 1.100 ms in place against "outer"'s 0.958;
//              H200, the day before, 1.393 ms through f32 scratch against "outer"'s 0.887).
//    simt      shapes cuBLASLt's FP8 kernels do not take (K or N not a multiple of 16, unaligned pointers): one
//              warp per output element on the CUDA cores. Correct for any shape, slow; the reference checkpoints'
//              small layers and odd test shapes.
// The tensor-core paths (mma, outer, epilogue) accumulate with less than f32's precision (Hopper's FP8 products:
// about 1e-4 from exact sums); simt sums exactly, as the CPU twin does.
//    wgmma     (fp8_settings().wgmma, off by default: 1 where its tiles are fewer than the SMs, 2 everywhere) more than
//              8 rows with K a multiple of 128: fp8_wgmma_kernel
//              (linear_fp8_wgmma.cu), warpgroup MMA with both operands' codes in shared memory, K split where the
//              output tiles are fewer than the SMs.
// TROUPE_FP8_GEMM=gemv|gemv_split|mma|mma_async|wgmma|outer|epilogue|simt forces a path (troupe_gpu_check runs each against the CPU twin).
// Before all of them, for one row where fp8_settings().qgemv asks (off by default), or forced by TROUPE_FP8_GEMM=qgemv:
//    qgemv     no quantizer kernel: fp8_qgemv_kernel quantizes the row in each block (the same codes), keeps their
//              values in shared memory and runs the GEMV's loop over them, the same output bits as "gemv".
// and for steps of at most fp8_w16_rows() rows (runtime/model/fp8_formats.hpp; 0, never, by default), or
// forced by TROUPE_FP8_GEMM=w16:
//    w16       no quantizer: fp8_w16_gemv_kernel multiplies the codes by x itself (W8A16), the GEMV's layout.
//              Written in the eleventh session (2026-12-06) with no GPU to time it: off until a one-request run shows
//              the four quantizer launches a layer it removes were worth more than the wider x loads cost. On the CPU
//              twin its next-token distributions sit nearer the unquantized model's than W8A8's (mean KL 0.0008-0.0014
//              nats against 0.0013-0.0020, fp8_weights_test), but a request's tokens then depend on its batch (the CPU
//              engine torture's FP8 test fails with it on).

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/fp8_dot.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/fp8_output.cuh"
#include "kernels/cuda/launchers.hpp"
#include "kernels/cuda/mma.cuh"
#include "kernels/fp8_wgmma_rules.hpp"

namespace troupe::cuda {
namespace {

// Row `blockIdx.x` of x [rows, k]: its scale s (static_scale's value, or fp8_activation_scale(max|x|)) into
// scales[row], and codes f32_to_f8_e4m3(x / s) into codes [rows, k] (fp8_activation_code: __fdiv_rn, the IEEE
// quotient the CPU twin computes, whatever the compiler's division flags). N elements a load: 1, element by element
// (any K), or 16 / sizeof(T), 16-byte loads and N-byte stores of codes (K a multiple of N, x 16-byte aligned; the
// launcher checks), the same bytes either way (the GPU check compares them). 16-byte loads where
// fp8_settings().quantize_vec, the default (TROUPE_FP8_QUANTIZE_VEC=0: element by element). H100, 2026-12-05, one row,
// quantization included: down_proj 0.048 -> 0.035 ms, qkv 0.013 -> 0.010, o_proj 0.012 -> 0.009, gate_up 0.055 -> 0.052.
// The scale of row xr (vecs vectors of N values): static_scale's value, or fp8_activation_scale(max|x|) over the block.
template <class T, int N>
__device__ __forceinline__ float fp8_row_scale(const T* __restrict__ xr, int64_t vecs, const float* __restrict__ static_scale) {
  if (static_scale) return *static_scale;
  float amax = 0.0f;
  for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
    const vec<T, N> v = load_vec<T, N>(xr + N * i);
#pragma unroll
    for (int e = 0; e < N; ++e) amax = fmaxf(amax, fabsf(to_float(v.v[e])));
  }
  return fp8_activation_scale(block_max(amax));
}

template <class T, int N>
__global__ void fp8_quantize_rows_kernel(const T* __restrict__ x, int64_t k, const float* __restrict__ static_scale,
                                         uint8_t* __restrict__ codes, float* __restrict__ scales) {
  pdl_launch_dependents();  // the GEMV after may start streaming its weights; it waits for these codes
  pdl_wait();               // x is the kernel before's output
  const int64_t row = blockIdx.x, vecs = k / N;
  const T* xr = x + row * k;
  const float s = fp8_row_scale<T, N>(xr, vecs, static_scale);
  if (threadIdx.x == 0) scales[row] = s;
  uint8_t* out = codes + row * k;
  for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
    const vec<T, N> v = load_vec<T, N>(xr + N * i);
    vec<uint8_t, N> c;
#pragma unroll
    for (int e = 0; e < N; ++e) c.v[e] = fp8_activation_code(to_float(v.v[e]), s);
    store_vec(out + N * i, c);
  }
}

// out[t][j] = acc[t][j] · (x_scales[t] · w_scales[j]) (+ bias[j]), rounded once to T.
template <class T>
__global__ void fp8_scale_kernel(const float* __restrict__ acc, const float* __restrict__ x_scales,
                                 const float* __restrict__ w_scales, const T* __restrict__ bias, T* __restrict__ out,
                                 int64_t rows, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * n) return;
  out[i] = from_float<T>(fp8_output(acc[i], x_scales, w_scales, bias, i / n, i % n));
}

// The same in place, 8 outputs a thread (n a multiple of 8, out 16-byte aligned): out[t][j] holds the unscaled
// sum, written there by the GEMM in T (bf16: f32's exponent range, so no sum overflows; rounded a second time here).
template <class T>
__global__ void fp8_scale_in_place_kernel(T* __restrict__ out, const float* __restrict__ x_scales,
                                          const float* __restrict__ w_scales, const T* __restrict__ bias, int64_t rows,
                                          int64_t n) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i >= rows * n) return;
  const int64_t t = i / n, j = i % n;
  vec<T, 8> v = load_vec<T, 8>(out + i);
#pragma unroll
  for (int e = 0; e < 8; ++e) v.v[e] = from_float<T>(fp8_output(to_float(v.v[e]), x_scales, w_scales, bias, t, j + e));
  store_vec(out + i, v);
}

// out[t][j] += bias[j], rounded to T.
template <class T>
__global__ void add_bias_kernel(const T* __restrict__ bias, T* __restrict__ out, int64_t rows, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * n) return;
  out[i] = from_float<T>(to_float(out[i]) + to_float(bias[i % n]));
}

// One warp per output element (t, j): the f32 sum of e4m3 products over k, then the scales and the bias.
template <class T>
__global__ void fp8_simt_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales,
                                const uint8_t* __restrict__ w, const float* __restrict__ w_scales,
                                const T* __restrict__ bias, T* __restrict__ out, int64_t rows, int64_t n, int64_t k) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= rows * n) return;
  const int64_t t = warp / n, j = warp % n;
  const uint8_t* xr = xq + t * k;
  const uint8_t* wr = w + j * k;
  float acc = 0.0f;
  for (int64_t i = lane; i < k; i += 32) acc += fp8_decode(xr[i], false) * fp8_decode(wr[i], false);
  acc = warp_sum(acc);
  if (lane == 0) {
    float v = acc * (x_scales[t] * w_scales[j]);
    if (bias) v += to_float(bias[j]);
    out[t * n + j] = from_float<T>(v);
  }
}

// The sum of 16 e4m3 products (w's codes times x's, the same k), each exact in f32: the hardware converts pairs of
// codes to f16 (exact: e4m3 fits f16), then to f32.
__device__ __forceinline__ float dot16_e4m3(const uint4& w, const uint4& x, float acc) {
  const uint32_t ws[4] = {w.x, w.y, w.z, w.w}, xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const __half2_raw wr = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(ws[i] >> (16 * h)), __NV_E4M3);
      const __half2_raw xr = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(xs[i] >> (16 * h)), __NV_E4M3);
      const float2 wf = __half22float2(*reinterpret_cast<const __half2*>(&wr));
      const float2 xf = __half22float2(*reinterpret_cast<const __half2*>(&xr));
      acc = fmaf(wf.x, xf.x, acc);
      acc = fmaf(wf.y, xf.y, acc);
    }
  return acc;
}

constexpr int kGemvWarps = 8;
constexpr int kGemvRows = 4;   // what the kernel takes (TROUPE_FP8_GEMM=gemv); x's loads grow with the rows
// 16-byte loads of its weight row a lane keeps in flight. 8 lost (H100, 2026-12-05, ms at one row, 4 / 8 loads: gate_up
// 0.055 / 0.054, down 0.048 / 0.055, q/k/v 0.014 / 0.015; one request 4.48 / 4.73 ms a token): bytes in flight are not
// the GEMV's bound.
constexpr int kGemvAhead = 4;
// One row takes the GEMV by itself (fp8_settings().gemv < 0) for weights of this many bytes or more. H200, 2026-12-05,
// Qwen2.5-7B shapes, ms at one row, quantization included, gemv / mma / mma_async: gate_up (136 MB) 0.046 / 0.057 /
// 0.047, down (68 MB) 0.043 / 0.047 / 0.058, qkv (16.5 MB) 0.014 / 0.018 / 0.012, o_proj (12.8 MB) 0.013 / 0.013 / 0.012.
constexpr int64_t kGemvChosenBytes = int64_t{32} << 20;
// The longest row fp8_qgemv_kernel takes: its values in shared memory, 4 bytes each (192 KiB: down_proj's 18,944 take 74).
constexpr int64_t kQgemvMaxK = int64_t{48} << 10;

// Output feature j = 8·blockIdx.x + warp for R rows: lane l takes the row's 16-byte chunks l, l + 32, ... (a warp
// reads 512 contiguous bytes a load), kGemvAhead loads ahead, x's codes at the same k from global memory (small,
// cached); f32 sums, a warp sum, then fp8_output. Needs K a multiple of 16 and 16-byte aligned rows (the
// launcher checks).
template <class T, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    fp8_gemv_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales, const uint8_t* __restrict__ w,
                    const float* __restrict__ w_scales, const T* __restrict__ bias, T* __restrict__ out, int rows, int n,
                    int k) {
  const int lane = threadIdx.x % 32, j = blockIdx.x * kGemvWarps + threadIdx.x / 32;
  const int chunks = k / 16;
  const uint8_t* wr = w + static_cast<int64_t>(j < n ? j : 0) * k;
  uint4 ahead[kGemvAhead];
#pragma unroll
  for (int i = 0; i < kGemvAhead; ++i) {
    const int c = lane + 32 * i;
    ahead[i] = j < n && c < chunks ? load_streaming(wr + 16 * c) : make_uint4(0, 0, 0, 0);
  }
  pdl_wait();  // the weights do not depend on the kernel before; the codes and their scales do
  if (j >= n) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kGemvAhead) {
#pragma unroll
    for (int i = 0; i < kGemvAhead; ++i) {
      const int c = c0 + 32 * i;
      const uint4 wv = ahead[i];
      const int next = c + 32 * kGemvAhead;
      ahead[i] = next < chunks ? load_streaming(wr + 16 * next) : make_uint4(0, 0, 0, 0);
      if (c >= chunks) continue;
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (r < rows) acc[r] = dot16_e4m3(wv, *reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(r) * k + 16 * c), acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    const float sum = warp_sum(acc[r]);
    if (lane == 0) out[static_cast<int64_t>(r) * n + j] = from_float<T>(fp8_output(sum, x_scales, w_scales, bias, r, j));
  }
}

// One row of a long K (down_proj's 18,944) on a block an output (fp8_settings().gemv_split, path "gemv_split"; written in
// the twenty-second session of 2026-12-07, off until timed). fp8_gemv_kernel gives down_proj 3,584 warps, each
// streaming an 18.9 KB row 2 KiB at a time: less than half the warps an SM holds, the blocks (3.4 an SM) unevenly
// spread, and every warp's 37 steps one after another. It moves 68 MB in 0.043 ms on the H200 (1.6 TB/s, the
// quantizer included) where gate_up's 37,888 short rows move 3.1 TB/s. Here block j's 256 threads issue all the loads
// of weight row j at once (thread t: 16-byte chunks t, t + 256, ...; up to kSplitLoads each, before the wait on the
// kernel before), then sum exact products as the GEMV does, then the block's sums (block_sum): 3,584 blocks of one
// round trip each, a thousand resident at once. Its sum is in another order than "gemv"'s (the bits may differ in the
// last place; both are exact products summed in f32).
constexpr int kSplitThreads = 256;
constexpr int kSplitLoads = 8;  // 16-byte loads a thread: K up to 8 · 256 · 16 = 32,768
constexpr int64_t kSplitMaxK = int64_t{kSplitLoads} * kSplitThreads * 16;

template <class T>
__global__ void __launch_bounds__(kSplitThreads)
    fp8_gemv_split_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales,
                          const uint8_t* __restrict__ w, const float* __restrict__ w_scales, const T* __restrict__ bias,
                          T* __restrict__ out, int k) {
  const int j = blockIdx.x, chunks = k / 16;
  const uint8_t* wr = w + static_cast<int64_t>(j) * k;
  uint4 wv[kSplitLoads];
#pragma unroll
  for (int i = 0; i < kSplitLoads; ++i) {
    const int c = threadIdx.x + kSplitThreads * i;
    wv[i] = c < chunks ? load_streaming(wr + 16 * c) : make_uint4(0, 0, 0, 0);
  }
  pdl_wait();  // the weights do not depend on the kernel before; the codes and their scales do
  float acc = 0.0f;
#pragma unroll
  for (int i = 0; i < kSplitLoads; ++i) {
    const int c = threadIdx.x + kSplitThreads * i;
    if (c < chunks) acc = dot16_e4m3(wv[i], *reinterpret_cast<const uint4*>(xq + 16 * c), acc);
  }
  const float sum = block_sum(acc);
  if (threadIdx.x == 0) out[j] = from_float<T>(fp8_output(sum, x_scales, w_scales, bias, 0, j));
}

// W8A16 (fp8_w16_rows(), TROUPE_FP8_GEMM=w16; written in the eleventh session of 2026-12-06 with no GPU
// to run it): fp8_gemv_kernel's loop with x read as it is, not quantized. A step of few rows then skips the
// quantizer kernel before each of a layer's four products (its launch, its pass over x, its wait on the kernel before);
// the products of the weights' codes by x are summed in f32 by fmaf (each product of an e4m3 code and a bf16 or f16
// value is exact), the weight scale and the bias after the sum. Numerically nearer bf16 than W8A8 (x keeps its 8 bits of mantissa, not
// e4m3's 4), as vLLM's W8A16 FP8 kernels are; the per-token activation scales and a static input scale are unused.
// The 16 values of x at k .. k + 15 (16-byte aligned) as f32.
template <class T> __device__ __forceinline__ void load_x16(const T* __restrict__ p, float (&v)[16]);
template <> __device__ __forceinline__ void load_x16<__nv_bfloat16>(const __nv_bfloat16* __restrict__ p, float (&v)[16]) {
  const uint4 a = *reinterpret_cast<const uint4*>(p), b = *reinterpret_cast<const uint4*>(p + 8);
  const uint32_t u[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) {  // a bf16 is the high half of the f32 of the same value
    v[2 * i] = __uint_as_float(u[i] << 16);
    v[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}
template <> __device__ __forceinline__ void load_x16<__half>(const __half* __restrict__ p, float (&v)[16]) {
  const uint4 a = *reinterpret_cast<const uint4*>(p), b = *reinterpret_cast<const uint4*>(p + 8);
  const uint32_t u[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[i]));
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}
template <> __device__ __forceinline__ void load_x16<float>(const float* __restrict__ p, float (&v)[16]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float4 f = reinterpret_cast<const float4*>(p)[i];
    v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
  }
}


// Output feature j = 8·blockIdx.x + warp for R rows of x [rows, k] in T, laid out as fp8_gemv_kernel: lane l takes
// the weight row's 16-byte chunks l, l + 32, ..., kGemvAhead loads ahead; out = sum · w_scales[j] (+ bias[j]).
// NOTE: the loop repeats fp8_gemv_kernel's rather than sharing a helper with it: the helper (tried, 2026-12-06) changed
// that kernel's machine code, which the GPU check has passed and timed as it is.
template <class T, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    fp8_w16_gemv_kernel(const T* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scales,
                        const T* __restrict__ bias, T* __restrict__ out, int rows, int n, int k) {
  const int lane = threadIdx.x % 32, j = blockIdx.x * kGemvWarps + threadIdx.x / 32;
  const int chunks = k / 16;
  const uint8_t* wr = w + static_cast<int64_t>(j < n ? j : 0) * k;
  uint4 ahead[kGemvAhead];
#pragma unroll
  for (int i = 0; i < kGemvAhead; ++i) {
    const int c = lane + 32 * i;
    ahead[i] = j < n && c < chunks ? load_streaming(wr + 16 * c) : make_uint4(0, 0, 0, 0);
  }
  pdl_wait();  // the weights do not depend on the kernel before; x does
  if (j >= n) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kGemvAhead) {
#pragma unroll
    for (int i = 0; i < kGemvAhead; ++i) {
      const int c = c0 + 32 * i;
      const uint4 wv = ahead[i];
      const int next = c + 32 * kGemvAhead;
      ahead[i] = next < chunks ? load_streaming(wr + 16 * next) : make_uint4(0, 0, 0, 0);
      if (c >= chunks) continue;
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (r < rows) {
          float xv[16];
          load_x16<T>(x + static_cast<int64_t>(r) * k + 16 * c, xv);
          acc[r] = dot16_e4m3_f32(wv, xv, acc[r]);
        }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    const float sum = warp_sum(acc[r]);
    if (lane == 0) {
      const float value = sum * w_scales[j];
      out[static_cast<int64_t>(r) * n + j] = from_float<T>(bias ? value + to_float(bias[j]) : value);
    }
  }
}

// One row's product with its quantization inside (fp8_settings().qgemv; TROUPE_FP8_GEMM=qgemv forces it; written in
// the nineteenth session of 2026-12-06): no quantizer kernel before the product. Each block finds max|x| itself, takes
// the scale (or the static one) and the row's codes — those fp8_quantize_rows_kernel makes, bit for bit (the max does
// not depend on the order) — and keeps in its shared memory the f32 values the codes stand for; its warps then run
// fp8_gemv_kernel's loop over outputs j, j + the grid's warps, ... with x's values from there (dot16_e4m3_f32: the
// same products, exact, summed in the same order), so "gemv"'s output bits (the GPU check compares them) without
// converting x's codes again for every output. A grid of at most one wave, so that each block quantizes once. Unlike
// W8A16 it changes no rounding: a request's tokens stay those of W8A8. H200, 2026-12-06, with x's codes (not values)
// in shared memory: a wash against the quantizer + GEMV (gate_up 0.043 / 0.043 ms, q/k/v 0.010 / 0.010, o_proj 0.010 /
// 0.009); W8A16 0.040 / 0.008 / 0.007. x 16-byte aligned, K a multiple of 16 up to kQgemvMaxK (the launcher checks).
// NOTE: the loop repeats fp8_gemv_kernel's, as fp8_w16_gemv_kernel's does, and for its reason: a shared helper changed
// that kernel's machine code, which the GPU check has passed and timed as it is.
//
// Silu (linear_fp8_silu, fp8_settings().silu): w holds gate and up stacked (2n rows) and out n features; a warp streams
// gate row j and up row n + j side by side, each summed as above (each its own sum, in the same order), each output
// rounded to T as the GEMV would write it, then silu_and_mul's arithmetic on the two: silu_and_mul(linear_fp8(x)) bit
// for bit, without gate/up's output written and read back or silu_and_mul's launch.
template <class T, bool Silu>
__global__ void __launch_bounds__(kGemvWarps * 32)
    fp8_qgemv_kernel(const T* __restrict__ x, const float* __restrict__ static_scale, const uint8_t* __restrict__ w,
                     const float* __restrict__ w_scales, const T* __restrict__ bias, T* __restrict__ out, int n, int k) {
  // The values of x's codes, float4 q of chunk c (k = 16c + 4q .. 16c + 4q + 3) at q·chunks + c: a warp's lanes, on
  // consecutive chunks, read consecutive 16-byte words.
  extern __shared__ float4 x_values[];
  __shared__ float x_scale;
  const int lane = threadIdx.x % 32, stride = gridDim.x * kGemvWarps;
  const int chunks = k / 16;
  int j = blockIdx.x * kGemvWarps + threadIdx.x / 32;
  uint4 ahead[kGemvAhead];
  uint4 ahead_up[Silu ? kGemvAhead : 1];  // Silu: up row n + j's
  const int64_t up_offset = static_cast<int64_t>(n) * k;
  auto first_loads = [&](int jj) {  // output jj's first kGemvAhead loads a lane
    const uint8_t* wr = w + static_cast<int64_t>(jj < n ? jj : 0) * k;
#pragma unroll
    for (int i = 0; i < kGemvAhead; ++i) {
      const int c = lane + 32 * i;
      ahead[i] = jj < n && c < chunks ? load_streaming(wr + 16 * c) : make_uint4(0, 0, 0, 0);
      if constexpr (Silu) ahead_up[i] = jj < n && c < chunks ? load_streaming(wr + up_offset + 16 * c) : make_uint4(0, 0, 0, 0);
    }
  };
  first_loads(j);
  pdl_wait();  // the weights do not depend on the kernel before; x does
  constexpr int N = 16 / sizeof(T);
  const int vecs = k / N;
  const float s = fp8_row_scale<T, N>(x, vecs, static_scale);
  float* values = reinterpret_cast<float*>(x_values);
  for (int i = threadIdx.x; i < vecs; i += blockDim.x) {
    const vec<T, N> v = load_vec<T, N>(x + N * i);
#pragma unroll
    for (int e = 0; e < N; ++e) {
      const int el = N * i + e, c = el / 16, q = el % 16 / 4;
      const uint8_t code = fp8_activation_code(to_float(v.v[e]), s);
      values[(q * chunks + c) * 4 + el % 4] = fp8_decode(code, false);
    }
  }
  if (threadIdx.x == 0) x_scale = s;
  __syncthreads();
  for (; j < n; j += stride) {
    const uint8_t* wr = w + static_cast<int64_t>(j) * k;
    float acc = 0.0f, acc_up = 0.0f;
    for (int c0 = lane; c0 < chunks; c0 += 32 * kGemvAhead) {
#pragma unroll
      for (int i = 0; i < kGemvAhead; ++i) {
        const int c = c0 + 32 * i;
        const uint4 wv = ahead[i];
        const int next = c + 32 * kGemvAhead;
        ahead[i] = next < chunks ? load_streaming(wr + 16 * next) : make_uint4(0, 0, 0, 0);
        uint4 uv{};
        if constexpr (Silu) {
          uv = ahead_up[i];
          ahead_up[i] = next < chunks ? load_streaming(wr + up_offset + 16 * next) : make_uint4(0, 0, 0, 0);
        }
        if (c >= chunks) continue;
        float xv[16];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float4 f = x_values[q * chunks + c];
          xv[4 * q] = f.x, xv[4 * q + 1] = f.y, xv[4 * q + 2] = f.z, xv[4 * q + 3] = f.w;
        }
        acc = dot16_e4m3_f32(wv, xv, acc);
        if constexpr (Silu) acc_up = dot16_e4m3_f32(uv, xv, acc_up);
      }
    }
    first_loads(j + stride);  // the next output's loads in flight while this one's sum is made
    const float sum = warp_sum(acc);
    // fp8_output's arithmetic, each step rounded on its own: in this loop the compiler fused the product and the bias
    // into one FMA, which fp8_gemv_kernel does not (the H200 check of 2026-12-06: 1,440 of 4,608 f32 outputs a unit
    // apart).
    auto output = [&](float total, int o) {
      const float value = __fmul_rn(total, __fmul_rn(x_scale, w_scales[o]));
      return from_float<T>(bias ? __fadd_rn(value, to_float(bias[o])) : value);
    };
    if constexpr (Silu) {
      const float sum_up = warp_sum(acc_up);
      if (lane == 0) out[j] = from_float<T>(silu_times(to_float(output(sum, j)), to_float(output(sum_up, n + j))));
    } else if (lane == 0) {
      out[j] = output(sum, j);
    }
  }
}

size_t round_up(size_t v) { return (v + 255) / 256 * 256; }

constexpr int kMmaWarps = 8;
constexpr int64_t kMmaRows = 32;  // what the kernel takes (TROUPE_FP8_GEMM=mma)
// What the launcher gives it by itself. H100, 2026-12-05, gate_up [x, 3584] by [37888, 3584] in bf16, quantization
// included: 1 row 0.075 ms (cuBLASLt epilogue 0.072), 8 rows 0.076 (0.074), 32 rows 0.127 (0.079): the kernel
// streams at ~1.8 TB/s of 3.35 (scripts/gpu/linear_ncu.sh looks into why), no faster than cuBLASLt on gate_up,
// but one request's whole decode step went from 6.03 ms to 5.07 with it (FP8 weights and KV cache), as cuBLASLt
// does worse on the other shapes at one row. So up to 8 rows, until it is tuned.
constexpr int64_t kMmaChosenRows = 8;
constexpr int kMmaAhead = 4;  // K steps of weights a warp keeps in flight while it multiplies one

// d += a · b for one m16n8k32 tile of e4m3 codes. Fragments as the PTX ISA lays out 8-bit m16n8k32, with
// g = lane / 4 and t = lane % 4: a[0] holds A(g, 4t..4t+3), a[1] A(g+8, 4t..4t+3), a[2] A(g, 16+4t..), a[3]
// A(g+8, 16+4t..); b0 B(4t..4t+3, g), b1 B(16+4t.., g); d as m16n8k16's (mma.cuh). Lowest k in the lowest byte.
__device__ __forceinline__ void mma_e4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One block makes 16 output features (n0 = 16·blockIdx.x) for up to 8·NT rows. K is cut in steps of 64 bytes;
// warp w takes steps w, w + 8, ... In a step, lane (g, t) loads 16 bytes of weight rows n0 + g and n0 + g + 8 at
// k = 64·step + 16t and the same 16 bytes of x row 8·tile + g, and runs two mma: words 0 and 1 as the first's
// (k 4t.. and 16+4t.. of the PTX layout), words 2 and 3 as the second's. So the products pair weight and x bytes of
// the same k, though not in the order the layout names (the sum does not care). The warps' sums meet in shared
// memory; then out[r][j] = sum · (x_scales[r] · w_scales[j]) (+ bias[j]), rounded once, as fp8_scale_kernel.
// Needs K a multiple of 16 and 16-byte aligned rows (the launcher checks).
template <class T, int NT>
__global__ void __launch_bounds__(kMmaWarps * 32)
    fp8_mma_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales, const uint8_t* __restrict__ w,
                   const float* __restrict__ w_scales, const T* __restrict__ bias, T* __restrict__ out, int rows, int n,
                   int k) {
  __shared__ float partial[kMmaWarps][16][NT * 8 + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 16, steps = (k + 63) / 64;
  const bool has_a = n0 + g < n, has_b = n0 + g + 8 < n;
  const uint8_t* wa = w + static_cast<int64_t>(has_a ? n0 + g : 0) * k;
  const uint8_t* wb = w + static_cast<int64_t>(has_b ? n0 + g + 8 : 0) * k;
  struct stage {
    uint4 a, b;
  };
  // Step s's weights for this lane; zeros past K or past the outputs.
  auto load = [&](int s) {
    stage st{};
    const int kk = s * 64 + 16 * t;
    if (s < steps && kk < k) {
      if (has_a) st.a = load_streaming(wa + kk);
      if (has_b) st.b = load_streaming(wb + kk);
    }
    return st;
  };
  float acc[NT][4];
  zero_tiles(acc);
  stage ahead[kMmaAhead];
#pragma unroll
  for (int i = 0; i < kMmaAhead; ++i) ahead[i] = load(warp + i * kMmaWarps);
  pdl_wait();  // the weights do not depend on the kernel before; the codes and their scales do
  for (int s = warp; s < steps; s += kMmaWarps) {
    const stage cur = ahead[0];
#pragma unroll
    for (int i = 0; i + 1 < kMmaAhead; ++i) ahead[i] = ahead[i + 1];
    ahead[kMmaAhead - 1] = load(s + kMmaAhead * kMmaWarps);
    const int kk = s * 64 + 16 * t;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int row = nt * 8 + g;
      uint4 x{};
      if (kk < k && row < rows) x = *reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(row) * k + kk);
      mma_e4m3(acc[nt], cur.a.x, cur.b.x, cur.a.y, cur.b.y, x.x, x.y);
      mma_e4m3(acc[nt], cur.a.z, cur.b.z, cur.a.w, cur.b.w, x.z, x.w);
    }
  }
  reduce_tile_outputs<T, NT, kMmaWarps>(partial, acc, n0, rows, n, out, [&](float sum, int r, int j) {
    return fp8_output(sum, x_scales, w_scales, bias, r, j);
  });
}

// The same product with the weights staged through shared memory (TROUPE_FP8_GEMM=mma_async forces it;
// TROUPE_FP8_MMA_ASYNC=1 takes it where it won, below; not chosen by default until one request's decode says so).
// H200, 2026-12-05, ms at 1 row (mma / mma_async): gate_up 0.058 / 0.047, qkv 0.018 / 0.013, o_proj 0.013 / 0.012,
// down 0.048 / 0.059 — it loses where few outputs meet a long K (224 blocks of 16 outputs over 18,944 bytes each);
// splitting K over more blocks was tried and lost (qkv 0.016, o_proj 0.014, down 0.060). fp8_mma_kernel keeps its
// loads in flight in registers (97 a thread: two blocks, 64 KiB in flight an SM); here cp.async keeps
// kAsyncStages - 1 stages of 16 weight rows × 512 bytes in flight a block without registers (4 × 8 KiB; 41 KiB of
// shared memory, five blocks an SM: 160 KiB in flight). A block of 4 warps makes 16 outputs over all of K: each stage, warp w multiplies
// bytes 128w .. 128w + 127 of the stage's 512, as two of fp8_mma_kernel's 64-byte steps (the same fragments
// and k permutation); the warps' sums meet in shared memory at the end.
constexpr int kAsyncWarps = 4;
constexpr int kAsyncStages = 5;
constexpr int kStageBytes = 512;                // K bytes of each of the 16 rows a stage holds
constexpr int kStagePitch = kStageBytes + 16;   // a row's pitch in shared memory: rows start 16 bytes apart mod 128

template <class T, int NT>
__global__ void __launch_bounds__(kAsyncWarps * 32)
    fp8_mma_async_kernel(const uint8_t* __restrict__ xq, const float* __restrict__ x_scales,
                         const uint8_t* __restrict__ w, const float* __restrict__ w_scales, const T* __restrict__ bias,
                         T* __restrict__ out, int rows, int n, int k) {
  __shared__ __align__(16) uint8_t w_s[kAsyncStages][16][kStagePitch];
  __shared__ float partial[kAsyncWarps][16][NT * 8 + 1];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 16, stages = (k + kStageBytes - 1) / kStageBytes;
  // Stage s of the 16 rows into buffer s % kAsyncStages: 512 chunks of 16 bytes, 4 a thread; zeros past K or
  // past the outputs.
  auto issue = [&](int s) {
    uint8_t(*buf)[kStagePitch] = w_s[s % kAsyncStages];
#pragma unroll
    for (int i = 0; i < 16 * kStageBytes / 16 / (kAsyncWarps * 32); ++i) {
      const int c = threadIdx.x + i * kAsyncWarps * 32, row = c / (kStageBytes / 16), col = (c % (kStageBytes / 16)) * 16;
      const int kk = s * kStageBytes + col;
      const bool valid = n0 + row < n && kk < k;
      cp_async16(&buf[row][col], valid ? w + static_cast<int64_t>(n0 + row) * k + kk : w, valid);
    }
  };
  float acc[NT][4];
  zero_tiles(acc);
  cp_async_ring_start<kAsyncStages>(stages, issue);
  pdl_wait();  // the weights do not depend on the kernel before; the codes and their scales do
  for (int s = 0; s < stages; ++s) {
    cp_async_ring_next<kAsyncStages>(s, stages, issue);
    const uint8_t(*buf)[kStagePitch] = w_s[s % kAsyncStages];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int o = warp * 128 + j * 64 + 16 * t, kk = s * kStageBytes + o;
      const uint4 a = *reinterpret_cast<const uint4*>(&buf[g][o]);
      const uint4 b = *reinterpret_cast<const uint4*>(&buf[g + 8][o]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int row = nt * 8 + g;
        uint4 x{};
        if (kk < k && row < rows) x = *reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(row) * k + kk);
        mma_e4m3(acc[nt], a.x, b.x, a.y, b.y, x.x, x.y);
        mma_e4m3(acc[nt], a.z, b.z, a.w, b.w, x.z, x.w);
      }
    }
  }
  reduce_tile_outputs<T, NT, kAsyncWarps>(partial, acc, n0, rows, n, out, [&](float sum, int r, int j) {
    return fp8_output(sum, x_scales, w_scales, bias, r, j);
  });
}

template <class T, int NT>
void launch_mma(const uint8_t* codes, const float* x_scales, const fp8_device_weight& w, const T* bias, T* out,
                int64_t rows, int64_t n, int64_t k, bool async, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((n + 15) / 16));
  if (async)
    launch_dependent(fp8_mma_async_kernel<T, NT>, grid, dim3(kAsyncWarps * 32), stream, "linear_fp8 mma_async", codes,
                     x_scales, w.weight.as<uint8_t>(), w.scale.as<float>(), bias, out, static_cast<int>(rows),
                     static_cast<int>(n), static_cast<int>(k));
  else
    launch_dependent(fp8_mma_kernel<T, NT>, grid, dim3(kMmaWarps * 32), stream, "linear_fp8 mma", codes, x_scales,
                     w.weight.as<uint8_t>(), w.scale.as<float>(), bias, out, static_cast<int>(rows),
                     static_cast<int>(n), static_cast<int>(k));
}

} // namespace

fp8_switches& fp8_settings() {
  static fp8_switches s;
  static const bool from_environment = [] {
    if (const char* v = std::getenv("TROUPE_FP8_GEMM")) s.path = v;
    if (const char* v = std::getenv("TROUPE_FP8_MMA_ASYNC"); v && *v) s.mma_async = *v != '0';
    if (const char* v = std::getenv("TROUPE_FP8_GEMV"); v && *v) s.gemv = *v != '0';
    if (const char* v = std::getenv("TROUPE_FP8_GEMV_SPLIT"); v && *v) s.gemv_split = std::atoll(v);
    if (const char* v = std::getenv("TROUPE_FP8_QUANTIZE_VEC"); v && *v) s.quantize_vec = *v != '0';
    if (const char* v = std::getenv("TROUPE_FP8_WIDE_ROWS"); v && *v) s.wide_rows = std::atoi(v);
    if (const char* v = std::getenv("TROUPE_FP8_WGMMA"); v && *v) s.wgmma = std::atoi(v);
    if (const char* v = std::getenv("TROUPE_FP8_WGMMA_ROWS"); v && *v) s.wgmma_rows = std::atoi(v);
    if (const char* v = std::getenv("TROUPE_FP8_WGMMA_MAX_ROWS"); v && *v) s.wgmma_max_rows = std::atoll(v);
    if (const char* v = std::getenv("TROUPE_FP8_WGMMA_TMA"); v && *v) s.wgmma_tma = *v != '0';
    if (const char* v = std::getenv("TROUPE_FP8_QGEMV"); v && *v) s.qgemv = std::atoi(v);
    if (const char* v = std::getenv("TROUPE_FP8_SILU"); v && *v) s.silu = *v != '0';
    if (const char* v = std::getenv("TROUPE_FP8_SINGLE_PASS"); v && *v) s.single_pass = *v != '0';
    return true;
  }();
  (void)from_environment;
  return s;
}

namespace {

// The product of rows x k codes already quantized (codes, x_scales: linear_fp8's quantization of its input) by w,
// into out, on the first path that takes the shape (the file's comment); returns the path's name.
const char* run_fp8_product(cuda_context& ctx, const uint8_t* codes, const float* x_scales, int64_t rows, int64_t k,
                            const fp8_device_weight& w, const tensor& bias, const tensor& out) {
  const int64_t n = w.weight.dim(0);
  const std::string& forced = fp8_settings().path;  // "" (automatic) or the path TROUPE_FP8_GEMM forces
  // cuBLASLt's FP8 kernels want K and the leading dimensions in whole 16 bytes and 16-byte aligned operands.
  const bool aligned = k % 16 == 0 && n % 16 == 0 && reinterpret_cast<uintptr_t>(w.weight.data) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out.data) % 16 == 0 &&
                       (bias.empty() || reinterpret_cast<uintptr_t>(bias.data) % 16 == 0);
  const tensor xq(const_cast<uint8_t*>(codes), dtype::f8_e4m3, {rows, k});
  const std::string x_shape = "x [" + std::to_string(rows) + ", " + std::to_string(k) + "]";

  // One row on the CUDA-core GEMV where TROUPE_FP8_GEMV asks for it; forced ("gemv") up to kGemvRows.
  const bool rows16 = k % 16 == 0 && reinterpret_cast<uintptr_t>(w.weight.data) % 16 == 0;  // 16-byte weight rows
  const bool gemv_shape = rows <= kGemvRows && rows16;
  const int gemv = fp8_settings().gemv;
  const bool gemv_chosen = rows == 1 && (gemv > 0 || (gemv < 0 && n * k >= kGemvChosenBytes));
  // One row of a long K on a block an output where fp8_settings().gemv_split asks (forced: "gemv_split").
  const int64_t split_k = fp8_settings().gemv_split;
  const bool split_shape = rows == 1 && rows16 && k <= kSplitMaxK;
  if (split_shape && (forced == "gemv_split" || (forced.empty() && gemv_chosen && split_k > 0 && k >= split_k))) {
    dispatch_float(out.type, "linear_fp8", [&](auto tag) {
      using T = typename decltype(tag)::type;
      launch_dependent(fp8_gemv_split_kernel<T>, dim3(static_cast<unsigned>(n)), dim3(kSplitThreads), ctx.stream,
                       "linear_fp8 gemv_split", static_cast<const uint8_t*>(codes), static_cast<const float*>(x_scales),
                       w.weight.as<uint8_t>(), w.scale.as<float>(), bias.empty() ? nullptr : bias.as<T>(), out.as<T>(),
                       static_cast<int>(k));
    });
    check_launch("linear_fp8 gemv_split");
    return "gemv_split";
  }
  if (forced == "gemv_split")
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=gemv_split takes one row and K a multiple of 16 up to " +
                             std::to_string(kSplitMaxK) + ", not " + x_shape + " by weight " + shape_of(w.weight));
  const bool forced_gemv = forced == "gemv";
  if (gemv_shape && (forced_gemv || (forced.empty() && gemv_chosen))) {
    dispatch_float(out.type, "linear_fp8", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* b = bias.empty() ? nullptr : bias.as<T>();
      const dim3 grid(static_cast<unsigned>((n + kGemvWarps - 1) / kGemvWarps));
      auto launch = [&](auto kernel) {
        launch_dependent(kernel, grid, dim3(kGemvWarps * 32), ctx.stream, "linear_fp8 gemv", static_cast<const uint8_t*>(codes),
                         static_cast<const float*>(x_scales), w.weight.as<uint8_t>(), w.scale.as<float>(), b, out.as<T>(),
                         static_cast<int>(rows), static_cast<int>(n), static_cast<int>(k));
      };
      if (rows <= 1) launch(fp8_gemv_kernel<T, 1>);
      else if (rows <= 2) launch(fp8_gemv_kernel<T, 2>);
      else launch(fp8_gemv_kernel<T, 4>);
    });
    check_launch("linear_fp8 gemv");
    return "gemv";
  }
  if (forced_gemv)
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=" + forced + " takes at most " + std::to_string(kGemvRows) +
                             " rows and K a multiple of 16, not " + x_shape + " by weight " + shape_of(w.weight));
  const bool mma_shape = rows <= kMmaRows && rows16;
  // Where the mma path is chosen, the cp.async kernel where it won (no fewer outputs than K; fp8_settings().mma_async);
  // TROUPE_FP8_GEMM=mma|mma_async forces the path at any shape it takes.
  const bool forced_mma = forced == "mma" || forced == "mma_async";
  const int async_setting = fp8_settings().mma_async;
  const bool async = forced == "mma_async" || (forced.empty() && (async_setting > 0 || (async_setting < 0 && n >= k)));
  if (mma_shape && ((forced.empty() && rows <= kMmaChosenRows) || forced_mma)) {
    dispatch_float(out.type, "linear_fp8", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* b = bias.empty() ? nullptr : bias.as<T>();
      if (rows <= 8) launch_mma<T, 1>(codes, x_scales, w, b, out.as<T>(), rows, n, k, async, ctx.stream);
      else if (rows <= 16) launch_mma<T, 2>(codes, x_scales, w, b, out.as<T>(), rows, n, k, async, ctx.stream);
      else launch_mma<T, 4>(codes, x_scales, w, b, out.as<T>(), rows, n, k, async, ctx.stream);
    });
    check_launch("linear_fp8 mma");
    return async ? "mma_async" : "mma";
  }
  if (forced_mma)
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=" + forced + " takes at most " + std::to_string(kMmaRows) +
                             " rows and K a multiple of 16, not " + x_shape + " by weight " + shape_of(w.weight));
  // Many rows on the warpgroup-MMA GEMM where fp8_settings().wgmma asks for it (TROUPE_FP8_GEMM=wgmma forces it at any
  // row count), before cuBLASLt. Its tiles are 128 codes of K a stage.
  // (kernels/fp8_wgmma_rules.hpp; while it is on, its split-K scratch is grown outside any capture, so that a decode
  // graph captured before an eager step of its size still splits.)
  static_assert(kMmaChosenRows == kFp8WgmmaAutoRows, "the wgmma GEMM takes over above the mma kernel's rows");
  const bool wgmma_shape = k % 128 == 0 && rows16;
  if (fp8_settings().wgmma > 0) prepare_linear_fp8_wgmma(ctx);
  if (wgmma_shape && (forced == "wgmma" || (forced.empty() && linear_fp8_wgmma_chosen(ctx, rows, n, k)))) {
    launch_linear_fp8_wgmma(ctx, codes, x_scales, rows, k, w, bias, out);
    return "wgmma";
  }
  if (forced == "wgmma")
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=wgmma takes K a multiple of 128 and 16-byte aligned weight "
                             "rows, not " + x_shape + " by weight " + shape_of(w.weight));
  if (aligned && (forced.empty() || forced == "outer")) {
    if (cublaslt_linear_fp8(ctx, xq, w.weight, w.scale.as<float>(), x_scales, bias, out)) return "outer";
    // cuBLASLt takes no bias beside outer-vector scales at some shapes (every "+bias" op row on the H100,
    // 2026-12-05: Qwen2's q/k/v): the scaled GEMM, then the bias by a kernel of its own. The output is rounded
    // twice (within one unit of its last place of the twin's single rounding), but the products skip the f32
    // round trip of "epilogue" (at 256 rows of gate_up, 0.088 ms outer against 0.126 epilogue).
    if (!bias.empty() && cublaslt_linear_fp8(ctx, xq, w.weight, w.scale.as<float>(), x_scales, tensor{}, out)) {
      dispatch_float(out.type, "linear_fp8", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const int64_t total = rows * n;
        add_bias_kernel<T><<<static_cast<unsigned>((total + 255) / 256), 256, 0, ctx.stream>>>(bias.as<T>(), out.as<T>(),
                                                                                              rows, n);
      });
      check_launch("linear_fp8 bias");
      return "outer+bias";
    }
  }
  if (forced == "outer")
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=outer, but cuBLASLt takes no FP8 GEMM with outer-vector "
                             "scales of " + x_shape + " by weight " + shape_of(w.weight));
  // bf16 and f32 outputs hold the unscaled sums themselves (scaled in place after); f16's range cannot (448² · K
  // overflows it), so f16 takes them in f32 scratch.
  if (aligned && (forced.empty() || forced == "epilogue") && out.type != dtype::f16) {
    if (cublaslt_linear_fp8(ctx, xq, w.weight, nullptr, nullptr, tensor{}, out)) {
      dispatch_float(out.type, "linear_fp8", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const int64_t threads = rows * n / 8;
        fp8_scale_in_place_kernel<T><<<static_cast<unsigned>((threads + 255) / 256), 256, 0, ctx.stream>>>(
            out.as<T>(), x_scales, w.scale.as<float>(), bias.empty() ? nullptr : bias.as<T>(), rows, n);
      });
      check_launch("linear_fp8 scales");
      return "epilogue";
    }
  }
  if (aligned && (forced.empty() || forced == "epilogue") && out.type == dtype::f16) {
    // The f32 products have a buffer of their own, so that growing it leaves the codes just written alone.
    grow_scratch(ctx, ctx.fp8_products, ctx.fp8_products_bytes, static_cast<size_t>(rows * n) * 4, "linear_fp8");
    auto* acc = static_cast<float*>(ctx.fp8_products);
    if (cublaslt_linear_fp8(ctx, xq, w.weight, nullptr, nullptr, tensor{}, tensor(acc, dtype::f32, {rows, n}))) {
      dispatch_float(out.type, "linear_fp8", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const int64_t total = rows * n;
        fp8_scale_kernel<T><<<static_cast<unsigned>((total + 255) / 256), 256, 0, ctx.stream>>>(
            acc, x_scales, w.scale.as<float>(), bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), rows, n);
      });
      check_launch("linear_fp8 scales");
      return "epilogue";
    }
  }
  if (forced == "epilogue")
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=epilogue, but cuBLASLt takes no FP8 GEMM of " +
                             x_shape + " by weight " + shape_of(w.weight));
  dispatch_float(out.type, "linear_fp8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t warps = rows * n;
    constexpr int threads = 256;
    fp8_simt_kernel<T><<<static_cast<unsigned>((warps * 32 + threads - 1) / threads), threads, 0, ctx.stream>>>(
        codes, x_scales, w.weight.as<uint8_t>(), w.scale.as<float>(), bias.empty() ? nullptr : bias.as<T>(),
        out.as<T>(), rows, n, k);
  });
  check_launch("linear_fp8 simt");
  return "simt";
}

// fp8_qgemv_kernel over one row x [1, k] into n outputs (Silu: out's features, w holding 2n rows); the caller has
// checked the shape (qgemv_takes).
template <bool Silu>
void launch_qgemv(cuda_context& ctx, const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out,
                  int64_t n, int64_t k) {
  dispatch_float(x.type, "linear_fp8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto kernel = fp8_qgemv_kernel<T, Silu>;
    const size_t smem = static_cast<size_t>(k) * sizeof(float);
    // The limit is raised once a device, so to the most any row needs (the first call's K would refuse longer ones).
    allow_shared_memory<fp8_qgemv_kernel<T, Silu>>(static_cast<size_t>(kQgemvMaxK) * sizeof(float),
                                                   "linear_fp8 qgemv: shared memory");
    // At most one wave: the blocks an SM holds (by registers and the values' shared memory) times the SMs, asked
    // once for each row length a thread launches (the answer only caps the grid: any count is correct).
    static thread_local size_t asked_smem = 0;
    static thread_local int per_sm = 0;
    if (asked_smem != smem) {
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kGemvWarps * 32, smem), "linear_fp8 qgemv");
      asked_smem = smem;
    }
    const int64_t blocks = std::min<int64_t>((n + kGemvWarps - 1) / kGemvWarps,
                                             static_cast<int64_t>(std::max(per_sm, 1)) * ctx.sm_count);
    launch_dependent_shared(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kGemvWarps * 32), smem, ctx.stream,
                            Silu ? "linear_fp8 qgemv_silu" : "linear_fp8 qgemv", x.as<T>(),
                            w.input_scale.empty() ? nullptr : w.input_scale.as<float>(), w.weight.as<uint8_t>(),
                            w.scale.as<float>(), bias.empty() ? nullptr : bias.as<T>(), out.as<T>(), static_cast<int>(n),
                            static_cast<int>(k));
  });
  check_launch(Silu ? "linear_fp8 qgemv_silu" : "linear_fp8 qgemv");
}

// Whether fp8_qgemv_kernel takes x [rows, k] by w: one row, K a multiple of 16 up to kQgemvMaxK, 16-byte aligned.
bool qgemv_takes(const tensor& x, const fp8_device_weight& w, int64_t rows, int64_t k) {
  return rows == 1 && k % 16 == 0 && k <= kQgemvMaxK && reinterpret_cast<uintptr_t>(w.weight.data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
}

// Throws std::invalid_argument naming every shape where x [rows, K], w [N, K] e4m3 with its scales, bias [N] and out
// [rows, out_features] do not make the product `op` runs.
void check_fp8_operands(const char* op, const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out,
                        int64_t out_features) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.weight.dim(0);
  if (w.weight.type != dtype::f8_e4m3 || w.weight.rank != 2 || w.weight.dim(1) != k || w.scale.type != dtype::f32 ||
      w.scale.numel() != n || (!w.input_scale.empty() && (w.input_scale.type != dtype::f32 || w.input_scale.numel() != 1)) ||
      out.type != x.type || out.dim(0) != rows || out.row_elems() != out_features ||
      (!bias.empty() && (bias.type != x.type || bias.numel() != n)))
    throw std::invalid_argument(std::string("cuda ") + op + ": x " + shape_of(x) + ", weight " + shape_of(w.weight) + " " +
                                std::string(name(w.weight.type)) + ", scale " + shape_of(w.scale) + ", output " +
                                shape_of(out) + " disagree");
}

// linear_fp8: x quantized into ctx's scratch, then the product.
const char* run_linear_fp8(cuda_context& ctx, const tensor& x, const fp8_device_weight& w, const tensor& bias,
                           const tensor& out, bool w16) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.weight.dim(0);
  check_fp8_operands("linear_fp8", x, w, bias, out, n);
  if (rows == 0) return "none";
  make_current(ctx);
  // W8A16 where the step is W8A16's (fp8_w16_rows(); forced: TROUPE_FP8_GEMM=w16): no quantizer.
  const std::string& forced = fp8_settings().path;
  const bool w16_shape = rows <= kGemvRows && k % 16 == 0 && reinterpret_cast<uintptr_t>(w.weight.data) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
  if (w16_shape && (forced == "w16" || (forced.empty() && w16))) {
    dispatch_float(x.type, "linear_fp8", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* b = bias.empty() ? nullptr : bias.as<T>();
      const dim3 grid(static_cast<unsigned>((n + kGemvWarps - 1) / kGemvWarps));
      auto launch = [&](auto kernel) {
        launch_dependent(kernel, grid, dim3(kGemvWarps * 32), ctx.stream, "linear_fp8 w16", x.as<T>(),
                         w.weight.as<uint8_t>(), w.scale.as<float>(), b, out.as<T>(), static_cast<int>(rows),
                         static_cast<int>(n), static_cast<int>(k));
      };
      if (rows <= 1) launch(fp8_w16_gemv_kernel<T, 1>);
      else if (rows <= 2) launch(fp8_w16_gemv_kernel<T, 2>);
      else launch(fp8_w16_gemv_kernel<T, 4>);
    });
    check_launch("linear_fp8 w16");
    return "w16";
  }
  if (forced == "w16")
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=w16 takes at most " + std::to_string(kGemvRows) +
                             " rows, K a multiple of 16 and 16-byte aligned x and weight, not x " + shape_of(x) +
                             " by weight " + shape_of(w.weight));
  // One row with the quantization inside the GEMV where fp8_settings().qgemv asks for it (1: where "gemv" would be
  // chosen, 2: every one-row product), forced by TROUPE_FP8_GEMM=qgemv.
  const int qgemv = fp8_settings().qgemv;
  const bool qgemv_shape = qgemv_takes(x, w, rows, k);
  const bool qgemv_chosen = qgemv >= 2 || (qgemv == 1 && n * k >= kGemvChosenBytes);
  if (qgemv_shape && (forced == "qgemv" || (forced.empty() && qgemv_chosen))) {
    launch_qgemv<false>(ctx, x, w, bias, out, n, k);
    return "qgemv";
  }
  if (forced == "qgemv")
    throw std::runtime_error("cuda linear_fp8: TROUPE_FP8_GEMM=qgemv takes one row, K a multiple of 16 up to " +
                             std::to_string(kQgemvMaxK) + " and 16-byte aligned x and weight, not x " + shape_of(x) +
                             " by weight " + shape_of(w.weight));
  const fp8_activations xq = quantize_fp8_activations(ctx, x, w.input_scale);
  return run_fp8_product(ctx, xq.codes.as<uint8_t>(), xq.scales.as<float>(), rows, k, w, bias, out);
}

} // namespace

fp8_activations quantize_fp8_activations(cuda_context& ctx, const tensor& x, const tensor& input_scale) {
  const int64_t rows = x.dim(0), k = x.dim(1);
  const size_t codes_bytes = round_up(static_cast<size_t>(rows * k));
  grow_scratch(ctx, ctx.fp8_scratch, ctx.fp8_scratch_bytes, codes_bytes + static_cast<size_t>(rows) * 4, "linear_fp8");
  auto* codes = static_cast<uint8_t*>(ctx.fp8_scratch);
  auto* x_scales = reinterpret_cast<float*>(static_cast<char*>(ctx.fp8_scratch) + codes_bytes);
  const auto* static_scale = input_scale.empty() ? nullptr : input_scale.as<float>();

  dispatch_float(x.type, "linear_fp8", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vectors = fp8_settings().quantize_vec && k % (16 / sizeof(T)) == 0 &&
                         reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
    launch_dependent(vectors ? fp8_quantize_rows_kernel<T, 16 / sizeof(T)> : fp8_quantize_rows_kernel<T, 1>,
                     dim3(static_cast<unsigned>(rows)), dim3(static_cast<unsigned>(fp8_quantize_threads(rows))),
                     ctx.stream, "linear_fp8 quantize",
                     x.as<T>(), k, static_scale, codes, x_scales);
  });
  check_launch("linear_fp8 quantize");
  return {tensor(codes, dtype::f8_e4m3, {rows, k}), tensor(x_scales, dtype::f32, {rows})};
}

const char* launch_linear_fp8(cuda_context& ctx, const tensor& x, const fp8_device_weight& w, const tensor& bias,
                              const tensor& out, bool w16) {
  return fp8_settings().last_path = run_linear_fp8(ctx, x, w, bias, out, w16);
}

const char* launch_linear_fp8_quantized(cuda_context& ctx, const fp8_activations& x, const fp8_device_weight& w,
                                        const tensor& bias, const tensor& out) {
  const int64_t rows = x.codes.dim(0), k = x.codes.row_elems(), n = w.weight.dim(0);
  if (x.codes.type != dtype::f8_e4m3 || x.scales.type != dtype::f32 || x.scales.numel() != rows ||
      w.weight.type != dtype::f8_e4m3 || w.weight.rank != 2 || w.weight.dim(1) != k || w.scale.type != dtype::f32 ||
      w.scale.numel() != n || out.dim(0) != rows || out.row_elems() != n ||
      (!bias.empty() && (bias.type != out.type || bias.numel() != n)))
    throw std::invalid_argument("cuda linear_fp8_quantized: codes " + shape_of(x.codes) + " " + std::string(name(x.codes.type)) +
                                ", scales " + shape_of(x.scales) + ", weight " + shape_of(w.weight) + ", output " +
                                shape_of(out) + " disagree");
  if (rows == 0) return fp8_settings().last_path = "none";
  make_current(ctx);
  return fp8_settings().last_path =
             run_fp8_product(ctx, x.codes.as<uint8_t>(), x.scales.as<float>(), rows, k, w, bias, out);
}

bool launch_linear_fp8_silu(cuda_context& ctx, const tensor& x, const fp8_device_weight& w, const tensor& bias,
                            const tensor& out, bool w16) {
  const int64_t rows = x.dim(0), k = x.dim(1), n = w.weight.dim(0), inter = n / 2;
  // w: gate and up stacked, so an even number of rows, and out half as many features.
  check_fp8_operands("linear_fp8_silu", x, w, bias, out, n % 2 == 0 ? inter : -1);
  // Not where the two ops would not quantize the row as qgemv does (a path forced, a W8A16 step). Its sums are the
  // GEMV's: where the two ops run "gemv" or "qgemv" (gate/up's one row at model shapes) the bits are theirs.
  if (!fp8_settings().silu || !fp8_settings().path.empty() || w16 || inter == 0 || !qgemv_takes(x, w, rows, k))
    return false;
  make_current(ctx);
  launch_qgemv<true>(ctx, x, w, bias, out, inter, k);
  fp8_settings().last_path = "qgemv_silu";
  return true;
}

} // namespace troupe::cuda
