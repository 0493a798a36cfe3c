#pragma once
// What the paged-attention kernels (paged_attention.cu on CUDA cores, paged_attention_mma.cu on tensor
// cores) are given, and the tensor-core launcher the dispatcher in paged_attention.cu calls.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ops.hpp"

namespace troupe::cuda {

struct attention_params {
  const int32_t* query_start;   // [S + 1]
  const int32_t* seq_lens;      // [S]
  const int32_t* block_tables;  // [S, max_blocks]
  int max_blocks;
  int64_t qkv_stride;           // elements per token row of qkv
  int num_heads, num_kv_heads, head_dim, block_size, sliding_window;
  float scale;
  // Split decode: num_parts > 1 writes partials instead of out.
  int num_parts, part_keys;
  float* part_ml;   // [T, nH, num_parts, 2]: running max, sum of exp
  float* part_acc;  // [T, nH, num_parts, D]: sum of exp-weighted V
  // Which sequences this launch serves (the tensor-core kernel runs two launches for a mixed step):
  // 0 all, 1 those with at most 16 query rows (q_len × group), 2 the others.
  int seq_filter = 0;
  // The launch's blocks serve sequences seq_offset + blockIdx.z (a launch over part of the batch).
  int seq_offset = 0;
  // An FP8 cache (fp8_kv.cuh): its format and scales. 1.0 for a cache in the activation dtype.
  bool kv_e5m2 = false;
  float k_scale = 1.0f, v_scale = 1.0f;
  // attention_settings().trigger: the kernel after (the combine, or o_proj's 4-bit kernel) may start its blocks at
  // once, streaming its weights while this one runs; it waits for this one's end before it reads.
  bool trigger = false;
};

// What one block of either kernel works on: a tile of `rows_per_block` query rows of one sequence and one
// KV head (rows are (token, head of the group) pairs, head fastest), and the key positions [lo, hi) that
// are the union of those rows' causal windows, clipped to the block's partition of the context.
// grid (row tiles * num_parts, num_kv_heads, num_seqs).
struct attention_block {
  int seq, kv_head, group, q_begin, q_len, seq_len, part, num_rows, row0, lo, hi;

  // The position of a row's token (row < num_rows) and the first key its window lets it see.
  __device__ int pos_of(int row) const { return seq_len - q_len + row / group; }
};

__device__ inline attention_block locate_attention_block(const attention_params& p, int rows_per_block) {
  attention_block b;
  b.seq = p.seq_offset + int(blockIdx.z);
  b.kv_head = blockIdx.y;
  b.group = p.num_heads / p.num_kv_heads;
  b.q_begin = p.query_start[b.seq];
  b.q_len = p.query_start[b.seq + 1] - b.q_begin;
  b.seq_len = p.seq_lens[b.seq];
  b.part = blockIdx.x % p.num_parts;
  b.num_rows = b.q_len * b.group;
  b.row0 = (blockIdx.x / p.num_parts) * rows_per_block;
  // From the first row's window start to the last row's position (rows past the end leave lo/hi unused).
  const int last_row = min(b.num_rows, b.row0 + rows_per_block) - 1;
  b.lo = p.sliding_window > 0 ? max(0, b.pos_of(b.row0) - p.sliding_window + 1) : 0;
  b.hi = b.pos_of(last_row) + 1;
  if (p.num_parts > 1) {  // this block's partition of the context (possibly empty)
    b.lo = max(b.lo, b.part * p.part_keys);
    b.hi = min(b.hi, (b.part + 1) * p.part_keys);
  }
  return b;
}

// True when the tensor-core kernel handles this dtype and head_dim (bf16 or f16; 64, 80, 96, 128), over a
// cache in that dtype or in FP8.
bool mma_attention_supports(dtype type, int head_dim);

// The tensor-core kernel, for the launch paged_attention.cu has prepared (partitions included).
void launch_paged_attention_mma(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                                const attention_metadata& meta, const attention_shape& shape, const attention_params& p,
                                const tensor& out, cudaStream_t stream);

} // namespace troupe::cuda
