// Rotary embedding (rotate-half) of the q and k heads in place, fused with the write of k and v into
// the paged KV cache, so each token's row is read once. An FP8 cache (fp8_kv.cuh) gets each value over
// its scale, rounded as the CPU twin rounds: from the f32 rotation for k (not from its rounding to the
// activation dtype), so both backends store the same bytes.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 128;

// Where the kernel writes k and v: a cache in the activation dtype T (C = T), or in FP8 (C = uint8_t).
struct fp8_write {
  float k_scale, v_scale;
  bool e5m2;
};

// N values computed in f32 into the cache at dst: rounded to T, or divided by `scale` and rounded to FP8
// (a correctly rounded division, as the CPU's x / scale).
template <class T, class C, int N>
__device__ __forceinline__ void store_cache(C* dst, const float (&x)[N], float scale, const fp8_write& f) {
  if constexpr (std::is_same_v<C, T>) {
    vec<T, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k) out.v[k] = from_float<T>(x[k]);
    store_vec(dst, out);
  } else {
    vec<uint8_t, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k) out.v[k] = fp8_encode(__fdiv_rn(x[k], scale), f.e5m2);
    store_vec(dst, out);
  }
}

template <class T, class C, int N>
__device__ __forceinline__ void copy_to_cache(C* dst, const T* src, float scale, const fp8_write& f) {
  const vec<T, N> v = load_vec<T, N>(src);
  float x[N];
#pragma unroll
  for (int k = 0; k < N; ++k) x[k] = to_float(v.v[k]);
  store_cache<T, C, N>(dst, x, scale, f);
}

// One block per token. A rotation item is N consecutive pairs (c, c + D/2) of one q or k head; a copy
// item is N consecutive elements of v. Rotation is done in fp32, without fused multiply-adds (the CPU
// twin's a·cos − b·sin, rounded after each operation), and rounded once to T.
template <class T, class C, int N>
__global__ void __launch_bounds__(kThreads)
rope_write_kv_kernel(T* __restrict__ qkv, int64_t row_stride, const int32_t* __restrict__ positions,
                     const float* __restrict__ cos_sin, int max_pos, const int64_t* __restrict__ slot_mapping,
                     C* __restrict__ k_cache, C* __restrict__ v_cache, int num_heads, int num_kv_heads, int head_dim,
                     fp8_write f) {
  const int64_t t = blockIdx.x;
  const int half = head_dim / 2, chunks = half / N;
  const int32_t pos = positions[t];
  const int64_t slot = slot_mapping[t];
  const int64_t kv_width = static_cast<int64_t>(num_kv_heads) * head_dim;
  T* row = qkv + t * row_stride;
  if (pos >= 0 && pos < max_pos) {
    const float* cos = cos_sin + static_cast<int64_t>(pos) * head_dim;
    const float* sin = cos + half;
    for (int item = threadIdx.x; item < (num_heads + num_kv_heads) * chunks; item += kThreads) {
      const int h = item / chunks, c = (item % chunks) * N;
      T* x = row + h * head_dim + c;
      const vec<T, N> a = load_vec<T, N>(x), b = load_vec<T, N>(x + half);
      float fa[N], fb[N];
      vec<T, N> ra, rb;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float va = to_float(a.v[k]), vb = to_float(b.v[k]);
        fa[k] = __fsub_rn(__fmul_rn(va, cos[c + k]), __fmul_rn(vb, sin[c + k]));
        fb[k] = __fadd_rn(__fmul_rn(vb, cos[c + k]), __fmul_rn(va, sin[c + k]));
        ra.v[k] = from_float<T>(fa[k]);
        rb.v[k] = from_float<T>(fb[k]);
      }
      store_vec(x, ra);
      store_vec(x + half, rb);
      if (h >= num_heads && slot >= 0) {
        C* dst = k_cache + slot * kv_width + (h - num_heads) * head_dim + c;
        store_cache<T, C, N>(dst, fa, f.k_scale, f);
        store_cache<T, C, N>(dst + half, fb, f.k_scale, f);
      }
    }
  } else if (slot >= 0) {
    // Unrotated k still goes to the cache so that the cache never holds stale values for this slot.
    for (int i = threadIdx.x * N; i < kv_width; i += kThreads * N)
      copy_to_cache<T, C, N>(k_cache + slot * kv_width + i, row + static_cast<int64_t>(num_heads) * head_dim + i,
                             f.k_scale, f);
  }
  if (slot < 0) return;
  const T* v = row + static_cast<int64_t>(num_heads + num_kv_heads) * head_dim;
  for (int i = threadIdx.x * N; i < kv_width; i += kThreads * N)
    copy_to_cache<T, C, N>(v_cache + slot * kv_width + i, v + i, f.v_scale, f);
}

} // namespace

void launch_rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin, const tensor& slot_mapping,
                          const tensor& k_cache, const tensor& v_cache, const attention_shape& s, cudaStream_t stream) {
  const int64_t tokens = qkv.dim(0), d = s.head_dim;
  if (positions.type != dtype::i32 || slot_mapping.type != dtype::i64 || cos_sin.type != dtype::f32)
    throw std::invalid_argument("cuda rope_write_kv: positions must be i32, slot_mapping i64 and cos_sin f32");
  const bool fp8 = is_fp8(k_cache.type);
  if (k_cache.type != v_cache.type || (!fp8 && qkv.type != k_cache.type))
    throw std::invalid_argument("cuda rope_write_kv: the caches must share qkv's dtype, or both be FP8 of one kind");
  if (d % 2 != 0 || qkv.dim(1) != (s.num_heads + 2 * int64_t(s.num_kv_heads)) * d || cos_sin.dim(1) != d ||
      k_cache.row_elems() != int64_t(s.block_size) * s.num_kv_heads * d)
    throw std::invalid_argument("cuda rope_write_kv: qkv " + shape_of(qkv) + ", cos_sin " + shape_of(cos_sin) +
                                ", cache " + shape_of(k_cache) + " disagree with the attention shape");
  if (fp8 && !(s.k_scale > 0 && s.v_scale > 0))
    throw std::invalid_argument("cuda rope_write_kv: FP8 cache scales must be positive");
  if (tokens == 0) return;
  const fp8_write f{s.k_scale, s.v_scale, k_cache.type == dtype::f8_e5m2};
  dispatch_float(qkv.type, "rope_write_kv", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto launch = [&](auto n, auto cache_tag) {
      constexpr int N = decltype(n)::value;
      using C = typename decltype(cache_tag)::type;
      rope_write_kv_kernel<T, C, N><<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(
          qkv.as<T>(), qkv.dim(1), positions.as<int32_t>(), cos_sin.as<float>(), static_cast<int>(cos_sin.dim(0)),
          slot_mapping.as<int64_t>(), k_cache.as<C>(), v_cache.as<C>(), s.num_heads, s.num_kv_heads, s.head_dim, f);
    };
    auto launch_for = [&](auto cache_tag) {
      // Vectors need whole 16-byte units of T in each half head (so that also in every row and cache row).
      if (can_vectorize<T>(d / 2, {qkv.data, k_cache.data, v_cache.data}))
        launch(std::integral_constant<int, vec16<T>>{}, cache_tag);
      else launch(std::integral_constant<int, 1>{}, cache_tag);
    };
    if (fp8) launch_for(std::type_identity<uint8_t>{});
    else launch_for(std::type_identity<T>{});
  });
  check_launch("rope_write_kv");
}

} // namespace troupe::cuda
