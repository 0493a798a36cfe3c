// Paged attention for prefill, chunked prefill and decode in one kernel: every new token attends
// causally to its sequence's context, read through the block table, with an online softmax.
//
// A block (CTA) takes kWarps query rows that share one KV head: rows are (token, head of the group)
// pairs of one sequence, head fastest, so a decode step of a GQA model puts a whole group in one block
// and the K/V it streams serve every head of the group. K/V tiles of kKeys positions are staged in
// shared memory with 16-byte loads; each lane scores one key of the tile against its warp's query, the
// warp updates its running max and sum once per tile, then accumulates P·V with each lane owning the
// output dims lane, lane + 32, ...
//
// Decode steps (one new token per sequence) also split each sequence's context into partitions of
// part_keys positions, one block each, as flash-decoding does: a decode step has only num_seqs *
// num_kv_heads blocks otherwise (4 at batch 1, on 132 SMs), each walking the whole context alone. Each
// partition writes its running max, sum and unnormalized output in fp32; a second kernel combines them.
// Partitions sit at fixed multiples of part_keys and their number depends only on the launch's
// arguments, so a graph recorded with the longest context computes exactly what an eager step does.
//
// bf16 and f16 with head_dim 64, 80, 96 or 128 run on the tensor cores instead (paged_attention_mma.cu,
// same rows, partitions and combine); this kernel serves fp32 and every other shape.
//
// An FP8 cache (fp8_kv.cuh) is staged as its codes converted to T (exact), k_scale folded into the
// pre-scaled query and v_scale into the output.

#include <cfloat>
#include <cstdlib>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/launchers.hpp"
#include "kernels/cuda/paged_attention_params.cuh"

namespace troupe::cuda {
namespace {

constexpr int kWarps = 8;            // query rows per block
constexpr int kKeys = 32;            // key positions per shared-memory tile: one per lane
constexpr int kMaxHeadDim = 256;
constexpr int kDimsPerLane = kMaxHeadDim / 32;

// Row stride of a staged K/V tile: 16 bytes of padding put the 8 lanes of each quarter-warp reading
// 16-byte vectors from 8 different rows in 8 different bank groups.
template <class T> __host__ __device__ constexpr int tile_ld(int head_dim) { return head_dim + 16 / int(sizeof(T)); }

template <class T> size_t shared_bytes(int head_dim) {
  return 2 * size_t(kKeys) * tile_ld<T>(head_dim) * sizeof(T) + size_t(kWarps) * head_dim * sizeof(float);
}

// N cache elements at `src` as N values of T: copied, or FP8 codes converted exactly.
template <class T, class C, int N> __device__ __forceinline__ vec<T, N> load_cache(const C* src, bool e5m2) {
  if constexpr (std::is_same_v<C, T>) {
    return load_vec<T, N>(src);
  } else {
    const vec<uint8_t, N> codes = load_vec<uint8_t, N>(src);
    vec<T, N> out;
#pragma unroll
    for (int e = 0; e < N; ++e) out.v[e] = from_float<T>(fp8_decode(codes.v[e], e5m2));
    return out;
  }
}

// grid (row tiles * num_parts, num_kv_heads, num_seqs), kWarps * 32 threads. C: the cache's element type,
// T or uint8_t (FP8 codes).
template <class T, class C>
__global__ void __launch_bounds__(kWarps * 32)
paged_attention_kernel(const T* __restrict__ qkv, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
                       attention_params p, T* __restrict__ out) {
  if (p.trigger) pdl_launch_dependents();  // the combine or o_proj may start; each waits for this kernel's end
  extern __shared__ __align__(16) unsigned char smem[];
  const int d = p.head_dim, ld = tile_ld<T>(d);
  T* k_tile = reinterpret_cast<T*>(smem);  // [kKeys, ld]
  T* v_tile = k_tile + kKeys * ld;         // [kKeys, ld]
  float* q_rows = reinterpret_cast<float*>(v_tile + kKeys * ld);  // [kWarps, d], pre-scaled

  const attention_block b = locate_attention_block(p, kWarps);
  const int seq = b.seq, kv_head = b.kv_head, group = b.group, q_begin = b.q_begin, part = b.part;
  const int num_rows = b.num_rows, row0 = b.row0, lo = b.lo, hi = b.hi;
  if (row0 >= num_rows) return;  // the whole block leaves together

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = row0 + warp;
  const bool active = row < num_rows;
  const int i = row / group;                        // the row's token within the sequence
  const int head = kv_head * group + row % group;
  const int64_t token = q_begin + i;
  const int pos = b.pos_of(row);
  const int first = p.sliding_window > 0 ? max(0, pos - p.sliding_window + 1) : 0;

  if (active)
    for (int c = lane; c < d; c += 32)
      q_rows[warp * d + c] = to_float(qkv[token * p.qkv_stride + int64_t(head) * d + c]) * (p.scale * p.k_scale);

  const int64_t kv_width = int64_t(p.num_kv_heads) * d;
  const int32_t* table = p.block_tables + int64_t(seq) * p.max_blocks;
  constexpr int N = vec16<T>;
  const int vecs_per_row = d / N;

  float m = -FLT_MAX, l = 0.0f;  // running max (finite so that m - m stays 0) and sum of exp
  float acc[kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) acc[r] = 0.0f;

  for (int start = lo; start < hi; start += kKeys) {
    __syncthreads();  // the previous tile is consumed (and, the first time, q_rows is written)
    for (int idx = threadIdx.x; idx < kKeys * vecs_per_row; idx += kWarps * 32) {
      const int key = idx / vecs_per_row, c = (idx % vecs_per_row) * N;
      const int kpos = start + key;
      vec<T, N> kv{}, vv{};
      // Positions past the block's range are zero-filled: their weight is 0, and 0 · garbage could be NaN.
      if (kpos < hi) {
        const int64_t slot = int64_t(table[kpos / p.block_size]) * p.block_size + kpos % p.block_size;
        const int64_t off = slot * kv_width + int64_t(kv_head) * d + c;
        kv = load_cache<T, C, N>(k_cache + off, p.kv_e5m2);
        vv = load_cache<T, C, N>(v_cache + off, p.kv_e5m2);
      }
      store_vec(k_tile + key * ld + c, kv);
      store_vec(v_tile + key * ld + c, vv);
    }
    __syncthreads();
    if (!active) continue;

    const int kpos = start + lane;
    float s = -INFINITY;
    if (kpos >= first && kpos <= pos) {
      const T* k = k_tile + lane * ld;
      const float* q = q_rows + warp * d;
      float dot = 0.0f;
      for (int c = 0; c < d; c += N) {
        const vec<T, N> kv = load_vec<T, N>(k + c);
#pragma unroll
        for (int e = 0; e < N; ++e) dot += q[c + e] * to_float(kv.v[e]);
      }
      s = dot;
    }
    const float m_new = fmaxf(m, warp_max(s));
    const float correction = __expf(m - m_new);
    const float weight = __expf(s - m_new);  // 0 for masked keys
    l = l * correction + warp_sum(weight);
    m = m_new;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; ++r) acc[r] *= correction;
    const int keys = min(kKeys, hi - start);
    for (int key = 0; key < keys; ++key) {
      const float w = __shfl_sync(0xffffffffu, weight, key);
      const T* v = v_tile + key * ld;
#pragma unroll
      for (int r = 0; r < kDimsPerLane; ++r)
        if (lane + 32 * r < d) acc[r] += w * to_float(v[lane + 32 * r]);
    }
  }
  if (!active) return;
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r) acc[r] *= p.v_scale;
  if (p.num_parts > 1) {
    const int64_t r = (token * p.num_heads + head) * p.num_parts + part;
    if (lane == 0) {
      p.part_ml[2 * r] = m;
      p.part_ml[2 * r + 1] = l;
    }
    float* a = p.part_acc + r * d;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k)
      if (lane + 32 * k < d) a[lane + 32 * k] = acc[k];
    return;
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* o = out + token * int64_t(p.num_heads) * d + int64_t(head) * d;
#pragma unroll
  for (int r = 0; r < kDimsPerLane; ++r)
    if (lane + 32 * r < d) o[lane + 32 * r] = from_float<T>(acc[r] * inv);
}

// out[t, h] = Σ_p exp(m_p − M) acc_p / Σ_p exp(m_p − M) l_p over the partitions p of row (t, h), M the
// largest m_p. An empty partition has m = −FLT_MAX and l = acc = 0, so it adds nothing.
// grid (T * nH), 128 threads.
template <class T>
__global__ void combine_partitions_kernel(const float* __restrict__ part_ml, const float* __restrict__ part_acc,
                                          int num_parts, int head_dim, T* __restrict__ out, bool trigger) {
  if (trigger) pdl_launch_dependents();  // o_proj may start streaming its weights
  pdl_wait();  // a programmatic dependent of the attention kernel (attention_settings().trigger), whose partitions it reads
  const int64_t r = blockIdx.x;  // token * nH + head; out rows are [T, nH, D]
  const float* ml = part_ml + r * num_parts * 2;
  float big = -FLT_MAX;
  for (int i = 0; i < num_parts; ++i) big = fmaxf(big, ml[2 * i]);
  float sum = 0.0f;
  for (int i = 0; i < num_parts; ++i) sum += __expf(ml[2 * i] - big) * ml[2 * i + 1];
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    float v = 0.0f;
    for (int i = 0; i < num_parts; ++i) v += __expf(ml[2 * i] - big) * part_acc[(r * num_parts + i) * head_dim + c];
    out[r * head_dim + c] = from_float<T>(v * inv);
  }
}

// The combine over `rows` (token, head) rows: as a programmatic dependent of the attention kernel where p.trigger.
template <class T>
void launch_combine(const attention_params& p, int num_parts, int head_dim, const tensor& out, int64_t rows,
                    cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(rows));
  if (p.trigger)
    launch_dependent(combine_partitions_kernel<T>, grid, dim3(128), stream, "paged_attention combine", p.part_ml,
                     p.part_acc, num_parts, head_dim, out.as<T>(), true);
  else
    combine_partitions_kernel<T><<<grid, 128, 0, stream>>>(p.part_ml, p.part_acc, num_parts, head_dim, out.as<T>(), false);
}

} // namespace

attention_switches& attention_settings() {
  static attention_switches settings = [] {
    auto on = [](const char* name) {
      const char* v = std::getenv(name);
      return v && *v && *v != '0';
    };
    attention_switches a;
    if (const char* v = std::getenv("TROUPE_ATTN_TRIGGER"); v && *v) a.trigger = *v == '0' ? 0 : 1;
    a.simt = on("TROUPE_ATTN_SIMT");
    a.no_split = on("TROUPE_NO_ATTN_SPLIT");
    if (const char* v = std::getenv("TROUPE_ATTN_PREFILL_LEAN"); v && *v) a.prefill_lean = *v != '0';
    if (const char* v = std::getenv("TROUPE_ATTN_FP8_F16"); v && *v) a.fp8_f16 = *v != '0';
    if (const char* v = std::getenv("TROUPE_ATTN_FP8_DIRECT"); v && *v) a.fp8_direct = *v != '0';
    if (const char* v = std::getenv("TROUPE_ATTN_DIRECT_STAGES"); v && *v) a.direct_stages = std::atoi(v) == 3 ? 3 : 2;
    const char* keys = std::getenv("TROUPE_ATTN_PART_KEYS");
    a.part_keys = keys ? std::atoi(keys) : 0;
    return a;
  }();
  return settings;
}

int paged_attention_partitions(const attention_metadata& meta, const attention_shape& s, dtype type, int64_t num_tokens,
                               int64_t workspace_floats, int* part_keys) {
  // Small batches take short partitions, so that a single sequence still spreads over many SMs; from
  // 512 (sequence, KV head) blocks on, the grid fills the GPU without a split, and a split only adds the
  // combine (H100, 256 sequences × 640 positions × 4 KV heads: 0.204 ms with 128-position partitions,
  // 0.175 with 256, 0.152 without). Lengths are multiples of 64, the tensor-core kernel's K/V tile.
  // attention_settings().part_keys sets the length for batches of 128 blocks and more, to measure.
  const attention_switches& settings = attention_settings();
  const int64_t blocks = int64_t(meta.num_seqs) * s.num_kv_heads;
  const int set_keys = settings.part_keys >= 64 && settings.part_keys % 64 == 0 ? settings.part_keys : 0;
  if (set_keys == 0 && blocks >= 512) return 1;
  const int keys = blocks < 128 ? 2 * kKeys : set_keys ? set_keys : 4 * kKeys;
  *part_keys = keys;
  // fp32 keeps the one-pass order of summation: it is the dtype checked for bit-identical greedy
  // continuations against transformers, and a reordered sum flipped a near-tie there (the reference
  // mistral model, 2026-11-25). Speed matters in bf16 and f16.
  if (settings.no_split || type == dtype::f32 || meta.max_query_len != 1 || workspace_floats <= 0) return 1;
  const int64_t parts = (int64_t(meta.max_seq_len) + keys - 1) / keys;
  const int64_t per_part = num_tokens * s.num_heads * (int64_t(s.head_dim) + 2);
  if (parts <= 1 || parts > 1024 || parts * per_part > workspace_floats) return 1;
  return static_cast<int>(parts);
}

void launch_paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache, const attention_metadata& meta,
                            const attention_shape& s, const tensor& out, float* workspace, int64_t workspace_floats,
                            cudaStream_t stream) {
  const bool fp8 = is_fp8(k_cache.type);
  if (qkv.type != out.type || k_cache.type != v_cache.type || (!fp8 && qkv.type != k_cache.type))
    throw std::invalid_argument("cuda paged_attention: qkv and output must share a dtype, and the caches too, or be "
                                "both FP8 of one kind");
  if (fp8 && !(s.k_scale > 0 && s.v_scale > 0))
    throw std::invalid_argument("cuda paged_attention: FP8 cache scales must be positive");
  if (meta.query_start.type != dtype::i32 || meta.seq_lens.type != dtype::i32 || meta.block_tables.type != dtype::i32)
    throw std::invalid_argument("cuda paged_attention: query_start, seq_lens and block_tables must be i32");
  if (s.num_kv_heads <= 0 || s.num_heads % s.num_kv_heads != 0 || s.head_dim > kMaxHeadDim ||
      qkv.dim(1) != (s.num_heads + 2 * int64_t(s.num_kv_heads)) * s.head_dim ||
      out.row_elems() != int64_t(s.num_heads) * s.head_dim)
    throw std::invalid_argument("cuda paged_attention: qkv " + shape_of(qkv) + " and output " + shape_of(out) +
                                " disagree with the attention shape (head_dim at most 256)");
  if (meta.num_seqs == 0 || meta.max_query_len == 0) return;
  const int group = s.num_heads / s.num_kv_heads;
  const int64_t row_tiles = (int64_t(meta.max_query_len) * group + kWarps - 1) / kWarps;
  int part_keys = 0;
  const int num_parts = paged_attention_partitions(meta, s, qkv.type, qkv.dim(0), workspace_floats, &part_keys);
  if (row_tiles * num_parts > INT32_MAX || meta.num_seqs > 65535 || s.num_kv_heads > 65535)
    throw std::invalid_argument("cuda paged_attention: step too large for one launch");
  attention_params p{meta.query_start.as<int32_t>(), meta.seq_lens.as<int32_t>(), meta.block_tables.as<int32_t>(),
                     static_cast<int>(meta.block_tables.dim(1)), qkv.dim(1), s.num_heads, s.num_kv_heads, s.head_dim,
                     s.block_size, meta.sliding_window, s.scale, num_parts, part_keys, nullptr, nullptr};
  if (num_parts > 1) {
    p.part_ml = workspace;
    p.part_acc = workspace + qkv.dim(0) * s.num_heads * int64_t(num_parts) * 2;
  }
  const int trigger = attention_settings().trigger;
  p.trigger = s.next_waits && meta.max_query_len == 1 && (trigger > 0 || (trigger < 0 && meta.num_seqs <= 8));
  if (fp8) {
    p.kv_e5m2 = k_cache.type == dtype::f8_e5m2;
    p.k_scale = s.k_scale;
    p.v_scale = s.v_scale;
  }
  // Tensor cores where the shape allows (attention_settings().simt keeps the CUDA-core kernel, to compare).
  if (mma_attention_supports(qkv.type, s.head_dim) && !attention_settings().simt &&
      can_vectorize<uint16_t>(s.head_dim, {qkv.data, k_cache.data, v_cache.data, out.data}) && qkv.dim(1) % 8 == 0) {
    launch_paged_attention_mma(qkv, k_cache, v_cache, meta, s, p, out, stream);
    check_launch("paged_attention");
    if (num_parts > 1) {
      dispatch_float(qkv.type, "paged_attention", [&](auto tag) {
        using T = typename decltype(tag)::type;
        launch_combine<T>(p, num_parts, s.head_dim, out, qkv.dim(0) * s.num_heads, stream);
      });
      check_launch("paged_attention combine");
    }
    return;
  }
  dispatch_float(qkv.type, "paged_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!can_vectorize<T>(s.head_dim, {qkv.data, k_cache.data, v_cache.data}))
      throw std::invalid_argument("cuda paged_attention: head_dim must fill whole 16-byte vectors (a multiple of " +
                                  std::to_string(vec16<T>) + ")");
    const size_t smem = shared_bytes<T>(s.head_dim);
    const dim3 grid(static_cast<unsigned>(row_tiles * num_parts), static_cast<unsigned>(s.num_kv_heads),
                    static_cast<unsigned>(meta.num_seqs));
    auto run = [&](auto cache_tag) {
      using C = typename decltype(cache_tag)::type;
      if (smem > 48 * 1024)
        check(cudaFuncSetAttribute(paged_attention_kernel<T, C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(smem)),
              "paged_attention shared memory");
      paged_attention_kernel<T, C><<<grid, kWarps * 32, smem, stream>>>(qkv.as<T>(), k_cache.as<C>(), v_cache.as<C>(), p,
                                                                       out.as<T>());
    };
    if (fp8) run(std::type_identity<uint8_t>{});
    else run(std::type_identity<T>{});
    if (num_parts > 1) {
      check_launch("paged_attention");
      launch_combine<T>(p, num_parts, s.head_dim, out, qkv.dim(0) * s.num_heads, stream);
    }
  });
  check_launch("paged_attention");
}

} // namespace troupe::cuda
