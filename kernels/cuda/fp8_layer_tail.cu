// ops::fp8_layer_tail on CUDA: one decode row's layer from attention's output to the next layer's q/k/v in one kernel
// (FP8 weights), where the separate ops launch eight: o_proj's quantizer and GEMV, the residual add + norm, gate/up
// with silu, down_proj's quantizer and GEMV, the next residual add + norm, the next q/k/v's quantizer and GEMV.
//
// Why: one FP8 request's decode step is ~13 launches a layer, and at one row each launch's fixed cost (the ramp of a
// kernel that streams a few MB, its tail, the wait on the kernel before) weighs as much as its bytes: H100, one FP8 +
// FP8 KV request, 3.6 ms a step where the weights' bytes at the copy ceiling take ~2.6 (H200: 3.27 against ~1.8).
// Here the products run as phases of one persistent grid (every SM, one wave), separated by a grid barrier; each
// block issues its next phase's first weight loads before it waits at the barrier (the weights depend on nothing), so
// the streaming does not stop between the products as it does between kernels.
// Measured (H100, 2026-12-08, one FP8 + FP8 KV request): every form slower than the separate ops — 3.82 / 3.87 / 4.00 /
// 4.07 ms a step for forms 1-4 against 3.60 — so off by default (fp8_settings().tail); kernels/cuda/NOTES.md, thirtieth
// session, has why it is kept and what it suggests.
//
// Each phase does what the separate ops do, in their order: the norms are add_rms_norm's arithmetic (256 threads,
// its sum of squares in its order, the same block_sum), the activations are quantized as linear_fp8 quantizes them
// (fp8_activation_scale of max|x|, or the static scale; fp8_activation_code), and the products are fp8_qgemv_kernel's
// loop (a warp an output, lanes over 16-byte chunks, 4 or 8 loads in flight, exact products summed in f32, then
// fp8_output's arithmetic rounded step by step): the bits of the "qgemv" / "gemv" paths and of add_rms_norm_fp8 —
// troupe_gpu_check's "layer tail" rows compare them. Each block stages the whole input row itself (attention's
// output, the normed stream, the activation), so no phase waits for a quantizer: 3,584 or 18,944 values from L2 a
// block, against a wave of weight bytes.
//
// Where the model passes the next layer's rope operands (no q/k norms between), the q/k/v phase also does that layer's
// rope_write_kv: a warp sums a rotated pair of outputs (c and c + D/2 of one head) side by side, as the silu phase sums
// gate and up, rotates it and writes k and v into the cache (rope_product). One-row FP8 layers are then attention, its
// combine and this kernel. Four forms (tail_form, fp8_settings().tail) stage the row as f32 values or as codes.
//
// The residual stream: the first norm adds o_proj's output into `residual_mid` (block 0 writes it; nobody reads it in
// that phase), the second adds down_proj's output to that into `residual` (which nobody reads in that phase), so no
// block reads what another is writing. Values another block wrote in this kernel are read past L1 (ld.global.cg): L1
// is not coherent across SMs.
//
// NOTE: the grid barrier needs every block resident at once: the grid is the occupancy calculator's blocks an SM times
// the SMs, and the kernel never lets a dependent launch early (no griddepcontrol.launch_dependents), so no kernel
// waiting on this one can hold an SM its blocks need. It may itself start early as a programmatic dependent: the
// kernel before it finishes whatever this one does. Another process's kernels on the same GPU (MPS) could keep blocks
// from becoming resident; troupe assumes a GPU of its own, as vLLM does.

#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/fp8_dot.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kTailThreads = 256;  // add_rms_norm's block, so the sums of squares come out in its order
constexpr int kTailWarps = kTailThreads / 32;
// The longest input row a block stages (f32 values in shared memory): fp8_qgemv_kernel's limit, and the shared memory
// any form may ask (a form whose rows need more does not take the step).
constexpr int64_t kTailMaxK = int64_t{48} << 10;
constexpr size_t kTailSharedMax = static_cast<size_t>(kTailMaxK) * sizeof(float);

template <class T> struct fp8_product {
  const uint8_t* weight = nullptr;     // [n, k] e4m3; null: no product (the last layer's q/k/v)
  const float* scale = nullptr;        // [n]
  const float* input_scale = nullptr;  // [1], or null: the row's dynamic scale
  const T* bias = nullptr;             // [n] or null
  int n = 0, k = 0;                    // n: the weight's rows (gate and up stacked for the silu product)
};

// The next layer's rope_write_kv for the row, done as q/k/v's outputs are made (ops::fp8_layer_tail_args::rope): each
// item of q/k/v's product is a rotated pair (output c and c + D/2 of one q or k head) or one v output.
struct rope_args {
  const int32_t* positions = nullptr;     // [1]; null: no rope here
  const float* cos_sin = nullptr;         // [max_pos, head_dim]: head_dim / 2 cos, then as many sin
  int max_pos = 0;
  const int64_t* slot_mapping = nullptr;  // [1]: -1 writes nothing to the cache
  void* k_cache = nullptr;                // [blocks, block_size, num_kv_heads, head_dim] in T or FP8
  void* v_cache = nullptr;
  int cache = 0;                          // 0: T, 1: e4m3, 2: e5m2
  float k_scale = 1.0f, v_scale = 1.0f;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
};

template <class T> struct tail_args {
  const T* attn;       // [k of o_proj]: attention's output
  fp8_product<T> o_proj, gate_up, down, qkv;
  const T* post_norm;  // [hidden]
  const T* next_norm;  // [hidden]: the next layer's input norm, or the final norm
  T* hidden;           // [hidden]: o_proj's output, then down_proj's; the last layer's normed stream
  T* residual;         // [hidden]: the stream in, and the stream out
  T* residual_mid;     // [hidden]: the stream between the two norms
  T* act;              // [gate_up.n / 2]: silu(gate) · up
  T* qkv_out;          // [qkv.n]
  int hidden_size;
  float eps;
  unsigned* barrier;   // [2]: arrivals, generation (cuda_context::grid_barrier)
  rope_args rope;
};

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every block of the grid arrives before any leaves; what each wrote before is visible to all after (thread 0's
// fences are cumulative over the block's writes ordered before it by __syncthreads, as cooperative groups' grid sync
// does). The last to arrive resets the count before it moves the generation on, so the count is 0 again before any
// block can arrive at the next barrier.
__device__ void grid_barrier(unsigned* barrier) {
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* arrivals = barrier;
    unsigned* generation = barrier + 1;
    const unsigned g = load_acquire(generation);  // cannot move on before this block arrives
    __threadfence();
    if (atomicAdd(arrivals, 1u) == gridDim.x - 1) {
      atomicExch(arrivals, 0u);
      __threadfence();
      atomicAdd(generation, 1u);
    } else {
      while (load_acquire(generation) == g) {
      }
    }
    __threadfence();
  }
  __syncthreads();
}

// 16 bytes another block may have written in this kernel: from L2, past this SM's L1.
template <class T> __device__ __forceinline__ vec<T, vec16<T>> load_coherent(const T* p) {
  const uint4 u = __ldcg(reinterpret_cast<const uint4*>(p));
  return *reinterpret_cast<const vec<T, vec16<T>>*>(&u);
}

// How a block stages its input row and how far its lanes load ahead (fp8_settings().tail: 1 to 4). Values: the row as
// f32 values of its codes in fp8_qgemv_kernel's layout (4 bytes an input: the shared memory of the longest row,
// down_proj's 74 KiB at 7B shapes, holds an SM to two blocks); codes: the e4m3 codes themselves in their order (1 byte
// an input; norms take a second area of hidden f32 values), decoded in the product's loop as fp8_gemv_kernel decodes
// x — the same values, so the same sums. Ahead: 16-byte loads in flight a lane (fp8_gemv_kernel's 4, or 8).
// MinBlocks: blocks an SM asked of the register allocation.
template <int Ahead, bool Codes, int MinBlocks> struct tail_form {
  static constexpr int ahead = Ahead;
  static constexpr bool codes = Codes;
  static constexpr int min_blocks = MinBlocks;
};

// A block's staged row: values (f32; with codes, the norms' scratch of `hidden` values) and codes (codes forms).
struct staged_row {
  float* values;
  uint8_t* codes;
};

// Where element el of a staged row of `chunks` 16-element chunks sits among the values: fp8_qgemv_kernel's layout
// (float4 q of chunk c at q · chunks + c, so that a warp's lanes, on consecutive chunks, read consecutive 16-byte
// words), or in order where the values are only scratch (codes forms).
template <bool Codes> __device__ __forceinline__ int slot(int el, int chunks) {
  if constexpr (Codes) return el;
  else return ((el % 16 / 4) * chunks + el / 16) * 4 + el % 4;
}

// Each staged value (an f32 holding a T) made the value of its e4m3 code over scale s (values forms), or its code
// written among the codes (codes forms); then the block's barrier.
template <class T, bool Codes> __device__ void quantize_staged(const staged_row& st, int k, float s) {
  constexpr int N = vec16<T>;
  const int chunks = k / 16;
  for (int i = threadIdx.x * N; i < k; i += kTailThreads * N) {
    vec<uint8_t, N> q;
#pragma unroll
    for (int e = 0; e < N; ++e) {
      float& v = st.values[slot<Codes>(i + e, chunks)];
      q.v[e] = fp8_activation_code(v, s);
      if constexpr (!Codes) v = fp8_decode(q.v[e], false);
    }
    if constexpr (Codes) store_vec(st.codes + i, q);
  }
  __syncthreads();
}

// Stages row x [k] as linear_fp8 quantizes it; returns its scale. The codes forms read x twice from L2 (its max, then
// its codes) rather than keep k f32 values.
template <class T, bool Codes> __device__ float stage_input(const T* x, int k, const float* static_scale, const staged_row& st) {
  constexpr int N = vec16<T>;
  const int chunks = k / 16;
  float amax = 0.0f;
  for (int i = threadIdx.x * N; i < k; i += kTailThreads * N) {
    const vec<T, N> v = load_coherent(x + i);
#pragma unroll
    for (int e = 0; e < N; ++e) {
      const float f = to_float(v.v[e]);
      amax = fmaxf(amax, fabsf(f));
      if constexpr (!Codes) st.values[slot<false>(i + e, chunks)] = f;
    }
  }
  const float s = static_scale ? *static_scale : fp8_activation_scale(block_max(amax));
  if constexpr (!Codes) {
    quantize_staged<T, false>(st, k, s);
  } else {
    for (int i = threadIdx.x * N; i < k; i += kTailThreads * N) {
      const vec<T, N> v = load_coherent(x + i);
      vec<uint8_t, N> q;
#pragma unroll
      for (int e = 0; e < N; ++e) q.v[e] = fp8_activation_code(to_float(v.v[e]), s);
      store_vec(st.codes + i, q);
    }
    __syncthreads();
  }
  return s;
}

// add_rms_norm_fp8 of one row, staged: r = delta + residual (rounded to T; written to residual_out where given),
// then rms_norm(r) · weight rounded to T, then (quantize) its codes, returning the scale. Without quantize the normed
// values stay among the values as they are (the last layer's stream for the LM head).
template <class T, bool Codes>
__device__ float stage_norm(const T* delta, const T* residual, T* residual_out, const T* __restrict__ weight, int h,
                            float eps, const float* static_scale, const staged_row& st, bool quantize) {
  constexpr int N = vec16<T>;
  const int chunks = h / 16;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x * N; i < h; i += kTailThreads * N) {
    const vec<T, N> a = load_coherent(delta + i);
    vec<T, N> r = load_coherent(residual + i);
#pragma unroll
    for (int e = 0; e < N; ++e) {
      r.v[e] = from_float<T>(to_float(a.v[e]) + to_float(r.v[e]));
      const float z = to_float(r.v[e]);
      sum_sq += z * z;
      st.values[slot<Codes>(i + e, chunks)] = z;
    }
    if (residual_out) store_vec(residual_out + i, r);
  }
  const float inv = rsqrtf(block_sum(sum_sq) / h + eps);
  float amax = 0.0f;
  for (int i = threadIdx.x * N; i < h; i += kTailThreads * N) {
    const vec<T, N> w = load_vec<T, N>(weight + i);
#pragma unroll
    for (int e = 0; e < N; ++e) {
      float& v = st.values[slot<Codes>(i + e, chunks)];
      v = to_float(from_float<T>(to_float(w.v[e]) * (v * inv)));
      amax = fmaxf(amax, fabsf(v));
    }
  }
  if (!quantize) {
    __syncthreads();
    return 0.0f;
  }
  const float s = static_scale ? *static_scale : fp8_activation_scale(block_max(amax));
  quantize_staged<T, Codes>(st, h, s);
  return s;
}

// The weight rows of a product's item j: `row`, and `pair` (the row summed beside it: up's for silu, the other half of
// a rotated pair for q/k/v with rope), or pair < 0. Items past the product's end have row < 0.
struct item_rows {
  int row, pair;
};

// A warp's first loads a lane of item j's rows: issued before the barrier that ends the phase before, as
// fp8_qgemv_kernel issues them before its wait on the kernel before. Pairs: whether any item has two rows.
template <bool Pairs, int Ahead>
__device__ __forceinline__ void first_loads(const uint8_t* weight, int k, item_rows r, uint4 (&ahead)[Ahead],
                                            uint4 (&ahead_up)[Ahead]) {
  const int lane = threadIdx.x % 32, chunks = k / 16;
  const uint8_t* wr = weight + static_cast<int64_t>(r.row < 0 ? 0 : r.row) * k;
  const uint8_t* wp = weight + static_cast<int64_t>(r.pair < 0 ? 0 : r.pair) * k;
#pragma unroll
  for (int i = 0; i < Ahead; ++i) {
    const int c = lane + 32 * i;
    ahead[i] = r.row >= 0 && c < chunks ? load_streaming(wr + 16 * c) : make_uint4(0, 0, 0, 0);
    if constexpr (Pairs) ahead_up[i] = r.pair >= 0 && c < chunks ? load_streaming(wp + 16 * c) : make_uint4(0, 0, 0, 0);
  }
}

// The 16 staged inputs of chunk c as f32.
template <bool Codes> __device__ __forceinline__ void staged_chunk(const staged_row& st, int chunks, int c, float (&xv)[16]) {
  if constexpr (Codes) {
    const uint4 x = *reinterpret_cast<const uint4*>(st.codes + 16 * c);
    const uint32_t xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(xs[i] >> (16 * h)), __NV_E4M3);
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&r));
        xv[4 * i + 2 * h] = f.x;
        xv[4 * i + 2 * h + 1] = f.y;
      }
  } else {
    const float4* x_values = reinterpret_cast<const float4*>(st.values);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float4 f = x_values[q * chunks + c];
      xv[4 * q] = f.x, xv[4 * q + 1] = f.y, xv[4 * q + 2] = f.z, xv[4 * q + 3] = f.w;
    }
  }
}

// Items j = first, first + stride, ... of p (rows_of(j): their weight rows) by the staged row: fp8_qgemv_kernel's loop,
// whose first loads the caller issued (first_loads), then emit(j, rows, sum, pair's sum) on lane 0. Each lane takes its
// chunks in the same order whatever the loads ahead (lane, lane + 32, ...), so every form sums alike.
// NOTE: the loop repeats fp8_qgemv_kernel's rather than that kernel calling this: a shared helper changed the machine
// code of the GEMV kernels the GPU check has passed and timed (linear_fp8.cu, 2026-12-06), which the check's "bits"
// rows hold this one to instead.
template <class T, bool Pairs, class Form, class RowsOf, class Emit>
__device__ void product(const staged_row& st, const fp8_product<T>& p, int items, int first, int stride,
                        uint4 (&ahead)[Form::ahead], uint4 (&ahead_up)[Form::ahead], RowsOf rows_of, Emit emit) {
  constexpr int A = Form::ahead;
  const int lane = threadIdx.x % 32, chunks = p.k / 16;
  for (int j = first; j < items; j += stride) {
    const item_rows r = rows_of(j);
    const uint8_t* wr = p.weight + static_cast<int64_t>(r.row) * p.k;
    const uint8_t* wp = p.weight + static_cast<int64_t>(r.pair < 0 ? 0 : r.pair) * p.k;
    float acc = 0.0f, acc_up = 0.0f;
    for (int c0 = lane; c0 < chunks; c0 += 32 * A) {
#pragma unroll
      for (int i = 0; i < A; ++i) {
        const int c = c0 + 32 * i;
        const uint4 wv = ahead[i];
        const int next = c + 32 * A;
        ahead[i] = next < chunks ? load_streaming(wr + 16 * next) : make_uint4(0, 0, 0, 0);
        uint4 uv{};
        if constexpr (Pairs) {
          uv = ahead_up[i];
          ahead_up[i] = r.pair >= 0 && next < chunks ? load_streaming(wp + 16 * next) : make_uint4(0, 0, 0, 0);
        }
        if (c >= chunks) continue;
        float xv[16];
        staged_chunk<Form::codes>(st, chunks, c, xv);
        acc = dot16_e4m3_f32(wv, xv, acc);
        if constexpr (Pairs) acc_up = dot16_e4m3_f32(uv, xv, acc_up);
      }
    }
    const int next_item = j + stride;  // its loads in flight during the sums
    first_loads<Pairs, A>(p.weight, p.k, next_item < items ? rows_of(next_item) : item_rows{-1, -1}, ahead, ahead_up);
    const float sum = warp_sum(acc);
    const float sum_up = Pairs ? warp_sum(acc_up) : 0.0f;
    if (lane == 0) emit(j, r, sum, sum_up);
  }
}

// fp8_qgemv_kernel's output arithmetic for row o of p: each step rounded on its own (the compiler would fuse the
// product and the bias into one FMA otherwise, which fp8_gemv_kernel does not).
template <class T> __device__ __forceinline__ T product_output(const fp8_product<T>& p, float x_scale, float total, int o) {
  const float value = __fmul_rn(total, __fmul_rn(x_scale, p.scale[o]));
  return from_float<T>(p.bias ? __fadd_rn(value, to_float(p.bias[o])) : value);
}

// out[j] = output j of p, for every j.
template <class T, class Form>
__device__ void plain_product(const staged_row& st, float x_scale, const fp8_product<T>& p, T* out, int first,
                              int stride, uint4 (&ahead)[Form::ahead], uint4 (&ahead_up)[Form::ahead]) {
  product<T, false, Form>(st, p, p.n, first, stride, ahead, ahead_up, [](int j) { return item_rows{j, -1}; },
                          [&](int j, item_rows, float sum, float) { out[j] = product_output(p, x_scale, sum, j); });
}

// out[j] = silu(gate j) · (up j), gate and up stacked in p (2 · n_out rows), each rounded to T first.
template <class T, class Form>
__device__ void silu_product(const staged_row& st, float x_scale, const fp8_product<T>& p, T* out, int first,
                             int stride, uint4 (&ahead)[Form::ahead], uint4 (&ahead_up)[Form::ahead]) {
  const int n_out = p.n / 2;
  product<T, true, Form>(st, p, n_out, first, stride, ahead, ahead_up, [=](int j) { return item_rows{j, n_out + j}; },
                         [&](int j, item_rows, float sum, float sum_up) {
                           out[j] = from_float<T>(silu_times(to_float(product_output(p, x_scale, sum, j)),
                                                             to_float(product_output(p, x_scale, sum_up, n_out + j))));
                         });
}

// The weight rows of rope item j (rope_args): pair j of the q and k heads' rotated halves, then the v outputs.
__device__ __forceinline__ item_rows rope_rows(const rope_args& r, int j) {
  const int half = r.head_dim / 2, pairs = (r.num_heads + r.num_kv_heads) * half;
  if (j >= pairs) return {(r.num_heads + r.num_kv_heads) * r.head_dim + (j - pairs), -1};
  const int row = j / half * r.head_dim + j % half;
  return {row, row + half};
}
__device__ __forceinline__ int rope_items(const rope_args& r) {
  return (r.num_heads + r.num_kv_heads) * (r.head_dim / 2) + r.num_kv_heads * r.head_dim;
}

// One value into the cache at idx: rounded to T, or over its scale to FP8 (rope_write_kv.cu's store_cache).
template <class T> __device__ __forceinline__ void store_cache_value(const rope_args& r, void* cache, int64_t idx, float x,
                                                                    float scale) {
  if (r.cache == 0) static_cast<T*>(cache)[idx] = from_float<T>(x);
  else static_cast<uint8_t*>(cache)[idx] = fp8_encode(__fdiv_rn(x, scale), r.cache == 2);
}

// q/k/v = the product of p, its q and k heads rotated and k and v written into the caches: linear_fp8 then
// rope_write_kv, in their arithmetic — each output rounded to T, the rotation in f32 without fused multiply-adds and
// rounded once to T, the cache written from the f32 rotation (over its scale for FP8). Out of the table's positions, k
// goes to the cache as it is and nothing rotates, as there.
template <class T, class Form>
__device__ void rope_product(const staged_row& st, float x_scale, const fp8_product<T>& p, T* out, const rope_args& r,
                             int first, int stride, uint4 (&ahead)[Form::ahead], uint4 (&ahead_up)[Form::ahead]) {
  const int half = r.head_dim / 2, d = r.head_dim;
  const int32_t pos = r.positions[0];
  const int64_t slot = r.slot_mapping[0];
  const int64_t kv_width = static_cast<int64_t>(r.num_kv_heads) * d;
  const bool rotate = pos >= 0 && pos < r.max_pos;
  const float* cos = r.cos_sin + static_cast<int64_t>(rotate ? pos : 0) * d;
  const float* sin = cos + half;
  const int pairs = (r.num_heads + r.num_kv_heads) * half;
  product<T, true, Form>(st, p, rope_items(r), first, stride, ahead, ahead_up, [&](int j) { return rope_rows(r, j); },
                         [&](int j, item_rows rows, float sum, float sum_up) {
                           const T a = product_output(p, x_scale, sum, rows.row);
                           if (rows.pair < 0) {  // v
                             out[rows.row] = a;
                             if (slot >= 0) store_cache_value<T>(r, r.v_cache, slot * kv_width + (j - pairs), to_float(a), r.v_scale);
                             return;
                           }
                           const T b = product_output(p, x_scale, sum_up, rows.pair);
                           const int h = j / half, c = j % half;
                           float fa = to_float(a), fb = to_float(b);
                           if (rotate) {
                             const float va = fa, vb = fb;
                             fa = __fsub_rn(__fmul_rn(va, cos[c]), __fmul_rn(vb, sin[c]));
                             fb = __fadd_rn(__fmul_rn(vb, cos[c]), __fmul_rn(va, sin[c]));
                           }
                           out[rows.row] = from_float<T>(fa);
                           out[rows.pair] = from_float<T>(fb);
                           if (h >= r.num_heads && slot >= 0) {
                             const int64_t at = slot * kv_width + static_cast<int64_t>(h - r.num_heads) * d + c;
                             store_cache_value<T>(r, r.k_cache, at, fa, r.k_scale);
                             store_cache_value<T>(r, r.k_cache, at + half, fb, r.k_scale);
                           }
                         });
}

// The shared memory a form's block stages in: values for the longest row, or codes for it and values for the norms.
template <class Form> constexpr size_t staged_bytes(int64_t max_k, int64_t hidden) {
  if constexpr (Form::codes) return static_cast<size_t>(hidden) * sizeof(float) + static_cast<size_t>(max_k + 15) / 16 * 16;
  else return static_cast<size_t>(max_k) * sizeof(float);
}

template <class T, class Form>
__global__ void __launch_bounds__(kTailThreads, Form::min_blocks) fp8_layer_tail_kernel(const tail_args<T> a) {
  extern __shared__ float4 staged_memory[];
  const int h = a.hidden_size;
  const staged_row st{reinterpret_cast<float*>(staged_memory),
                      Form::codes ? reinterpret_cast<uint8_t*>(staged_memory) + static_cast<size_t>(h) * sizeof(float)
                                  : nullptr};
  const int first = blockIdx.x * kTailWarps + threadIdx.x / 32, stride = gridDim.x * kTailWarps;
  constexpr int A = Form::ahead;
  constexpr bool C = Form::codes;
  // The first rows of a plain product's item (or past its end).
  auto plain_first = [&](const fp8_product<T>& p) { return item_rows{first < p.n ? first : -1, -1}; };
  uint4 ahead[A], ahead_up[A];
  first_loads<true, A>(a.o_proj.weight, a.o_proj.k, plain_first(a.o_proj), ahead, ahead_up);
  pdl_wait();  // attention's output is the kernel before's

  float s = stage_input<T, C>(a.attn, a.o_proj.k, a.o_proj.input_scale, st);
  plain_product<T, Form>(st, s, a.o_proj, a.hidden, first, stride, ahead, ahead_up);
  const int n_act = a.gate_up.n / 2;
  first_loads<true, A>(a.gate_up.weight, a.gate_up.k, first < n_act ? item_rows{first, n_act + first} : item_rows{-1, -1},
                       ahead, ahead_up);
  grid_barrier(a.barrier);

  s = stage_norm<T, C>(a.hidden, a.residual, blockIdx.x == 0 ? a.residual_mid : nullptr, a.post_norm, h, a.eps,
                       a.gate_up.input_scale, st, true);
  silu_product<T, Form>(st, s, a.gate_up, a.act, first, stride, ahead, ahead_up);
  first_loads<true, A>(a.down.weight, a.down.k, plain_first(a.down), ahead, ahead_up);
  grid_barrier(a.barrier);

  s = stage_input<T, C>(a.act, a.down.k, a.down.input_scale, st);
  plain_product<T, Form>(st, s, a.down, a.hidden, first, stride, ahead, ahead_up);
  const bool last = a.qkv.weight == nullptr, rope = a.rope.positions != nullptr;
  if (!last)
    first_loads<true, A>(a.qkv.weight, a.qkv.k,
                         rope ? (first < rope_items(a.rope) ? rope_rows(a.rope, first) : item_rows{-1, -1})
                              : plain_first(a.qkv),
                         ahead, ahead_up);
  grid_barrier(a.barrier);

  s = stage_norm<T, C>(a.hidden, a.residual_mid, blockIdx.x == 0 ? a.residual : nullptr, a.next_norm, h, a.eps,
                       a.qkv.input_scale, st, !last);
  if (!last) {
    if (rope) rope_product<T, Form>(st, s, a.qkv, a.qkv_out, a.rope, first, stride, ahead, ahead_up);
    else plain_product<T, Form>(st, s, a.qkv, a.qkv_out, first, stride, ahead, ahead_up);
    return;
  }
  // The last layer: the normed stream into hidden, once every block has read down_proj's output from there.
  grid_barrier(a.barrier);
  if (blockIdx.x == 0)
    for (int i = threadIdx.x; i < h; i += kTailThreads) a.hidden[i] = from_float<T>(st.values[slot<C>(i, h / 16)]);
}

template <class T> fp8_product<T> product_of(const fp8_device_weight& w, const tensor& bias) {
  fp8_product<T> p;
  p.weight = w.weight.as<uint8_t>();
  p.scale = w.scale.as<float>();
  p.input_scale = w.input_scale.empty() ? nullptr : w.input_scale.as<float>();
  p.bias = bias.empty() ? nullptr : bias.as<T>();
  p.n = static_cast<int>(w.weight.dim(0));
  p.k = static_cast<int>(w.weight.dim(1));
  return p;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the kernel takes these arguments (launch_fp8_layer_tail's shapes, dtypes and alignment).
bool fp8_layer_tail_takes(const fp8_layer_tail_args& a) {
  if (a.residual.empty() || a.residual.dim(0) != 1 || a.residual.type == dtype::f32) return false;
  const int64_t h = a.residual.dim(1);
  auto fits = [&](const fp8_device_weight* w, int64_t n, int64_t k) {
    return w && w->weight.type == dtype::f8_e4m3 && w->weight.rank == 2 && (n < 0 || w->weight.dim(0) == n) &&
           w->weight.dim(1) == k && k % 16 == 0 && k <= kTailMaxK && aligned16(w->weight.data) &&
           w->scale.type == dtype::f32 && w->scale.numel() == w->weight.dim(0) &&
           (w->input_scale.empty() || (w->input_scale.type == dtype::f32 && w->input_scale.numel() == 1));
  };
  if (!a.o_proj || !a.gate_up || !a.down) return false;
  const int64_t inter = a.gate_up->weight.dim(0) / 2;
  const bool shapes = fits(a.o_proj, h, a.attn.numel()) && fits(a.gate_up, -1, h) && a.gate_up->weight.dim(0) % 2 == 0 &&
                      fits(a.down, h, inter) && (!a.next_qkv || fits(a.next_qkv, a.qkv.numel(), h)) &&
                      h % 16 == 0 && h <= kTailMaxK;
  if (!shapes) return false;
  const dtype t = a.residual.type;
  for (const tensor* x : {&a.attn, &a.post_norm, &a.next_norm, &a.hidden, &a.residual_mid, &a.act})
    if (x->type != t || !aligned16(x->data)) return false;
  if (a.next_qkv && (a.qkv.type != t || !aligned16(a.qkv.data))) return false;
  for (const tensor* b : {&a.o_bias, &a.next_qkv_bias})
    if (!b->empty() && b->type != t) return false;
  const bool sizes = a.act.numel() >= inter && a.hidden.numel() >= h && a.residual_mid.numel() >= h &&
                     a.post_norm.numel() == h && a.next_norm.numel() == h && (a.o_bias.empty() || a.o_bias.numel() == h) &&
                     (a.next_qkv_bias.empty() || (a.next_qkv && a.next_qkv_bias.numel() == a.next_qkv->weight.dim(0)));
  if (!sizes || a.rope.positions.empty()) return sizes;
  // The rope's operands, as launch_rope_write_kv checks them.
  const auto& r = a.rope;
  const attention_shape& sh = r.shape;
  const int64_t d = sh.head_dim;
  const bool fp8 = r.k_cache.type == dtype::f8_e4m3 || r.k_cache.type == dtype::f8_e5m2;
  return a.next_qkv && d > 0 && d % 2 == 0 && sh.num_heads > 0 && sh.num_kv_heads > 0 &&
         a.qkv.numel() == (sh.num_heads + 2 * int64_t{sh.num_kv_heads}) * d && r.positions.type == dtype::i32 &&
         r.positions.numel() >= 1 && r.slot_mapping.type == dtype::i64 && r.slot_mapping.numel() >= 1 &&
         r.cos_sin.type == dtype::f32 && r.cos_sin.rank == 2 && r.cos_sin.dim(1) == d && r.k_cache.type == r.v_cache.type &&
         (fp8 || r.k_cache.type == t) && r.k_cache.row_elems() == int64_t{sh.block_size} * sh.num_kv_heads * d &&
         r.v_cache.row_elems() == r.k_cache.row_elems() && (!fp8 || (sh.k_scale > 0 && sh.v_scale > 0));
}

} // namespace


bool launch_fp8_layer_tail(cuda_context& ctx, const fp8_layer_tail_args& a, bool w16) {
  const fp8_switches& sw = fp8_settings();
  if (sw.tail == 0 || !sw.path.empty() || w16 || !fp8_layer_tail_takes(a) || ctx.grid_barrier == nullptr) return false;
  const int64_t h = a.residual.dim(1);
  const int64_t max_k = std::max({h, a.attn.numel(), a.gate_up->weight.dim(0) / 2});
  bool launched = false;
  auto run = [&](auto form) {
    using Form = decltype(form);
    const size_t smem = staged_bytes<Form>(max_k, h);
    if (smem > kTailSharedMax) return;
    make_current(ctx);
    dispatch_float(a.residual.type, "fp8_layer_tail", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (!std::is_same_v<T, float>) {
        const auto kernel = fp8_layer_tail_kernel<T, Form>;
        allow_shared_memory<fp8_layer_tail_kernel<T, Form>>(kTailSharedMax, "fp8_layer_tail: shared memory");
        // One wave, every block resident (the grid barrier needs it): the blocks an SM holds by registers and shared
        // memory, asked once for each row length a thread launches.
        static thread_local size_t asked_smem = 0;
        static thread_local int per_sm = 0;
        if (asked_smem != smem) {
          check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kTailThreads, smem), "fp8_layer_tail");
          asked_smem = smem;
        }
        if (per_sm < 1) throw std::runtime_error("cuda fp8_layer_tail: no block fits an SM");
        tail_args<T> args{};
        args.attn = a.attn.as<T>();
        args.o_proj = product_of<T>(*a.o_proj, a.o_bias);
        args.gate_up = product_of<T>(*a.gate_up, tensor{});
        args.down = product_of<T>(*a.down, tensor{});
        if (a.next_qkv) args.qkv = product_of<T>(*a.next_qkv, a.next_qkv_bias);
        args.post_norm = a.post_norm.as<T>();
        args.next_norm = a.next_norm.as<T>();
        args.hidden = a.hidden.as<T>();
        args.residual = a.residual.as<T>();
        args.residual_mid = a.residual_mid.as<T>();
        args.act = a.act.as<T>();
        args.qkv_out = a.next_qkv ? a.qkv.as<T>() : nullptr;
        args.hidden_size = static_cast<int>(h);
        args.eps = a.eps;
        args.barrier = ctx.grid_barrier;
        if (!a.rope.positions.empty()) {
          const auto& r = a.rope;
          args.rope.positions = r.positions.as<int32_t>();
          args.rope.cos_sin = r.cos_sin.as<float>();
          args.rope.max_pos = static_cast<int>(r.cos_sin.dim(0));
          args.rope.slot_mapping = r.slot_mapping.as<int64_t>();
          args.rope.k_cache = r.k_cache.data;
          args.rope.v_cache = r.v_cache.data;
          args.rope.cache = r.k_cache.type == dtype::f8_e4m3 ? 1 : r.k_cache.type == dtype::f8_e5m2 ? 2 : 0;
          args.rope.k_scale = r.shape.k_scale;
          args.rope.v_scale = r.shape.v_scale;
          args.rope.num_heads = r.shape.num_heads;
          args.rope.num_kv_heads = r.shape.num_kv_heads;
          args.rope.head_dim = r.shape.head_dim;
        }
        launch_dependent_shared(kernel, dim3(static_cast<unsigned>(per_sm * ctx.sm_count)), dim3(kTailThreads), smem,
                                ctx.stream, "fp8_layer_tail", args);
        launched = true;
      }
    });
  };
  switch (fp8_settings().tail) {
    case 2: run(tail_form<4, true, 3>{}); break;
    case 3: run(tail_form<4, true, 4>{}); break;
    case 4: run(tail_form<8, true, 2>{}); break;
    default: run(tail_form<4, false, 1>{}); break;
  }
  if (launched) check_launch("fp8_layer_tail");
  return launched;
}

} // namespace troupe::cuda
