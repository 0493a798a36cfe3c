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
};

// True when the tensor-core kernel handles this dtype and head_dim (bf16 or f16; 64, 80, 96, 128).
bool mma_attention_supports(dtype type, int head_dim);

// The tensor-core kernel, for the launch paged_attention.cu has prepared (partitions included).
void launch_paged_attention_mma(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                                const attention_metadata& meta, const attention_shape& shape, const attention_params& p,
                                const tensor& out, cudaStream_t stream);

} // namespace troupe::cuda
