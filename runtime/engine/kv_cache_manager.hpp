#pragma once
// Per-request KV bookkeeping over the block pool and the prefix cache, in the shape of vLLM V1's
// KVCacheManager. The scheduler drives it each step:
//
//   new request:  hit = get_computed_blocks(tokens, salt);           // cached leading blocks
//                 allocate_slots(id, num_new_tokens, hit);           // nullopt: preempt or wait
//   running:      allocate_slots(id, num_new_tokens);                // decode or next prefill chunk
//   after a step: cache_blocks(id, tokens, num_computed_tokens);     // full blocks become reusable
//   done/preempt: free(id);                                          // tail blocks evicted first
//
// A request's block table is append-only: block i holds tokens [i * block_size, (i+1) * block_size).
// Every operation costs O(blocks it touches); nothing scans the pool.
//
// Not thread-safe: one scheduler owns it.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/engine/block_pool.hpp"
#include "runtime/engine/prefix_cache.hpp"
#include "runtime/engine/request_id.hpp"

namespace troupe {

struct kv_cache_config {
  int32_t num_blocks = 0;             // > 0
  int32_t block_size = 16;            // tokens per block, > 0 (--block-size)
  bool enable_prefix_caching = true;  // --enable-prefix-caching
};

// The cached prefix a new request starts from.
struct computed_blocks {
  std::vector<int32_t> blocks;      // cached blocks of its leading full blocks, in order
  int32_t num_computed_tokens = 0;  // blocks.size() * block_size
  std::string cache_salt;           // the salt they were looked up with; the request keeps it
};

// Cumulative counters with the meaning of vLLM's prefix cache metrics: queries and hits count
// tokens (vllm:prefix_cache_queries / vllm:prefix_cache_hits), not blocks.
struct prefix_cache_stats {
  int64_t num_requests = 0;        // get_computed_blocks calls (with caching on)
  int64_t num_queried_tokens = 0;  // all tokens of those requests (the one left to compute included)
  int64_t num_hit_tokens = 0;      // tokens found cached
  int64_t num_evicted_blocks = 0;  // cached blocks evicted to make room
};

class kv_cache_manager {
public:
  // hash: the block hash; tests inject colliding ones.
  explicit kv_cache_manager(const kv_cache_config& config, block_hash_fn hash = xxh3_block_hash);

  // The longest run of cached leading full blocks of a request's tokens (prompt, plus outputs when
  // a preempted request is recomputed). At most tokens.size() - 1 tokens count as computed, so one
  // is left to compute the logits from (which can cost a whole block, as in vLLM). Takes no
  // references: hand the result to allocate_slots before anything else allocates. Empty when
  // caching is off. Records prefix_cache_stats.
  computed_blocks get_computed_blocks(std::span<const int32_t> tokens, std::string_view cache_salt = {});

  // Makes the request's block table cover num_new_tokens more tokens: on its first call, after the
  // prefix's blocks (which it takes a reference to); later, after the tokens it has slots for.
  // Returns the newly allocated blocks (prefix blocks not included), or nullopt, changing nothing,
  // when the free blocks do not suffice: the caller preempts or waits. Prefix blocks that sit in
  // the free queue count against the free blocks, since taking them removes them from it.
  std::optional<std::vector<int32_t>> allocate_slots(request_id id, int32_t num_new_tokens,
                                                     const computed_blocks& prefix = {});

  // Registers in the prefix cache the request's blocks that are full of computed KV.
  // tokens: all its tokens so far, at least num_computed_tokens of them; num_computed_tokens: how
  // many have their KV written (at most the tokens it has slots for). Call it after each step.
  void cache_blocks(request_id id, std::span<const int32_t> tokens, int32_t num_computed_tokens);

  // Releases the request's blocks, tail first, so its last blocks are evicted before its first
  // (which other requests are likelier to share). No-op for an unknown request.
  void free(request_id id);

  // The request's blocks in token order; empty for an unknown request. Valid until the next
  // allocate_slots or free of that request.
  std::span<const int32_t> block_table(request_id id) const;

  int32_t block_size() const { return block_size_; }
  int32_t num_free_blocks() const { return pool_.num_free(); }
  // Fraction of blocks in use, 0..1 (vllm:kv_cache_usage_perc).
  double usage() const { return pool_.usage(); }
  prefix_cache_stats stats() const;
  const block_pool& pool() const { return pool_; }

  // For tests: "" when every block's reference count is the number of request tables that hold it,
  // each table has the blocks its tokens need, and the pool is consistent (block_pool's check), else
  // the first disagreement. O(num_blocks + blocks held).
  std::string check_consistency() const;

private:
  struct request_blocks {
    std::vector<int32_t> blocks;
    int64_t num_tokens = 0;        // tokens with a slot
    int32_t num_cached_blocks = 0; // leading blocks registered (or known identical to registered ones)
    block_key last_key = root_parent_key;  // key of block num_cached_blocks - 1
    cache_entry_id last_entry = no_entry;  // its cache entry
    bool chain_broken = false;     // a key was taken by other content: later blocks stay unregistered
    std::string cache_salt;
  };

  block_pool pool_;
  block_hash_fn hash_;
  int32_t block_size_;
  std::unordered_map<request_id, request_blocks> requests_;
  prefix_cache_stats stats_;
};

} // namespace troupe
