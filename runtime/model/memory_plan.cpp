#include "runtime/model/memory_plan.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "runtime/error.hpp"
#include "runtime/model/model_config.hpp"

namespace troupe {
namespace {

std::string fraction(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

int64_t cap(int64_t total, double utilization) { return static_cast<int64_t>(utilization * double(total)); }

} // namespace

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(int64_t{1} << 30));
  return buf;
}

int64_t kv_block_bytes(int64_t num_layers, int64_t block_size, int64_t num_kv_heads, int64_t head_dim, int64_t elem_bytes) {
  return 2 * num_layers * block_size * num_kv_heads * head_dim * elem_bytes;
}

linear_weight_bytes linear_weights_in_memory(const model_config& c, int64_t elem_bytes) {
  const int64_t qkv_rows = c.q_size() + 2 * c.kv_size();
  const int64_t weights = c.num_layers * (qkv_rows * c.hidden_size + c.hidden_size * c.q_size() +
                                          3 * c.hidden_size * c.intermediate_size);
  const int64_t rows = c.num_layers * (qkv_rows + c.hidden_size + 2 * c.intermediate_size + c.hidden_size);
  linear_weight_bytes b;
  b.dense = weights * elem_bytes;
  if (!c.quantization) b.kept = b.least = b.dense;
  else if (c.quantization->fp8()) b.kept = weights + 4 * rows, b.least = weights;
  else b.kept = weights / 2 + weights * 2 * elem_bytes / 32, b.least = weights / 2;
  return b;
}

void check_weights_fit(int64_t weight_bytes, const std::string& dtype_name, int64_t free, int64_t total,
                       double utilization) {
  if (!(utilization > 0 && utilization <= 1)) throw user_error("--gpu-memory-utilization must be in (0, 1]");
  // This instance's cap, and never more than is free (other processes' memory counts only there).
  const int64_t room = std::min(free, cap(total, utilization));
  if (weight_bytes <= room) return;
  throw user_error("the weights take " + gib(weight_bytes) + " in " + dtype_name + ", but --gpu-memory-utilization " +
                   fraction(utilization) + " of this GPU's " + gib(total) + " leaves " + gib(std::max<int64_t>(0, room)) +
                   " (" + gib(free) + " free now): short by " + gib(weight_bytes - std::max<int64_t>(0, room)) +
                   "; raise --gpu-memory-utilization, spread the model over more GPUs (--tensor-parallel-size), "
                   "or use a smaller or quantized model");
}

int64_t kv_blocks_from_flags(int64_t num_gpu_blocks_override, int64_t kv_cache_memory, int64_t block_bytes) {
  if (num_gpu_blocks_override < 0 || num_gpu_blocks_override > INT32_MAX)
    throw user_error("--num-gpu-blocks-override must be between 1 and " + std::to_string(INT32_MAX) + " (0: planned from "
                     "memory), got " + std::to_string(num_gpu_blocks_override));
  if (num_gpu_blocks_override > 0) return num_gpu_blocks_override;
  const int64_t blocks = kv_cache_memory / block_bytes;
  if (blocks > INT32_MAX)
    throw user_error("--kv-cache-memory " + std::to_string(kv_cache_memory) + " makes " + std::to_string(blocks) +
                     " KV blocks, more than the " + std::to_string(INT32_MAX) + " a block table can name; give less");
  return blocks;
}

int64_t plan_kv_blocks(const gpu_memory_profile& p) {
  if (!(p.utilization > 0 && p.utilization <= 1)) throw user_error("--gpu-memory-utilization must be in (0, 1]");
  // What this process took since its baseline (weights, workspaces: its shards' on a shared GPU); the
  // profiling cache goes away before the real one comes.
  const int64_t in_use = p.free_before_loading - p.free_after_profile - p.profiled_kv_bytes;
  // Less in use than before loading, or weights measured under their own size (less 1/16 for the shapes' rounding):
  // another process on this GPU let memory go while this one loaded, and every figure above is off by it (a cache
  // planned on it takes memory the steps need: an H100 of 2026-12-07, the last server's memory coming back during the
  // load, measured 8.2 GiB of FP8 weights as 1.07, planned a cache 7 GiB too large, and the first decode graph found no
  // memory). vLLM refuses the same way.
  if (in_use < 0 || p.weight_bytes < p.least_weight_bytes - p.least_weight_bytes / 16)
    throw user_error("GPU memory changed under the load: " + gib(p.free_before_loading) + " was free before the weights, " +
                     gib(p.free_after_profile + p.profiled_kv_bytes) + " after them and the profiling step (weights "
                     "measured as " + gib(p.weight_bytes) +
                     (p.least_weight_bytes > 0 ? ", where their shapes take at least " + gib(p.least_weight_bytes) : "") +
                     "), so another process on this GPU freed memory meanwhile; "
                     "start troupe while the GPU's other processes hold steady, or give the cache's size with "
                     "--num-gpu-blocks-override");
  const int64_t budget = std::min(cap(p.total, p.utilization) - in_use, p.free_after_profile + p.profiled_kv_bytes);
  const int64_t blocks = p.block_bytes > 0 ? std::max<int64_t>(0, budget) / p.block_bytes : 0;
  const int64_t needed_blocks = (p.max_model_len + p.block_size - 1) / p.block_size;
  if (blocks >= needed_blocks && blocks > 0) return blocks;
  const int64_t short_by = needed_blocks * p.block_bytes - std::max<int64_t>(0, budget);
  throw user_error("after the weights (" + gib(p.weight_bytes) + ") and the step workspaces (" + gib(p.workspace_bytes) +
                   " for " + std::to_string(p.profile_tokens) + " tokens per step), --gpu-memory-utilization " +
                   fraction(p.utilization) + " of this GPU's " + gib(p.total) + " leaves " +
                   gib(std::max<int64_t>(0, budget)) + " for the KV cache: " + std::to_string(blocks * p.block_size) +
                   " tokens of context, fewer than --max-model-len " + std::to_string(p.max_model_len) + " (short by " +
                   gib(short_by) + "); lower --max-model-len or --max-num-batched-tokens, raise "
                   "--gpu-memory-utilization, or use more GPUs (--tensor-parallel-size) or a quantized model");
}

std::string describe(const gpu_memory_profile& p, int64_t num_blocks) {
  char loaded[48] = "";
  if (p.load_seconds >= 0) std::snprintf(loaded, sizeof loaded, " (loaded in %.1f s)", p.load_seconds);
  return "GPU memory " + gib(p.total) + ", --gpu-memory-utilization " + fraction(p.utilization) + ": weights " +
         gib(p.weight_bytes) + loaded + ", step workspaces " + gib(p.workspace_bytes) + " (profiled over " +
         std::to_string(p.profile_tokens) + " tokens), KV cache " + gib(num_blocks * p.block_bytes) + " = " +
         std::to_string(num_blocks) + " blocks of " + std::to_string(p.block_size) + " tokens (" +
         std::to_string(num_blocks * p.block_size) + " tokens of context)";
}

} // namespace troupe
