// Rotary embedding (rotate-half) of the q and k heads in place, fused with the write of k and v into
// the paged KV cache, so each token's row is read once.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 128;

// One block per token. A rotation item is N consecutive pairs (c, c + D/2) of one q or k head; a copy
// item is N consecutive elements of v. Rotation is done in fp32 and rounded once.
template <class T, int N>
__global__ void __launch_bounds__(kThreads)
rope_write_kv_kernel(T* __restrict__ qkv, int64_t row_stride, const int32_t* __restrict__ positions,
                     const float* __restrict__ cos_sin, int max_pos, const int64_t* __restrict__ slot_mapping,
                     T* __restrict__ k_cache, T* __restrict__ v_cache, int num_heads, int num_kv_heads, int head_dim) {
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
      vec<T, N> ra, rb;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float fa = to_float(a.v[k]), fb = to_float(b.v[k]);
        ra.v[k] = from_float<T>(fa * cos[c + k] - fb * sin[c + k]);
        rb.v[k] = from_float<T>(fb * cos[c + k] + fa * sin[c + k]);
      }
      store_vec(x, ra);
      store_vec(x + half, rb);
      if (h >= num_heads && slot >= 0) {
        T* dst = k_cache + slot * kv_width + (h - num_heads) * head_dim + c;
        store_vec(dst, ra);
        store_vec(dst + half, rb);
      }
    }
  } else if (slot >= 0) {
    // Unrotated k still goes to the cache so that the cache never holds stale values for this slot.
    for (int i = threadIdx.x * N; i < kv_width; i += kThreads * N)
      store_vec(k_cache + slot * kv_width + i, load_vec<T, N>(row + static_cast<int64_t>(num_heads) * head_dim + i));
  }
  if (slot < 0) return;
  const T* v = row + static_cast<int64_t>(num_heads + num_kv_heads) * head_dim;
  for (int i = threadIdx.x * N; i < kv_width; i += kThreads * N)
    store_vec(v_cache + slot * kv_width + i, load_vec<T, N>(v + i));
}

} // namespace

void launch_rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin, const tensor& slot_mapping,
                          const tensor& k_cache, const tensor& v_cache, const attention_shape& s, cudaStream_t stream) {
  const int64_t tokens = qkv.dim(0), d = s.head_dim;
  if (positions.type != dtype::i32 || slot_mapping.type != dtype::i64 || cos_sin.type != dtype::f32)
    throw std::invalid_argument("cuda rope_write_kv: positions must be i32, slot_mapping i64 and cos_sin f32");
  if (qkv.type != k_cache.type || qkv.type != v_cache.type)
    throw std::invalid_argument("cuda rope_write_kv: qkv and the caches must share a dtype");
  if (d % 2 != 0 || qkv.dim(1) != (s.num_heads + 2 * int64_t(s.num_kv_heads)) * d || cos_sin.dim(1) != d ||
      k_cache.row_elems() != int64_t(s.block_size) * s.num_kv_heads * d)
    throw std::invalid_argument("cuda rope_write_kv: qkv " + shape_of(qkv) + ", cos_sin " + shape_of(cos_sin) +
                                ", cache " + shape_of(k_cache) + " disagree with the attention shape");
  if (tokens == 0) return;
  dispatch_float(qkv.type, "rope_write_kv", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto launch = [&](auto n) {
      constexpr int N = decltype(n)::value;
      rope_write_kv_kernel<T, N><<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(
          qkv.as<T>(), qkv.dim(1), positions.as<int32_t>(), cos_sin.as<float>(), static_cast<int>(cos_sin.dim(0)),
          slot_mapping.as<int64_t>(), k_cache.as<T>(), v_cache.as<T>(), s.num_heads, s.num_kv_heads, s.head_dim);
    };
    // Vectors need whole 16-byte units in each half head (so that also in every row and cache row).
    if (can_vectorize<T>(d / 2, {qkv.data, k_cache.data, v_cache.data})) launch(std::integral_constant<int, vec16<T>>{});
    else launch(std::integral_constant<int, 1>{});
  });
  check_launch("rope_write_kv");
}

} // namespace troupe::cuda
