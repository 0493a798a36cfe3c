#pragma once
// The paged KV cache's blocks: reference counts, the free queue, and the prefix cache index of the
// blocks whose KV can be reused. Pure bookkeeping; the KV tensors live with the shards.
//
// Free blocks sit in one of two intrusive doubly linked queues (O(1) per block, no scans):
//   - plain: no cached content. Allocation takes these first, oldest freed first (a fresh pool
//     hands out 0, 1, 2, ...).
//   - cached: registered in the prefix cache, kept in LRU order (the least recently freed at the
//     head). Evicted from the head, only when no plain block is left; eviction unregisters it.
//
// NOTE: reference counts. A block is free exactly when its count is 0, and then it is in the queue
// that matches whether it is registered. allocate() sets 1, touch() adds 1 (a cache hit taking a
// share, pulling the block out of its queue at 0), free() subtracts 1 (queueing it at 0).
// Registering needs a held block (count > 0), so a registered block is never in the plain queue.
//
// Not thread-safe: one scheduler owns it.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine/prefix_cache.hpp"

namespace troupe {

class block_pool {
public:
  // Blocks 0..num_blocks-1 (num_blocks > 0), all free. Without caching, nothing is ever registered.
  block_pool(int32_t num_blocks, bool enable_caching);

  // n blocks (n >= 0), each with reference count 1: plain free blocks first, then cached ones,
  // least recently used first (evicting them from the prefix cache). All or nothing: nullopt,
  // with nothing changed, when fewer than n blocks are free.
  std::optional<std::vector<int32_t>> allocate(int32_t n);

  // Drops one reference from each block, in order; a block reaching 0 goes to the tail of its
  // free queue, so among cached blocks the first freed here is the first evicted. Throws
  // std::logic_error for a block that is already free (a double free).
  void free(std::span<const int32_t> blocks);

  // Adds one reference to each block (a prefix cache hit), taking free ones out of their queue.
  void touch(std::span<const int32_t> blocks);

  // Registers a held full block in the prefix cache (see prefix_cache::insert for the result;
  // an already registered block returns its entry id). no_entry when caching is off.
  cache_entry_id cache_block(int32_t block, const block_key& key, cache_entry_id parent,
                             std::span<const int32_t> tokens, std::string_view salt);

  // The prefix cache index, for lookups.
  const prefix_cache& cache() const { return cache_; }
  bool caching_enabled() const { return caching_; }

  int32_t num_blocks() const { return static_cast<int32_t>(ref_.size()); }
  // Free blocks, plain and cached: what allocate() can hand out.
  int32_t num_free() const { return plain_.size + cached_.size; }
  // Free blocks still holding cached content (eviction candidates).
  int32_t num_cached_free() const { return cached_.size; }
  // Fraction of blocks in use, 0..1 (cached free blocks count as free, as in vLLM).
  double usage() const { return 1.0 - static_cast<double>(num_free()) / num_blocks(); }
  int32_t ref_count(int32_t block) const;
  // Cached blocks evicted since construction.
  int64_t num_evictions() const { return num_evictions_; }

  // For tests: "" when the reference counts, the free queues and the prefix cache agree with the
  // NOTE above, else the first disagreement. O(num_blocks).
  std::string check_consistency() const;

private:
  // A queue threaded through next_/prev_ (a block is in at most one queue). -1: none.
  struct queue {
    int32_t head = -1;
    int32_t tail = -1;
    int32_t size = 0;
  };
  void push_back(queue& q, int32_t block);
  void unlink(queue& q, int32_t block);
  void check_id(int32_t block, const char* what) const;

  std::vector<int32_t> ref_;
  std::vector<int32_t> next_;
  std::vector<int32_t> prev_;
  queue plain_;
  queue cached_;
  prefix_cache cache_;
  bool caching_;
  int64_t num_evictions_ = 0;
};

} // namespace troupe
