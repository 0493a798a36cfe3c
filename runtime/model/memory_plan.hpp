#pragma once
// How a GPU's memory is shared out (DESIGN.md, "Capacity"): the weights first, then the step workspaces
// and whatever the kernels allocate, measured over a profiling step at the largest batch, then the KV
// cache gets what is left of --gpu-memory-utilization × the device's memory. Pure arithmetic and the
// messages that say what to change when a model does not fit; the engine does the measuring.

#include <cstdint>
#include <string>

namespace troupe {

struct model_config;

// "15.23 GiB"
std::string gib(int64_t bytes);

// Bytes of one KV block: K and V of every layer, block_size tokens of num_kv_heads × head_dim elements of
// elem_bytes each (4 f32, 2 bf16 / f16, 1 FP8). What the cache allocates a block, so what the blocks of a
// memory budget are counted in (plan_kv_blocks, --kv-cache-memory).
int64_t kv_block_bytes(int64_t num_layers, int64_t block_size, int64_t num_kv_heads, int64_t head_dim, int64_t elem_bytes);

// The decoder layers' linear weights of `config` (a rank's local config) as a device keeps them under
// config.quantization, and what they take in the activation dtype (elem_bytes a weight): 4 bits, half a byte a
// weight plus a scale and a zero of elem_bytes per group (counted at 32 inputs, the smallest group); FP8, a byte a
// weight plus an f32 scale per output channel; unquantized, the activation dtype's. least: the codes alone (no scales
// or zeros), what they take at the least.
struct linear_weight_bytes {
  int64_t kept = 0;
  int64_t dense = 0;
  int64_t least = 0;
};
linear_weight_bytes linear_weights_in_memory(const model_config& config, int64_t elem_bytes);

// --gpu-memory-utilization is this instance's share of the GPU, as in vLLM V1: memory other processes held
// before it started does not count against it (two servers at 0.45 share one GPU), but nothing ever plans
// on more than is free.
//
// Throws user_error when weights of `weight_bytes` cannot fit in what --gpu-memory-utilization leaves,
// saying by how much and what to change. free / total: the device's memory before loading.
void check_weights_fit(int64_t weight_bytes, const std::string& dtype_name, int64_t free, int64_t total,
                       double utilization);

struct gpu_memory_profile {
  int64_t total = 0;               // the device's memory
  int64_t free_before_loading = 0; // free before this process loaded anything (its baseline)
  int64_t free_after_profile = 0;  // free once the weights are in and the profiling step has run
  int64_t weight_bytes = 0;        // measured: free before loading − free after
  int64_t least_weight_bytes = 0;  // what the weights take at the least, by their shapes (0: unknown)
  int64_t workspace_bytes = 0;     // measured: free after the weights − free after the profiling step
  int64_t profiled_kv_bytes = 0;   // the small KV cache the profiling step ran with (to be replaced)
  int64_t block_bytes = 0;         // one KV block, every layer, K and V
  int32_t block_size = 16;
  int64_t max_model_len = 0;
  int64_t profile_tokens = 0;      // tokens in the profiling step
  double utilization = 0.9;
  double load_seconds = -1;        // how long reading (or making) and uploading the weights took; < 0: not said
};

// The KV blocks the flags give before any device is measured: --num-gpu-blocks-override when above 0, else
// --kv-cache-memory's bytes in blocks of `block_bytes` (what the CPU backend takes; CUDA plans from memory when no
// override is given). Throws user_error for a negative override or a count beyond the 32-bit block ids of the block
// tables and step plans, naming the flag.
int64_t kv_blocks_from_flags(int64_t num_gpu_blocks_override, int64_t kv_cache_memory, int64_t block_bytes);

// KV blocks for the memory left under the utilization cap. Throws user_error, with the figures and
// what to change, when that is not enough for one sequence of max_model_len tokens, or when another process freed
// memory meanwhile, which the measurements then hide: the GPU had more free after loading than before, or the
// weights measured under their own size.
int64_t plan_kv_blocks(const gpu_memory_profile& p);

// One log line: the device, weights, workspaces, KV cache in GiB, blocks and tokens of context.
std::string describe(const gpu_memory_profile& p, int64_t num_blocks);

} // namespace troupe
