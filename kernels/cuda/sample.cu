// Sampling on the device, the twin of sample_cpu (kernels/cpu/sampler.hpp): one block per row, so a
// sampled step downloads one integer per sequence.
//
// A row: a constrained row's allowed-token bitmask first (others to -inf), then the sparse edits
// (min_tokens masks, logit_bias, penalties) in place, in the CPU's order and
// rounding; a greedy row then takes the argmax. Otherwise, with v = logit / temperature and m = max v,
// each masking step keeps a prefix of one order, v descending and the lower id first among equals:
// min_p keeps v with exp(v - m) >= min_p, top_k the first k, top_p the shortest prefix (of what the
// first two kept) whose mass reaches top_p. So nothing is sorted: each cut is found as its last kept
// token, a (key, id) pair, by radix selection over the order-preserving 32-bit key of v (per-bucket
// counts for top_k, counts and masses for top_p), with the tie at the cut resolved by id. Then the
// inverse-CDF draw: W = Σ exp(double(v - m)) over the kept tokens, and the first id, in id order, whose
// running sum exceeds u·W, with u = sampling_uniform(seed, draw_index) computed bit for bit.
//
// Sums run in another order than the CPU's sequential ones (per warp, per segment, per bucket), so a
// token may differ only where the CPU's running sum lies within rounding (≈1e-15 relative) of u·W or
// of top_p·total. Every sum is taken in a fixed order, so the same inputs give the same tokens.

#include <cfloat>
#include <climits>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBuckets = 256;        // 8-bit digits: four radix passes over a 32-bit key
constexpr int kSegments = 64;        // contiguous id ranges: their sums locate a cut or a draw in one pass
constexpr int kItems = 8;            // consecutive tokens per thread in the draw's ordered scan
constexpr unsigned kAll = 0xffffffffu;

// Per-warp histograms, so a warp adds to its own buckets without atomics and the sums of the warps are
// taken in a fixed order.
struct histogram_smem {
  uint32_t warp_count[kWarps][kBuckets];
  double warp_mass[kWarps][kBuckets];
  double lane_mass[kWarps][32];
  uint32_t count[kBuckets];
  double mass[kBuckets];
};

// The last kept token of a cut; keeps everything when not valid.
struct cut {
  uint32_t key = 0;
  int64_t id = 0;
  bool valid = false;
};

// --- the randomness contract (sampler.hpp) ---

__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

__device__ __forceinline__ double sampling_uniform(uint64_t seed, uint64_t index) {
  return static_cast<double>(mix(mix(seed) ^ index) >> 11) * 0x1.0p-53;
}

// --- values, keys and the order ---

// The logit after temperature, rounded as the CPU's `x /= t` (no contraction, IEEE division).
__device__ __forceinline__ float scaled(float x, float t) { return t == 1.0f ? x : __fdiv_rn(x, t); }

// Larger floats give larger keys; -0 and +0 share a key, as they compare equal on the CPU.
__device__ __forceinline__ uint32_t order_key(float v) {
  uint32_t u = __float_as_uint(v);
  if ((u << 1) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float value_of_key(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// exp(double(v - m)) as the CPU computes it: the difference rounded in float first.
__device__ __forceinline__ double weight(float v, float m) { return exp(static_cast<double>(__fsub_rn(v, m))); }

// True when token (key, i) is the cut's last kept token or ranks before it.
__device__ __forceinline__ bool within(const cut& c, uint32_t key, int64_t i) {
  return !c.valid || key > c.key || (key == c.key && i <= c.id);
}

// --- reductions (every thread gets the result; sums in a fixed order) ---

template <class T> __device__ __forceinline__ T warp_sum_of(T x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kAll, x, o);
  return x;
}

template <class T, class Op> __device__ T block_reduce(T x, Op op) {
  __shared__ T partial[kWarps];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(kAll, x, o));
  __syncthreads();  // a previous call may still read partial
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = x;
  __syncthreads();
  T r = partial[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, partial[w]);
  return r;
}

// (value, id) with the larger value winning and the lower id winning ties; NaN never wins.
__device__ __forceinline__ void keep_better(float& v, int64_t& i, float ov, int64_t oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// --- passes over a row ---

struct row_view {
  float* data;
  int64_t vocab;
  int64_t segment;  // tokens per segment, a multiple of 8
  bool vec;         // vocab % 4 == 0 and the row 16-byte aligned: float4 loads
  float t;          // temperature (1 leaves logits as they are)
};

// Calls f(valid, i, v) for every token, the same number of times in every thread (warp-collective
// work may sit inside f); v is the logit after temperature.
template <class F> __device__ __forceinline__ void for_each_uniform(const row_view& r, F&& f) {
  if (r.vec) {
    const float4* r4 = reinterpret_cast<const float4*>(r.data);
    const int64_t n4 = r.vocab / 4;
    for (int64_t base = 0; base < n4; base += kThreads) {
      const int64_t j = base + threadIdx.x;
      const bool valid = j < n4;
      const float4 q = valid ? r4[j] : make_float4(0.f, 0.f, 0.f, 0.f);
      f(valid, 4 * j, scaled(q.x, r.t));
      f(valid, 4 * j + 1, scaled(q.y, r.t));
      f(valid, 4 * j + 2, scaled(q.z, r.t));
      f(valid, 4 * j + 3, scaled(q.w, r.t));
    }
  } else {
    for (int64_t base = 0; base < r.vocab; base += kThreads) {
      const int64_t i = base + threadIdx.x;
      const bool valid = i < r.vocab;
      f(valid, i, valid ? scaled(r.data[i], r.t) : 0.0f);
    }
  }
}

// Calls f(i, v) for every token this thread owns.
template <class F> __device__ __forceinline__ void for_each(const row_view& r, F&& f) {
  if (r.vec) {
    const float4* r4 = reinterpret_cast<const float4*>(r.data);
    const int64_t n4 = r.vocab / 4;
#pragma unroll 2
    for (int64_t j = threadIdx.x; j < n4; j += kThreads) {
      const float4 q = r4[j];
      f(4 * j, scaled(q.x, r.t));
      f(4 * j + 1, scaled(q.y, r.t));
      f(4 * j + 2, scaled(q.z, r.t));
      f(4 * j + 3, scaled(q.w, r.t));
    }
  } else {
    for (int64_t i = threadIdx.x; i < r.vocab; i += kThreads) f(i, scaled(r.data[i], r.t));
  }
}

__device__ __forceinline__ int64_t segment_begin(const row_view& r, int s) { return min(r.vocab, s * r.segment); }
__device__ __forceinline__ int64_t segment_end(const row_view& r, int s) { return min(r.vocab, (s + 1) * r.segment); }

// out[s] = Σ f(i, v) over segment s, one warp per segment; then a barrier.
template <class T, class F> __device__ void segment_sums(const row_view& r, F&& f, T* out) {
  const int lane = threadIdx.x % 32;
  for (int s = threadIdx.x / 32; s < kSegments; s += kWarps) {
    const int64_t begin = segment_begin(r, s), end = segment_end(r, s);
    T acc = 0;
    if (r.vec) {
      const float4* r4 = reinterpret_cast<const float4*>(r.data);
#pragma unroll 4
      for (int64_t j = begin / 4 + lane; j < end / 4; j += 32) {
        const float4 q = r4[j];
        acc += f(4 * j, scaled(q.x, r.t));
        acc += f(4 * j + 1, scaled(q.y, r.t));
        acc += f(4 * j + 2, scaled(q.z, r.t));
        acc += f(4 * j + 3, scaled(q.w, r.t));
      }
    } else {
      for (int64_t i = begin + lane; i < end; i += 32) acc += f(i, scaled(r.data[i], r.t));
    }
    acc = warp_sum_of(acc);
    if (lane == 0) out[s] = acc;
  }
  __syncthreads();
}

// The lowest id among the largest values (argmax_lowest_id); 0 when every value is NaN.
__device__ int64_t block_argmax(const row_view& r) {
  float best = -INFINITY;
  int64_t index = INT64_MAX;
  for_each(r, [&](int64_t i, float v) { keep_better(best, index, v, i); });
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) keep_better(best, index, __shfl_xor_sync(kAll, best, o), __shfl_xor_sync(kAll, index, o));
  __shared__ float values[kWarps];
  __shared__ int64_t indices[kWarps];
  __syncthreads();
  if (threadIdx.x % 32 == 0) {
    values[threadIdx.x / 32] = best;
    indices[threadIdx.x / 32] = index;
  }
  __syncthreads();
  best = values[0];
  index = indices[0];
  for (int w = 1; w < kWarps; ++w) keep_better(best, index, values[w], indices[w]);
  return index == INT64_MAX ? 0 : index;
}

// Fills h.count (and h.mass with Mass) over the tokens `pred` admits whose key agrees with `prefix`
// above bit shift + 8, bucketed by the key's 8 bits at `shift`; ends with a barrier.
template <bool Mass, class Pred>
__device__ void histogram(const row_view& r, float m, const Pred& pred, uint32_t prefix, int shift, histogram_smem& h) {
  for (int i = threadIdx.x; i < kWarps * kBuckets; i += kThreads) {
    (&h.warp_count[0][0])[i] = 0;
    if (Mass) (&h.warp_mass[0][0])[i] = 0.0;
  }
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint32_t* count = h.warp_count[warp];
  double* mass = h.warp_mass[warp];
  double* lanes = h.lane_mass[warp];
  for_each_uniform(r, [&](bool valid, int64_t i, float v) {
    bool in = false;
    uint32_t digit = 0;
    double w = 0.0;
    if (valid) {
      const uint32_t key = order_key(v);
      if ((shift == 24 || (key >> (shift + 8)) == prefix) && pred(i, v, key)) {
        in = true;
        digit = (key >> shift) & 0xffu;
        if (Mass) w = weight(v, m);
      }
    }
    const unsigned active = __ballot_sync(kAll, in);
    if (in) {
      // One lane per distinct digit adds the group's count and mass (summed in lane order).
      const unsigned peers = __match_any_sync(active, digit);
      if (Mass) lanes[lane] = w;
      __syncwarp(active);
      if (lane == __ffs(peers) - 1) {
        count[digit] += __popc(peers);
        if (Mass) {
          double s = 0.0;
          for (unsigned b = peers; b; b &= b - 1) s += lanes[__ffs(b) - 1];
          mass[digit] += s;
        }
      }
    }
    __syncwarp();
  });
  __syncthreads();
  for (int b = threadIdx.x; b < kBuckets; b += kThreads) {
    uint32_t c = 0;
    double s = 0.0;
    for (int w = 0; w < kWarps; ++w) {
      c += h.warp_count[w][b];
      if (Mass) s += h.warp_mass[w][b];
    }
    h.count[b] = c;
    h.mass[b] = s;
  }
  __syncthreads();
}

// The id of the n-th (from 1, in id order) token with key `key` that `pred` admits: counts per
// segment, then one warp walks the segment that holds it. -1 when there are fewer than n.
template <class Pred> __device__ int64_t nth_id(const row_view& r, const Pred& pred, uint32_t key, int64_t n) {
  __shared__ int32_t counts[kSegments];
  __shared__ int64_t found;
  segment_sums<int32_t>(
      r, [&](int64_t i, float v) { return order_key(v) == key && pred(i, v, key) ? 1 : 0; }, counts);
  int s = 0;
  int64_t before = 0;
  for (; s < kSegments && before + counts[s] < n; ++s) before += counts[s];
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    if (lane == 0) found = -1;
    if (s < kSegments) {
      int64_t need = n - before;
      const int64_t end = segment_end(r, s);
      for (int64_t base = segment_begin(r, s); base < end; base += 32) {
        const int64_t i = base + lane;
        bool hit = false;
        if (i < end) {
          const float v = scaled(r.data[i], r.t);
          hit = order_key(v) == key && pred(i, v, key);
        }
        unsigned bits = __ballot_sync(kAll, hit);
        const int c = __popc(bits);
        if (c >= need) {
          for (int64_t k = 1; k < need; ++k) bits &= bits - 1;
          if (lane == 0) found = base + __ffs(bits) - 1;
          break;
        }
        need -= c;
      }
    }
  }
  __syncthreads();
  return found;
}

// The last kept token of a cut over the tokens `pred` admits, ranked by (key descending, id
// ascending). Mass: the shortest prefix whose mass exp(v - m) reaches top_p of the admitted mass
// (at least one token). Otherwise: the first `goal` tokens (not valid when fewer are admitted).
template <bool Mass, class Pred>
__device__ cut select_cut(const row_view& r, float m, const Pred& pred, int64_t goal, float top_p, histogram_smem& h) {
  uint32_t prefix = 0;
  int64_t above_count = 0;  // admitted tokens with keys above the prefix's range
  double above_mass = 0.0;
  double target = 0.0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    histogram<Mass>(r, m, pred, prefix, shift, h);
    int lowest = -1;
    for (int b = 0; b < kBuckets && lowest < 0; ++b)
      if (h.count[b] > 0) lowest = b;
    if (lowest < 0) return cut{};  // nothing admitted (only possible in the first pass)
    if (Mass && pass == 0) {
      double total = 0.0;
      for (int b = 0; b < kBuckets; ++b) total += h.mass[b];
      target = static_cast<double>(top_p) * total;
    }
    // Walk the buckets from the top; every thread does it alike.
    int digit = -1;
    for (int b = kBuckets - 1; b >= 0; --b) {
      const uint32_t c = h.count[b];
      if (c == 0) continue;
      const bool here = Mass ? (above_mass + h.mass[b] >= target || b == lowest) : (above_count + c >= goal);
      if (here) {
        digit = b;
        break;
      }
      above_count += c;
      above_mass += h.mass[b];
    }
    if (digit < 0) return cut{};  // fewer than goal tokens: the cut keeps them all
    prefix = (prefix << 8) | static_cast<uint32_t>(digit);
  }
  // prefix is now the key of the last kept token; equals share it and rank by id.
  const int64_t equal = h.count[prefix & 0xffu];
  int64_t n = goal - above_count;
  if (Mass) {
    const double w = weight(value_of_key(prefix), m);
    const double need = (target - above_mass) / w;
    n = w > 0.0 && need < static_cast<double>(equal) ? static_cast<int64_t>(ceil(need)) : equal;
  }
  n = n < 1 ? 1 : (n > equal ? equal : n);
  cut c;
  c.key = prefix;
  c.id = nth_id(r, pred, prefix, n);
  c.valid = c.id >= 0;
  return c;
}

// --- the row ---

__device__ void apply_edits(float* row, int64_t vocab, const sampling_row& p, const int32_t* masks,
                            const logit_bias_entry* biases, const penalty_entry* penalties, const uint32_t* bitmasks,
                            int64_t bitmask_words) {
  if (p.bitmask_row >= 0) {  // row-uniform
    // sampling_inputs already put the end ids into a bitmask that allowed nothing (effective_bitmask).
    const uint32_t* words = bitmasks + static_cast<int64_t>(p.bitmask_row) * bitmask_words;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads)
      if (!((words[i >> 5] >> (i & 31)) & 1u)) row[i] = -INFINITY;
    __syncthreads();
  }
  const bool any = p.mask_end > p.mask_begin || p.bias_end > p.bias_begin || p.penalty_end > p.penalty_begin;
  if (!any) return;  // row-uniform: every thread returns
  for (int i = p.mask_begin + threadIdx.x; i < p.mask_end; i += kThreads) {
    const int32_t id = masks[i];
    if (id >= 0 && id < vocab) row[id] = -INFINITY;
  }
  __syncthreads();
  for (int i = p.bias_begin + threadIdx.x; i < p.bias_end; i += kThreads) {
    const logit_bias_entry e = biases[i];
    if (e.id >= 0 && e.id < vocab) row[e.id] = __fadd_rn(row[e.id], e.bias);
  }
  __syncthreads();
  const bool repetition = p.repetition_penalty != 1.0f;
  for (int i = p.penalty_begin + threadIdx.x; i < p.penalty_end; i += kThreads) {
    const penalty_entry e = penalties[i];
    if (e.id < 0 || e.id >= vocab) continue;
    float x = row[e.id];
    if (repetition && (e.in_prompt || e.output_count > 0))
      x = x > 0.0f ? __fdiv_rn(x, p.repetition_penalty) : __fmul_rn(x, p.repetition_penalty);
    if (e.output_count > 0) {
      x = __fsub_rn(x, __fmul_rn(p.frequency_penalty, static_cast<float>(e.output_count)));
      x = __fsub_rn(x, p.presence_penalty);
    }
    row[e.id] = x;
  }
  __syncthreads();
}

// The draw over the kept tokens: the first id whose running sum exceeds u·W.
template <class Kept> __device__ int64_t draw(const row_view& r, float m, const Kept& kept, double u) {
  __shared__ double sums[kSegments];
  __shared__ double warp_totals[kWarps];
  __shared__ int first;
  __shared__ int64_t picked;
  auto w_of = [&](int64_t i, float v) { return kept(i, v, order_key(v)) ? weight(v, m) : 0.0; };
  segment_sums<double>(r, w_of, sums);
  double total = 0.0;
  int last_nonzero = -1;
  for (int s = 0; s < kSegments; ++s) {
    total += sums[s];
    if (sums[s] > 0.0) last_nonzero = s;
  }
  if (!(total > 0.0) || !isfinite(total)) return -1;
  const double target = u * total;
  int seg = -1;
  double before = 0.0;
  for (int s = 0; s < kSegments; ++s) {
    if (before + sums[s] > target) {
      seg = s;
      break;
    }
    before += sums[s];
  }
  if (seg < 0) {  // u·W rounded to W: the last token with weight, as on the CPU
    seg = last_nonzero;
    before = 0.0;
    for (int s = 0; s < seg; ++s) before += sums[s];
  }

  // An ordered scan of the segment, kItems consecutive tokens per thread.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t end = segment_end(r, seg);
  if (threadIdx.x == 0) picked = -1;
  int64_t last_positive = -1;
  double base = before;
  for (int64_t chunk = segment_begin(r, seg); chunk < end; chunk += int64_t{kItems} * kThreads) {
    const int64_t i0 = chunk + int64_t{kItems} * threadIdx.x;
    double w[kItems];
    double local = 0.0;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t i = i0 + k;
      w[k] = i < end ? w_of(i, scaled(r.data[i], r.t)) : 0.0;
      local += w[k];
      if (w[k] > 0.0) last_positive = i;
    }
    double incl = local;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(kAll, incl, o);
      if (lane >= o) incl += y;
    }
    double excl = __shfl_up_sync(kAll, incl, 1);
    if (lane == 0) excl = 0.0;
    if (lane == 31) warp_totals[warp] = incl;
    if (threadIdx.x == 0) first = INT_MAX;
    __syncthreads();
    double warp_before = 0.0, chunk_total = 0.0;
    for (int k = 0; k < kWarps; ++k) {
      if (k == warp) warp_before = chunk_total;
      chunk_total += warp_totals[k];
    }
    const double start = base + (warp_before + excl);
    if (base + (warp_before + incl) > target) atomicMin(&first, static_cast<int>(threadIdx.x));
    __syncthreads();
    if (static_cast<int>(threadIdx.x) == first) {
      double c = start;
      int64_t pick = -1, mine = -1;
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        if (w[k] > 0.0) {
          mine = i0 + k;
          if (pick < 0) {
            c += w[k];
            if (c > target) pick = i0 + k;
          }
        }
      }
      // A thread crosses only with weight of its own; rounding may leave its last such token to take.
      picked = pick >= 0 ? pick : mine;
    }
    __syncthreads();
    if (picked >= 0) return picked;
    base += chunk_total;
    __syncthreads();  // warp_totals and first are rewritten by the next chunk
  }
  // The segment's own sum fell short of what its total promised: its last token with weight.
  const int64_t last = block_reduce(last_positive, [](int64_t a, int64_t b) { return a > b ? a : b; });
  return last;
}

// Two blocks per multiprocessor cap registers at 64 (a few spill) so 256 rows run in one wave on 132 SMs:
// measured on the H100 (kernels/cuda/NOTES.md), one block per SM without spills was 1.3-1.5x slower.
__global__ void __launch_bounds__(kThreads, 2)
    sample_kernel(float* logits, int64_t vocab, int64_t segment, bool vec, const sampling_row* rows,
                  const int32_t* masks, const logit_bias_entry* biases, const penalty_entry* penalties,
                  const uint32_t* bitmasks, int64_t bitmask_words, int32_t* out) {
  extern __shared__ __align__(16) unsigned char smem[];
  histogram_smem& h = *reinterpret_cast<histogram_smem*>(smem);
  const sampling_row p = rows[blockIdx.x];
  float* data = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  apply_edits(data, vocab, p, masks, biases, penalties, bitmasks, bitmask_words);

  row_view raw{data, vocab, segment, vec, 1.0f};
  if (p.greedy) {
    const int64_t id = block_argmax(raw);
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(id);
    return;
  }
  const row_view r{data, vocab, segment, vec, p.temperature};
  float m = -INFINITY;
  for_each(r, [&](int64_t, float v) { m = fmaxf(m, v); });
  m = block_reduce(m, [](float a, float b) { return fmaxf(a, b); });
  if (m == -INFINITY) {  // every token masked: the CPU falls back to the argmax
    const int64_t id = block_argmax(r);
    if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(id);
    return;
  }

  // min_p: exp(v - m) >= min_p, decided in float far from the edge and in double near it.
  const float min_p = p.min_p;
  const double log_min_p = min_p > 0.0f ? log(static_cast<double>(min_p)) : 0.0;
  auto min_p_keeps = [=](float v) {
    if (!(min_p > 0.0f)) return true;
    const double d = static_cast<double>(__fsub_rn(v, m));
    if (d > log_min_p + 1e-6) return true;
    if (d < log_min_p - 1e-6) return false;
    return exp(d) >= static_cast<double>(min_p);
  };
  cut top_k, top_p;
  if (p.top_k > 0)
    top_k = select_cut<false>(r, m, [](int64_t, float, uint32_t) { return true; }, p.top_k, 1.0f, h);
  auto first_two = [=](int64_t i, float v, uint32_t key) { return within(top_k, key, i) && min_p_keeps(v); };
  if (p.top_p < 1.0f)
    top_p = select_cut<true>(
        r, m, [=](int64_t i, float v, uint32_t key) { return v != -INFINITY && first_two(i, v, key); }, 0, p.top_p,
        h);
  auto kept = [=](int64_t i, float v, uint32_t key) { return within(top_p, key, i) && first_two(i, v, key); };
  int64_t id = draw(r, m, kept, sampling_uniform(p.seed, p.draw_index));
  if (id < 0) id = block_argmax(r);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<int32_t>(id);
}

} // namespace

void launch_sample(const tensor& logits, const sampling_batch& batch, const tensor& out, cudaStream_t stream) {
  const int64_t rows = batch.num_rows(), vocab = logits.row_elems();
  if (logits.type != dtype::f32 || logits.dim(0) != rows || out.type != dtype::i32 || out.numel() < rows ||
      batch.rows.row_elems() * 4 != static_cast<int64_t>(sizeof(sampling_row)) || vocab <= 0 || vocab > INT32_MAX)
    throw std::invalid_argument("cuda sample: logits " + shape_of(logits) + " f32, " + std::to_string(rows) +
                                " sampling rows and out " + shape_of(out) + " i32 do not fit");
  const int64_t bitmask_words = batch.bitmasks.empty() ? 0 : batch.bitmasks.row_elems();
  if (batch.bitmasks.numel() > 0 && bitmask_words != (vocab + 31) / 32)
    throw std::invalid_argument("cuda sample: bitmasks " + shape_of(batch.bitmasks) + " for a vocabulary of " +
                                std::to_string(vocab));
  if (rows == 0) return;
  constexpr size_t smem = sizeof(histogram_smem);
  // Per launch: the limit belongs to the current device, and shards may drive several.
  check(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
        "sample: shared memory limit");
  const int64_t segment = ((vocab + kSegments - 1) / kSegments + 7) / 8 * 8;
  const bool vec = vocab % 4 == 0 && reinterpret_cast<uintptr_t>(logits.data) % 16 == 0;
  sample_kernel<<<static_cast<unsigned>(rows), kThreads, smem, stream>>>(
      logits.as<float>(), vocab, segment, vec, batch.rows.as<const sampling_row>(), batch.masks.as<const int32_t>(),
      batch.biases.as<const logit_bias_entry>(), batch.penalties.as<const penalty_entry>(),
      batch.bitmasks.as<const uint32_t>(), bitmask_words, out.as<int32_t>());
  check_launch("sample");
}

} // namespace troupe::cuda
