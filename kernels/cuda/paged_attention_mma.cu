// Paged attention on the tensor cores (bf16 and f16; head_dim 64, 80, 96 or 128): the same contract,
// rows and partitions as the CUDA-core kernel in paged_attention.cu, computed as flash attention with
// mma.sync m16n8k16 tiles.
//
// A block (4 warps) takes a tile of query rows of one sequence and one KV head; rows are (token, head of
// the group) pairs, head fastest, as in the CUDA-core kernel, so the K/V a block streams serve every head
// of its group. K/V come in tiles of 64 positions, gathered through the block table by cp.async into
// shared memory two or three tiles ahead of the math. Per tile each warp computes S = Q·Kᵀ for its 16
// rows (Q stays in registers), masks, updates its running max and sum (base-2 exponentials, the scale
// folded in), and accumulates P·V with P rounded to the input dtype, as FlashAttention-2 does.
//
// Two layouts of the 4 warps:
// - prefill (rows_warps 4, key_warps 1): 64 rows per block, every warp sees all 64 keys of a tile;
// - decode (rows_warps 1, key_warps 4): one 16-row tile (a decode step of a GQA group has group rows),
//   each warp takes 16 of the tile's 64 keys, and the 4 warps' partial results are merged at the end.
// Either way a block finishes through shared memory: merge the key warps, then write the output rows
// (or, for a split context, the partition's max, sum and unnormalized output for combine_partitions).
//
// An FP8 cache (--kv-cache-dtype fp8, fp8_kv.cuh): cp.async brings the FP8 tiles (half the bytes of bf16)
// into a ring of staging buffers, Stages deep as before, and each tile is converted once, exactly, into
// one bf16 / f16 tile in the layout above, so ldmatrix and the mma code stay as they are; k_scale joins
// the softmax scale and v_scale the output. Converting in shared memory rather than while building
// fragments: V's fragments want two keys of one dimension per register (ldmatrix .trans does that for
// 16-bit rows; FP8 rows would need byte gathers), and one pass converts each code once whichever warps
// read it. The decode kernel must then stream twice the positions per second to read the same bytes per
// second, so its tile loop must not add a barrier: in the decode layout each warp copies, converts and
// reads only its own 16 keys of every tile, so it waits for no other warp (no __syncthreads in the loop
// at all, where bf16 has two per tile); the conversion is integer operations and one multiply per pair.
// The prefill layout (every warp reads all 64 keys, compute-bound) converts block-wide between two
// barriers, the same count as bf16.
//
// Measured and taken out (H100, 2026-12-06, S=256 ctx 640 / S=64 ctx 4096): reading the codes straight from the
// staging into fragments, no converted tile (dims permuted so each thread's codes lie together, 16-byte loads, 58 KiB
// of shared memory): 0.124 / 0.468 ms against this layout's 0.103 / 0.240, W1 FP8 14,172 against 14,460 tok/s.

#include <algorithm>
#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cp_async.cuh"
#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/cuda/launchers.hpp"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/paged_attention_params.cuh"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kTileKeys = 64;

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// Two floats as one register of two 16-bit values, the first in the low half.
template <class T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <int D> constexpr int row_ld = D + 8;  // 16 bytes of padding: ldmatrix rows land in distinct banks
// Direct's staged rows of FP8 codes: padded by 16 bytes, so the 8 rows of an ldmatrix lie in distinct banks; with
// three stages at head_dim 128 (attention_switches::direct_stages) unpadded and swizzled instead (a row's 16-byte chunk
// j of 8 stored at j ^ (row % 8): the same distinct banks), so that three stages still leave four blocks an SM (52 KiB,
// where padded rows would take 59). The deep layout's four stages and the other head dims keep the padding.
template <int D, int Stages> constexpr bool kSwizzledCodes = D == 128 && Stages == 3;
template <int D, int Stages> constexpr int codes_ld = kSwizzledCodes<D, Stages> ? D : D + 16;

// Q, then the K/V tiles: Stages of them in T; for FP8 one converted tile in T and Stages of FP8 staging
// (rows of D codes, unpadded: they are copied and read in row order).
// Lean: Q shares the first K/V buffer (it is read into registers before any tile is copied), so no rows of its own.
// Direct: Q and the staging (rows of codes_ld), no converted tile.
template <class T, int D, int RowWarps, int Stages, bool Fp8, bool Lean = false, bool Direct = false>
constexpr size_t mma_shared_bytes() {
  constexpr size_t q_rows = Lean ? 0 : size_t(16) * RowWarps;
  constexpr size_t tiles = Direct ? q_rows * row_ld<D> * sizeof(T) + size_t(Stages) * 2 * kTileKeys * codes_ld<D, Stages>
                           : Fp8  ? (q_rows + 2 * kTileKeys) * row_ld<D> * sizeof(T) + size_t(Stages) * 2 * kTileKeys * D
                                  : (q_rows + size_t(Stages) * 2 * kTileKeys) * row_ld<D> * sizeof(T);
  static_assert(!Lean || size_t(16) * RowWarps <= (Fp8 ? 2 : size_t(Stages) * 2) * kTileKeys, "Q fits the K/V buffers");
  constexpr size_t merge = (size_t(64) * D + 2 * 64) * sizeof(float);  // 4 warps × 16 rows of output, max, sum
  return tiles > merge ? tiles : merge;
}

// grid (row tiles * num_parts, num_kv_heads, num_seqs), 128 threads. Fp8: the caches hold FP8 codes.
// Lean (prefill layout, attention_settings().prefill_lean, the default since 2026-12-07: 16-25% faster on the prefill
// timings, W1 +1.3% in FP8 and +0.4% in bf16 on an H100; TROUPE_ATTN_PREFILL_LEAN=0 goes back): the prefill layout measured latency-bound at two blocks (8 warps) an SM, held there by both its shared
// memory (87 KiB at head_dim 128: Q's 17 KiB and two K/V tiles) and its 177 registers. Lean reads Q into registers first
// and lets the K/V buffers take its place (70 KiB), and asks the compiler for three blocks an SM (at most 170
// registers; ptxas spills 24 bytes at head_dim 128, 64 with an FP8 cache): 12 warps to hide the latency, at the cost
// of Q's copy no longer overlapping the first tile's.
// A minimum of 0 blocks asks nothing, and leaves the other kernels' code as it was without one (a minimum of 1 changes it:
// their .text compared byte for byte, 2026-12-06).
template <bool Lean> constexpr int kMinBlocks = Lean ? 3 : 0;
// Direct: its shared memory (41 KiB at head_dim 128) leaves room for five blocks an SM; ptxas fits four without spills
// (asked for five: 96 registers, 48-72 bytes spilled). Its three-stage form (attention_switches::direct_stages, 52 KiB,
// swizzled) fits four too: 116 registers, no spills.
constexpr int kDirectMinBlocks = 4;
// F16 (FP8 caches only; attention_settings().fp8_f16, TROUPE_ATTN_FP8_F16=1; written in the twentieth session of
// 2026-12-06, off until timed): the codes become f16 by the hardware's conversion (cvt.rn.f16x2.e4m3x2: one
// instruction a pair, where fp8x4_to's bf16 takes four with its byte permute), and both products run on f16 mma. Every
// e4m3 / e5m2 value is an f16, so K and V stay exact; P in f16 keeps more bits than in bf16. A bf16 Q is brought into
// f16's range by a power of two per warp (its 16 rows' max|q| to [2^14, 2^15)), exact but for values under 2^-24 of the
// max, and that power joins the softmax scale. The H200 measured the FP8 decode layout at 1.6 TB/s of codes where bf16
// reads 3.3 TB/s in the same time: the conversion, not HBM, bounds it (NOTES, FP8 KV cache).
//
// Direct (the F16 form's decode layout, D a multiple of 32; attention_settings().fp8_direct, the default since
// 2026-12-07 when its rows passed and it measured 17-19% faster on decode steps; TROUPE_ATTN_FP8_DIRECT=0 turns it
// off): no converted tile. ldmatrix reads the staged codes as 16-bit pairs, so each thread's register holds four
// codes that the hardware's conversion makes two f16 pairs of, with no pass through shared memory:
// - K (ldmatrix): thread (g, t) gets key g's codes of dims 4t .. 4t + 3 of a 16-dim step, which serve as the B
//   fragment's k 2t, 2t + 1 and 2t + 8, 2t + 9. Q·Kᵀ's sum over dims does not care in which order it takes them, so
//   Q's fragments are read from shared memory in the same order (a0 = dims 4t, 4t + 1; a2 = 4t + 2, 4t + 3).
// - V (ldmatrix .trans): thread (g, t) gets the dim pair 2g, 2g + 1 of keys 2t and 2t + 1; one byte permute pairs the
//   two keys of each dim, so the register makes the B fragments of dim 2g in one n-tile and of dim 2g + 1 in another
//   (n-tiles of even and of odd dims). The output's dims are put back in order at the merge.
// Shared memory: Q and two tiles of staged codes, 41 KiB at head_dim 128 where the converting layout takes 71; the tile
// loop has one warp barrier. Q's fragments are made once, before the loop, and kept in shared memory (read again each
// tile), so the loop holds no fragments of Q: 116-120 registers, four blocks an SM (kDirectMinBlocks) where the
// converting form has three. Its outputs differ from the converting F16 form only in the order of the products inside
// each mma. A direct form was measured once before and lost (H100, 2026-12-06:
// 0.124 ms against 0.103 at 256 x 640): it built fragments from 16-byte loads with byte permutes and bf16 conversions
// (four instructions a pair), and kept three tiles in flight in 58 KiB.
template <class T, int D, int RowWarps, int Stages, bool Fp8, bool Lean = false, bool F16 = false, bool Direct = false>
__global__ void __launch_bounds__(kThreads, Direct ? kDirectMinBlocks : kMinBlocks<Lean>) paged_attention_mma_kernel(const T* __restrict__ qkv,
                                                                      const void* __restrict__ k_cache_,
                                                                      const void* __restrict__ v_cache_,
                                                                      attention_params p, T* __restrict__ out) {
  if (p.trigger) pdl_launch_dependents();  // the combine or o_proj may start; each waits for this kernel's end
  static_assert(!F16 || Fp8, "f16 compute is for FP8 caches");
  using C = std::conditional_t<Fp8, uint8_t, T>;  // a cache element
  using M = std::conditional_t<F16, __half, T>;   // what the tensor cores multiply (K, V, Q's fragments, P)
  const C* __restrict__ k_cache = static_cast<const C*>(k_cache_);
  const C* __restrict__ v_cache = static_cast<const C*>(v_cache_);
  constexpr int KeyWarps = 4 / RowWarps;
  constexpr int Rows = 16 * RowWarps;               // query rows per block
  constexpr int WarpKeys = kTileKeys / KeyWarps;    // keys of a tile each warp scores
  constexpr int KeyTiles = WarpKeys / 8;            // n-tiles of S per warp
  constexpr int DimTiles = D / 8;                   // n-tiles of the output per warp
  constexpr int DimSteps = D / 16;                  // k-steps of Q·Kᵀ
  constexpr int LD = row_ld<D>;
  constexpr int Chunks = D / 8;                     // 16-byte chunks per row
  static_assert(D % 16 == 0 && KeyTiles % 2 == 0, "tile shapes");
  // FP8, decode layout: each warp copies and converts the keys it reads (see the top of the file).
  constexpr bool WarpOwnKeys = Fp8 && KeyWarps == 4;
  static_assert(!Direct || (F16 && WarpOwnKeys && !Lean && D % 32 == 0), "Direct: the F16 form's decode layout");
  constexpr int SLD = Direct ? codes_ld<D, Stages> : D;  // a staged row of codes, bytes
  constexpr bool Swizzled = Direct && kSwizzledCodes<D, Stages>;

  extern __shared__ __align__(16) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem);  // [Rows, LD]
  M* kv_s = reinterpret_cast<M*>(q_s + (Lean ? 0 : Rows * LD));  // Stages × (K [64, LD], V [64, LD]); FP8: one (K, V), converted
  // FP8: Stages × (K [64, SLD], V [64, SLD]); Direct: right after Q (no converted tile)
  uint8_t* kv8_s = Direct ? reinterpret_cast<uint8_t*>(kv_s) : reinterpret_cast<uint8_t*>(kv_s + 2 * kTileKeys * LD);

  const attention_block b = locate_attention_block(p, Rows);
  const int seq = b.seq, kv_head = b.kv_head, group = b.group, q_begin = b.q_begin, part = b.part;
  const int num_rows = b.num_rows, row0 = b.row0, lo = b.lo, hi = b.hi;
  if (row0 >= num_rows) return;  // the whole block leaves together
  if ((p.seq_filter == 1 && num_rows > 16) || (p.seq_filter == 2 && num_rows <= 16)) return;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row_warp = warp / KeyWarps, key_warp = warp % KeyWarps;

  const int num_tiles = hi > lo ? (hi - lo + kTileKeys - 1) / kTileKeys : 0;

  // Q rows → shared memory (rows past the end zero-filled).
  for (int idx = threadIdx.x; idx < Rows * Chunks; idx += kThreads) {
    const int r = idx / Chunks, c = (idx % Chunks) * 8, row = row0 + r;
    const bool valid = row < num_rows;
    const T* src = valid ? qkv + int64_t(q_begin + row / group) * p.qkv_stride + int64_t(kv_head * group + row % group) * D + c
                         : qkv;
    cp_async16(q_s + r * LD + c, src, valid);
  }
  const int64_t kv_width = int64_t(p.num_kv_heads) * D;
  const int32_t* table = p.block_tables + int64_t(seq) * p.max_blocks;
  const int64_t head_offset = int64_t(kv_head) * D;
  // Each thread copies one 16-byte chunk `c` of keys key_lane, key_lane + KeysPerPass, ... of a tile: the
  // chunks of a key sit on neighbouring threads (coalesced), and a thread finds its keys' cache rows by
  // walking the block table, one division a tile rather than one a copy (the address arithmetic was most of
  // the decode kernel's integer work). FP8 copies 16 codes a chunk; in the decode layout a warp copies only
  // its own keys (see the top of the file).
  auto load_tile = [&](int tile) {
    constexpr int Elems = Fp8 ? 16 : 8;                    // cache elements a 16-byte copy holds
    constexpr int RowChunks = D / Elems;                   // copies per key and per K or V
    constexpr int Threads = WarpOwnKeys ? 32 : kThreads;
    constexpr int Keys = WarpOwnKeys ? WarpKeys : kTileKeys;
    constexpr int KeysPerPass = Threads / RowChunks;
    static_assert(D % Elems == 0 && KeysPerPass > 0, "chunks");
    const int tid = WarpOwnKeys ? lane : threadIdx.x;
    const int key_lane = tid / RowChunks, c = (tid % RowChunks) * Elems;
    if (key_lane >= KeysPerPass) return;                   // the threads left over when RowChunks does not divide
    const int first_key = (WarpOwnKeys ? key_warp * WarpKeys : 0) + key_lane;
    const int start = lo + tile * kTileKeys;
    int blk = (start + first_key) / p.block_size, within = start + first_key - blk * p.block_size;
    C* k_dst;
    C* v_dst;
    int dst_ld;
    if constexpr (Fp8) {
      k_dst = reinterpret_cast<C*>(kv8_s + (tile % Stages) * 2 * kTileKeys * SLD);
      v_dst = k_dst + kTileKeys * SLD;
      dst_ld = SLD;
    } else {
      k_dst = reinterpret_cast<C*>(kv_s) + (tile % Stages) * 2 * kTileKeys * LD;
      v_dst = k_dst + kTileKeys * LD;
      dst_ld = LD;
    }
    constexpr int Passes = (Keys + KeysPerPass - 1) / KeysPerPass;
#pragma unroll
    for (int i = 0; i < Passes; ++i) {
      if (Keys % KeysPerPass != 0 && key_lane + i * KeysPerPass >= Keys) break;
      const int key = first_key + i * KeysPerPass;
      const bool valid = start + key < hi;
      const int64_t off = valid ? (int64_t(table[blk]) * p.block_size + within) * kv_width + head_offset + c : 0;
      if constexpr (Swizzled) {  // Direct's three stages: chunk c / 16 of the row at (c / 16) ^ (key % 8)
        const int col = ((c / 16) ^ (key % 8)) * 16;
        cp_async16(k_dst + key * dst_ld + col, k_cache + off, valid);
        cp_async16(v_dst + key * dst_ld + col, v_cache + off, valid);
      } else {
        cp_async16(k_dst + key * dst_ld + c, k_cache + off, valid);
        cp_async16(v_dst + key * dst_ld + c, v_cache + off, valid);
      }
      within += KeysPerPass;
      if (within >= p.block_size) {  // the next block
        within -= p.block_size;
        ++blk;
        if (within >= p.block_size) {  // only for blocks of fewer than KeysPerPass positions
          const int q = within / p.block_size;
          blk += q;
          within -= q * p.block_size;
        }
      }
    }
  };
  // FP8: a staged tile's codes → the converted tile, 8 codes (one 8-byte read, one 16-byte write) per item;
  // the same keys as load_tile copied.
  auto convert_tile = [&](int tile) {
    constexpr int Units = D / 8, Keys = WarpOwnKeys ? WarpKeys : kTileKeys, Threads = WarpOwnKeys ? 32 : kThreads;
    const int first_key = WarpOwnKeys ? key_warp * WarpKeys : 0, tid = WarpOwnKeys ? lane : threadIdx.x;
    const uint8_t* staged = kv8_s + (tile % Stages) * 2 * kTileKeys * D;
    for (int idx = tid; idx < 2 * Keys * Units; idx += Threads) {
      const int which = idx / (Keys * Units), rest = idx % (Keys * Units);  // which: 0 K, 1 V
      const int key = first_key + rest / Units, c = (rest % Units) * 8;
      const uint2 codes = *reinterpret_cast<const uint2*>(staged + which * kTileKeys * D + key * D + c);
      uint32_t v03[2], v47[2];  // values 0-3 and 4-7 as pairs
      if constexpr (F16) {
        fp8x4_to_f16_cvt(codes.x, p.kv_e5m2, v03);
        fp8x4_to_f16_cvt(codes.y, p.kv_e5m2, v47);
      } else {
        fp8x4_to<T>(codes.x, p.kv_e5m2, v03);
        fp8x4_to<T>(codes.y, p.kv_e5m2, v47);
      }
      *reinterpret_cast<uint4*>(kv_s + which * kTileKeys * LD + key * LD + c) = make_uint4(v03[0], v03[1], v47[0], v47[1]);
    }
  };
  uint32_t qf[DimSteps][4];
  const int mat = lane / 8, mat_row = lane % 8;  // ldmatrix: which 8×8 matrix this lane addresses, and its row
  float q_pow2 = 1.0f;  // F16 with a bf16 Q: the power of two its fragments were divided by
  // The warp's 16 rows of Q as A fragments of M. F16 with a bf16 Q: scaled by a power of two into f16's range, which
  // joins the softmax scale (see F16 above).
  auto read_q = [&] {
    if constexpr (Direct) {  // dims 4t, 4t + 1 as k 2t, 2t + 1 and 4t + 2, 4t + 3 as k 2t + 8, 2t + 9 (see Direct)
      const T* q_row = q_s + (row_warp * 16 + lane / 4) * LD + 4 * (lane % 4);
#pragma unroll
      for (int ks = 0; ks < DimSteps; ++ks) {
        const uint2 top = *reinterpret_cast<const uint2*>(q_row + ks * 16);
        const uint2 bottom = *reinterpret_cast<const uint2*>(q_row + 8 * LD + ks * 16);
        qf[ks][0] = top.x, qf[ks][1] = bottom.x, qf[ks][2] = top.y, qf[ks][3] = bottom.y;
      }
    } else {
#pragma unroll
      for (int ks = 0; ks < DimSteps; ++ks)
        ldmatrix_x4(qf[ks], q_s + (row_warp * 16 + (mat % 2) * 8 + mat_row) * LD + ks * 16 + (mat / 2) * 8);
    }
    if constexpr (F16 && !std::is_same_v<T, __half>) {
      float big = 0.0f;
#pragma unroll
      for (int ks = 0; ks < DimSteps; ++ks)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qf[ks][i]));
          big = fmaxf(big, fmaxf(fabsf(v.x), fabsf(v.y)));
        }
#pragma unroll
      for (int o = 16; o > 0; o /= 2) big = fmaxf(big, __shfl_xor_sync(0xffffffffu, big, o));
      int shift = 0;  // big · 2^-shift in [2^14, 2^15); none for a zero, infinite or NaN max
      if (big > 0.0f && big <= FLT_MAX) {
        int e;
        frexpf(big, &e);  // big = f · 2^e, f in [0.5, 1)
        shift = min(max(e - 15, -100), 113);
      }
      const float down = ldexpf(1.0f, -shift);
      q_pow2 = ldexpf(1.0f, shift);
#pragma unroll
      for (int ks = 0; ks < DimSteps; ++ks)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qf[ks][i]));
          qf[ks][i] = pack2<__half>(v.x * down, v.y * down);
        }
    }
  };
  if constexpr (Lean) {  // Q into registers before any tile lands where it lies
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    read_q();
    __syncthreads();
  }
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < num_tiles) load_tile(s);
    cp_async_commit();  // the first group carries Q too (Lean: Q is in registers already)
  }
  if constexpr (Direct) {
    // Q's fragments go to shared memory where Q's rows were (every warp reads the same rows: warp 0 writes), 16 bytes a
    // lane and k-step, read again in each tile: no fragments held through the loop (116-120 registers at head_dim 128,
    // four blocks an SM; held through it, 167 and three). Made once the first group (Q and tile 0) has landed.
    cp_async_wait<Stages - 2>();
    __syncthreads();
    read_q();
    __syncthreads();
    if (warp == 0)
#pragma unroll
      for (int ks = 0; ks < DimSteps; ++ks)
        reinterpret_cast<uint4*>(q_s)[ks * 32 + lane] = make_uint4(qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3]);
    __syncthreads();
  }

  // This thread's two rows (lane / 4 and lane / 4 + 8 of its warp's 16): positions and window starts.
  // A row past the end gets pos −1, so every key is masked for it.
  int pos[2], first[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + row_warp * 16 + lane / 4 + 8 * h;
    pos[h] = row < num_rows ? b.pos_of(row) : -1;
    first[h] = p.sliding_window > 0 ? max(0, pos[h] - p.sliding_window + 1) : 0;
  }
  const float scale_log2 = p.scale * (Fp8 ? p.k_scale : 1.0f) * 1.4426950408889634f;
  // The warp's 16 rows: the earliest position any of them has (−1 when a row is past the end) and the
  // latest window start, so a tile between the two needs no mask for any of them.
  int warp_min_pos, warp_max_first;
  {
    const int r_first = row0 + row_warp * 16, r_last = r_first + 15;
    warp_min_pos = r_last < num_rows ? b.pos_of(r_first) : -1;
    const int last_pos = b.pos_of(min(r_last, num_rows - 1));
    warp_max_first = p.sliding_window > 0 ? max(0, last_pos - p.sliding_window + 1) : 0;
  }

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[DimTiles][4];
#pragma unroll
  for (int i = 0; i < DimTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  for (int tile = 0; tile < num_tiles; ++tile) {
    if (tile + Stages - 1 < num_tiles) load_tile(tile + Stages - 1);
    cp_async_commit();
    cp_async_wait<Stages - 1>();
    // The tile's keys (and at tile 0 Q, which every thread helped copy) have landed. FP8: the staged
    // codes are converted, each stage after the barrier that says the previous tile's reads are done.
    if constexpr (Direct) {
      if (tile == 0) __syncthreads();
      else __syncwarp();
    } else if constexpr (WarpOwnKeys) {
      if (tile == 0) __syncthreads();
      else __syncwarp();
      convert_tile(tile);
      __syncwarp();
    } else if constexpr (Fp8) {
      __syncthreads();
      convert_tile(tile);
      __syncthreads();
    } else {
      __syncthreads();
    }
    if (!Lean && !Direct && tile == 0) read_q();
    const M* k_s = kv_s + (Fp8 ? 0 : (tile % Stages) * 2 * kTileKeys * LD) + key_warp * WarpKeys * LD;
    const M* v_s = k_s + kTileKeys * LD;
    // Direct: this warp's 16 keys of the staged codes (matrix mat of an ldmatrix: keys 8 · (mat % 2) .. + 7, the
    // 16 dims (mat / 2) · 16 .. + 15 of a 32-dim step)
    // (swizzled: the row's start; the lane's 16 bytes of 32-dim step `step` are its chunk (2 · step + mat / 2) ^ mat_row)
    const uint8_t* k8 = kv8_s + (tile % Stages) * 2 * kTileKeys * SLD + (key_warp * WarpKeys + (mat % 2) * 8 + mat_row) * SLD +
                        (mat / 2) * 16;
    const uint8_t* v8 = k8 + kTileKeys * SLD;

    float s[KeyTiles][4];
#pragma unroll
    for (int i = 0; i < KeyTiles; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
    if constexpr (Direct) {
      static_assert(KeyTiles == 2, "Direct: 16 keys a warp");
#pragma unroll
      for (int step = 0; step < D / 32; ++step) {  // k-steps 2 · step and 2 · step + 1
        uint32_t r[4], b[4][2];
        if constexpr (Swizzled) ldmatrix_x4(r, k8 - (mat / 2) * 16 + (((2 * step + mat / 2) ^ mat_row) * 16));
        else ldmatrix_x4(r, k8 + 32 * step);
#pragma unroll
        for (int i = 0; i < 4; ++i) fp8x4_to_f16_cvt(r[i], p.kv_e5m2, b[i]);
        const uint4 q0 = reinterpret_cast<const uint4*>(q_s)[2 * step * 32 + lane];
        const uint4 q1 = reinterpret_cast<const uint4*>(q_s)[(2 * step + 1) * 32 + lane];
        const uint32_t a0[4] = {q0.x, q0.y, q0.z, q0.w}, a1[4] = {q1.x, q1.y, q1.z, q1.w};
        mma16816<M>(s[0], a0, b[0][0], b[0][1]);
        mma16816<M>(s[1], a0, b[1][0], b[1][1]);
        mma16816<M>(s[0], a1, b[2][0], b[2][1]);
        mma16816<M>(s[1], a1, b[3][0], b[3][1]);
      }
    } else {
#pragma unroll
      for (int ks = 0; ks < DimSteps; ++ks) {
#pragma unroll
        for (int kt = 0; kt < KeyTiles; kt += 2) {
          uint32_t b[4];
          ldmatrix_x4(b, k_s + (kt * 8 + (mat / 2) * 8 + mat_row) * LD + ks * 16 + (mat % 2) * 8);
          mma16816<M>(s[kt], qf[ks], b[0], b[1]);
          mma16816<M>(s[kt + 1], qf[ks], b[2], b[3]);
        }
      }
    }

    // Mask, scale to base 2, and update the running max and sum of each row. Inside a long prefill most
    // tiles lie wholly within every row's window of the warp: those skip the per-key comparisons.
    const int warp_key0 = lo + tile * kTileKeys + key_warp * WarpKeys;
    const bool whole = warp_key0 + WarpKeys - 1 <= warp_min_pos && warp_key0 >= warp_max_first;
    const int key0 = warp_key0 + 2 * (lane % 4);
    const float score_scale = F16 ? scale_log2 * q_pow2 : scale_log2;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int kt = 0; kt < KeyTiles; ++kt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kpos = key0 + kt * 8 + e;
          float& v = s[kt][2 * h + e];
          v = whole || (kpos >= first[h] && kpos <= pos[h]) ? v * score_scale : -INFINITY;
          mx = fmaxf(mx, v);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[h], mx);
      const float base = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing seen yet stays at 0
      const float correction = exp2f(m[h] - base);
      m[h] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int kt = 0; kt < KeyTiles; ++kt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& v = s[kt][2 * h + e];
          v = exp2f(v - base);
          sum += v;
        }
      l[h] = l[h] * correction + sum;  // this thread's share; the quad's shares are added at the end
#pragma unroll
      for (int dt = 0; dt < DimTiles; ++dt) {
        o[dt][2 * h] *= correction;
        o[dt][2 * h + 1] *= correction;
      }
    }

    // O += P · V, P in M (the input dtype; f16 in the F16 form): an accumulator tile of S is already an A fragment.
#pragma unroll
    for (int kk = 0; kk < KeyTiles / 2; ++kk) {
      const uint32_t a[4] = {pack2<M>(s[2 * kk][0], s[2 * kk][1]), pack2<M>(s[2 * kk][2], s[2 * kk][3]),
                             pack2<M>(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack2<M>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      if constexpr (Direct) {
        // n-tile 4c + q: the dims 32c + 16 · (q / 2) + 2j + q % 2 (j = 0 .. 7: even dims in q 0 and 2, odd in 1 and 3)
#pragma unroll
        for (int c = 0; c < D / 32; ++c) {
          uint32_t r[4];
          // r[0], r[2]: keys 2t, 2t + 1; r[1], r[3]: keys 2t + 8, 2t + 9
          if constexpr (Swizzled) ldmatrix_x4_trans(r, v8 - (mat / 2) * 16 + (((2 * c + mat / 2) ^ mat_row) * 16));
          else ldmatrix_x4_trans(r, v8 + 32 * c);
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            uint32_t lo[2], hi[2];  // [0]: dim 2g, [1]: dim 2g + 1 (of the half's 16), each for two keys
            fp8x4_to_f16_cvt(__byte_perm(r[2 * half], 0, 0x3120), p.kv_e5m2, lo);
            fp8x4_to_f16_cvt(__byte_perm(r[2 * half + 1], 0, 0x3120), p.kv_e5m2, hi);
            mma16816<M>(o[4 * c + 2 * half], a, lo[0], hi[0]);
            mma16816<M>(o[4 * c + 2 * half + 1], a, lo[1], hi[1]);
          }
        }
      } else {
#pragma unroll
        for (int dt = 0; dt < DimTiles; dt += 2) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, v_s + (kk * 16 + (mat % 2) * 8 + mat_row) * LD + dt * 8 + (mat / 2) * 8);
          mma16816<M>(o[dt], a, b[0], b[1]);
          mma16816<M>(o[dt + 1], a, b[2], b[3]);
        }
      }
    }
    // bf16 / f16: this stage is consumed before a later iteration loads into it. (FP8: the barrier that
    // starts the next iteration, before its conversion, does it; the staging stage a later iteration
    // loads into was converted before this one's second barrier.)
    if constexpr (!Fp8) __syncthreads();
    if constexpr (Direct) __syncwarp();  // the warp's reads of this stage are done before any lane copies into it
  }
  cp_async_wait<0>();

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }

  // Merge through shared memory: every warp's rows, for each key warp, then one pass writes the block.
  __syncthreads();
  float* merge_o = reinterpret_cast<float*>(smem);          // [KeyWarps, Rows, D]
  float* merge_ml = merge_o + KeyWarps * Rows * D;          // [KeyWarps, Rows, 2]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = row_warp * 16 + lane / 4 + 8 * h;
    float* dst = merge_o + (key_warp * Rows + r) * D;
    // Column n of n-tile dt is dim 8 · dt + n; Direct: 32 · (dt / 4) + 16 · (dt % 4 / 2) + 2n + dt % 2.
    const auto dim = [](int dt, int n) { return Direct ? 32 * (dt / 4) + 16 * (dt % 4 / 2) + 2 * n + dt % 2 : 8 * dt + n; };
#pragma unroll
    for (int dt = 0; dt < DimTiles; ++dt) {
      dst[dim(dt, 2 * (lane % 4))] = o[dt][2 * h];
      dst[dim(dt, 2 * (lane % 4) + 1)] = o[dt][2 * h + 1];
    }
    if (lane % 4 == 0) {
      merge_ml[(key_warp * Rows + r) * 2] = m[h];
      merge_ml[(key_warp * Rows + r) * 2 + 1] = l[h];
    }
  }
  __syncthreads();
  constexpr float kLn2 = 0.6931471805599453f;
  for (int idx = threadIdx.x; idx < Rows * D; idx += kThreads) {
    const int r = idx / D, c = idx % D, row = row0 + r;
    if (row >= num_rows) break;  // rows run in order: the rest are past the end too
    float big = -INFINITY;
#pragma unroll
    for (int w = 0; w < KeyWarps; ++w) big = fmaxf(big, merge_ml[(w * Rows + r) * 2]);
    const float base = big == -INFINITY ? 0.0f : big;
    float sum = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < KeyWarps; ++w) {
      const float f = exp2f(merge_ml[(w * Rows + r) * 2] - base);
      sum += f * merge_ml[(w * Rows + r) * 2 + 1];
      acc += f * merge_o[(w * Rows + r) * D + c];
    }
    if constexpr (Fp8) acc *= p.v_scale;
    const int64_t token = q_begin + row / group;
    const int head = kv_head * group + row % group;
    if (p.num_parts > 1) {
      const int64_t pr = (token * p.num_heads + head) * p.num_parts + part;
      if (c == 0) {
        p.part_ml[2 * pr] = big == -INFINITY ? -FLT_MAX : big * kLn2;  // natural-log units, as combine expects
        p.part_ml[2 * pr + 1] = sum;
      }
      p.part_acc[pr * D + c] = acc;
    } else {
      out[(token * p.num_heads + head) * D + c] = from_float<T>(sum > 0.0f ? acc / sum : 0.0f);
    }
  }
}

template <class T, int D, int RowWarps, int Stages, bool Fp8, bool Lean, bool F16, bool Direct = false>
void launch_form(const T* qkv, const void* k_cache, const void* v_cache, const attention_params& p, T* out, dim3 grid,
                 cudaStream_t stream) {
  constexpr size_t smem = mma_shared_bytes<T, D, RowWarps, Stages, Fp8, Lean, Direct>();
  constexpr auto kernel = paged_attention_mma_kernel<T, D, RowWarps, Stages, Fp8, Lean, F16, Direct>;
  allow_shared_memory<kernel>(smem, "paged_attention_mma shared memory");
  kernel<<<grid, kThreads, smem, stream>>>(qkv, k_cache, v_cache, p, out);
}

// An FP8 cache takes the F16 form where attention_settings().fp8_f16 asks, and in the decode layout its Direct form
// where attention_settings().fp8_direct asks too.
template <class T, int D, int RowWarps, int Stages, bool Fp8, bool Lean = false>
void launch(const T* qkv, const void* k_cache, const void* v_cache, const attention_params& p, T* out, dim3 grid,
            cudaStream_t stream) {
  if constexpr (Fp8)
    if (attention_settings().fp8_f16) {
      if constexpr (RowWarps == 1 && !Lean && D % 32 == 0)
        if (attention_settings().fp8_direct)
          return launch_form<T, D, RowWarps, Stages, Fp8, Lean, true, true>(qkv, k_cache, v_cache, p, out, grid, stream);
      return launch_form<T, D, RowWarps, Stages, Fp8, Lean, true>(qkv, k_cache, v_cache, p, out, grid, stream);
    }
  launch_form<T, D, RowWarps, Stages, Fp8, Lean, false>(qkv, k_cache, v_cache, p, out, grid, stream);
}

// A step whose sequences all have at most 16 query rows (decode) takes the decode layout. A mixed step
// takes two launches: the decode layout for its decoding sequences (one 16-row tile each), the prefill
// layout for the rest; each launch's blocks for the other kind leave at once. The deep decode layout (other
// head dims) keeps 3 tiles in flight in bf16 and 4 in FP8 (4 × 16 KiB of codes, where bf16 has 3 × 32 KiB):
// 102 KiB of shared memory per block at head_dim 128, two blocks per SM.
// At head_dim 128 the decode layout keeps two tiles in flight by default: (16 + 256) rows of 136 bf16 = 74 KiB
// (FP8: 32 KiB of codes and the 39 KiB converted tile), three blocks an SM. H200, 2026-12-05, S=256 ctx 640:
// bf16 0.103 ms against 0.108 with 3 stages, FP8 0.103 against 0.127 with 4 — the decode layout is bound by
// latency, not bytes, so a third block an SM beats a deeper pipeline. attention_settings().decode_stages = 3 keeps
// the deep layout (3 stages bf16, 4 FP8; two blocks an SM), which the other head dims use, to compare.
template <class T, int D, bool Fp8>
void launch_for_dim(const T* qkv, const void* k_cache, const void* v_cache, attention_params p, T* out,
                    int64_t max_rows, int num_kv_heads, int num_seqs, int multi_begin, int multi_end,
                    cudaStream_t stream) {
  constexpr int DecodeStages = Fp8 ? 4 : 3;
  const dim3 decode_grid(p.num_parts, num_kv_heads, num_seqs);
  auto decode = [&](const attention_params& dp) {
    if constexpr (D == 128) {
      const attention_switches& a = attention_settings();
      if constexpr (Fp8)  // Direct with a third tile in flight (attention_switches::direct_stages)
        if (a.decode_stages != 3 && a.direct_stages == 3 && a.fp8_f16 && a.fp8_direct)
          return launch_form<T, D, 1, 3, Fp8, false, true, true>(qkv, k_cache, v_cache, dp, out, decode_grid, stream);
      if (a.decode_stages != 3) return launch<T, D, 1, 2, Fp8>(qkv, k_cache, v_cache, dp, out, decode_grid, stream);
    }
    launch<T, D, 1, DecodeStages, Fp8>(qkv, k_cache, v_cache, dp, out, decode_grid, stream);
  };
  if (max_rows <= 16) {
    p.seq_filter = 0;
    decode(p);
    return;
  }
  p.seq_filter = 1;
  decode(p);
  p.seq_filter = 2;
  // A sequence of one query token has more than 16 rows only when the group is larger than 16; otherwise the
  // sequences this launch serves lie in the batch's many-token range, and its blocks cover only that. A mixed step of
  // 3 prompt chunks of 512 beside 200 decodes (which had launched 56 row tiles for each of the 203 sequences): 0.389 →
  // 0.326 ms in bf16, 0.425 → 0.370 with an FP8 cache (H100, 2026-12-06).
  int begin = 0, end = num_seqs;
  if (p.num_heads / p.num_kv_heads <= 16) {
    begin = std::clamp(multi_begin, 0, num_seqs);
    end = std::clamp(multi_end, begin, num_seqs);
  }
  if (begin == end) return;
  p.seq_offset = begin;
  const dim3 grid(static_cast<unsigned>((max_rows + 63) / 64 * p.num_parts), num_kv_heads, static_cast<unsigned>(end - begin));
  if (attention_settings().prefill_lean) launch<T, D, 4, 2, Fp8, true>(qkv, k_cache, v_cache, p, out, grid, stream);
  else launch<T, D, 4, 2, Fp8>(qkv, k_cache, v_cache, p, out, grid, stream);
}

} // namespace

bool mma_attention_supports(dtype type, int head_dim) {
  return (type == dtype::bf16 || type == dtype::f16) &&
         (head_dim == 64 || head_dim == 80 || head_dim == 96 || head_dim == 128);
}

void launch_paged_attention_mma(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                                const attention_metadata& meta, const attention_shape& s, const attention_params& p,
                                const tensor& out, cudaStream_t stream) {
  const int64_t rows = int64_t(meta.max_query_len) * (s.num_heads / s.num_kv_heads);
  const bool fp8 = is_fp8(k_cache.type);
  auto go = [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* q = qkv.as<T>();
    const void *kc = k_cache.data, *vc = v_cache.data;
    T* o = out.as<T>();
    auto for_dim = [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      const int mb = meta.multi_begin, me = meta.multi_end;
      if (fp8) launch_for_dim<T, D, true>(q, kc, vc, p, o, rows, s.num_kv_heads, meta.num_seqs, mb, me, stream);
      else launch_for_dim<T, D, false>(q, kc, vc, p, o, rows, s.num_kv_heads, meta.num_seqs, mb, me, stream);
    };
    switch (s.head_dim) {
      case 64: for_dim(std::integral_constant<int, 64>{}); break;
      case 80: for_dim(std::integral_constant<int, 80>{}); break;
      case 96: for_dim(std::integral_constant<int, 96>{}); break;
      case 128: for_dim(std::integral_constant<int, 128>{}); break;
      default: throw std::invalid_argument("cuda paged_attention_mma: head_dim " + std::to_string(s.head_dim));
    }
  };
  if (qkv.type == dtype::bf16) go(std::type_identity<__nv_bfloat16>{});
  else if (qkv.type == dtype::f16) go(std::type_identity<__half>{});
  else throw std::invalid_argument("cuda paged_attention_mma: bf16 or f16 only");
}

} // namespace troupe::cuda
