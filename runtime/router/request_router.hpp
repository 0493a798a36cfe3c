#pragma once
// Which worker of the fleet takes a request: the decisions of `troupe router`, with no socket in sight.
//
// 1. Pool: the first pool (output-length bucket) whose max_tokens covers the request's, so that long
//    generations never share a worker's batch with short chats. A pool with no healthy worker passes its
//    requests to the next longer pool, then to the shorter ones.
// 2. Worker within the pool, by policy:
//    - prefix_affinity (the default): the prompt's leading full KV blocks (--affinity-blocks of them, the fewer
//      it has) are hashed as the workers' prefix caches hash them (chained block keys, the cache salt in the
//      first), and requests with the same key go where the first of them went: that worker holds their KV
//      blocks. Bounded load (consistent hashing with bounded loads): a worker whose requests in flight would
//      pass load_factor × the pool's mean, and exceed the least loaded worker's by more than load_slack, passes
//      the request to the least-loaded worker within the bound (the slack: a few requests more in a batch cost
//      little, a cache miss costs a prefill, so small loads never break affinity, as SGLang's router). A key
//      seen first (or whose worker left) goes to the worker within the bound that holds the fewest keys, so the
//      prefixes spread evenly over the pool's caches. A prompt without a full block goes to the least loaded.
//    - least_loaded: the fewest requests queued or running (the larger of the router's own count in flight
//      and the worker's last report), then the lowest KV cache use; ties rotate.
//    - round_robin: each worker of the pool in turn (for comparison).
// Only healthy workers are chosen, never one in `exclude` (those a request already tried: failover).
//
// NOTE: keys are remembered, not hashed onto a ring: with a few shared prompts over a few workers (8 system
// prompts over 2 workers) a ring splits them unevenly (6 and 2, or worse, more than one time in four), and the worker with 6
// thrashes its cache; assigning each new key to the worker holding the fewest splits them 4 and 4.
//
// Not thread-safe: the router calls it from one thread.

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/engine/prefix_cache.hpp"
#include "runtime/router/fleet_config.hpp"

namespace troupe {

enum class routing_policy { prefix_affinity, least_loaded, round_robin };

// "prefix_affinity", "least_loaded", "round_robin"; nullopt for anything else.
std::optional<routing_policy> parse_routing_policy(std::string_view name);

struct request_router_config {
  std::vector<pool_config> pools;       // in bucket order; the last has no top
  std::vector<std::string> worker_pool; // each worker's pool name, by worker index
  routing_policy policy = routing_policy::prefix_affinity;
  int32_t block_size = 16;              // the workers' --block-size
  int32_t affinity_blocks = 4;          // leading full blocks that make a prompt's key
  double load_factor = 1.25;            // bounded load: 1 + epsilon (>= 1)
  int32_t load_slack = 8;               // bounded load: requests in flight above the least loaded worker's always allowed
  size_t max_keys = size_t{1} << 16;    // keys remembered; the least recently used goes first
};

// What a worker last reported of itself.
struct worker_load {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  double kv_cache_usage = 0;  // 0..1
};

enum class route_reason {
  affinity,           // the key's worker
  affinity_overflow,  // the key's worker was over the bound: the least loaded within it
  new_key,            // a key not seen (or whose worker left): the worker holding the fewest keys
  least_loaded,
  round_robin,
};

struct route_decision {
  size_t worker = 0;
  size_t pool = 0;         // the worker's pool
  size_t bucket_pool = 0;  // the pool the request's max_tokens asked for (differs when it passed on)
  route_reason reason = route_reason::least_loaded;
};

// Per worker, since the start: what /metrics shows.
struct worker_route_counts {
  int64_t num_routed = 0;
  int64_t num_affinity_hits = 0;       // routed to its prefix's worker
  int64_t num_affinity_overflows = 0;  // its prefix's worker was over the bound
  int64_t num_failovers = 0;           // requests that left it unfinished when it failed, for another worker
};

class request_router {
public:
  // Throws std::invalid_argument for a worker in no pool, no pools, a block size or affinity_blocks below 1,
  // or a load factor below 1 (fleet_config checks what users write first).
  explicit request_router(request_router_config config);

  // The pool a request asking for max_tokens belongs to.
  size_t bucket_of(int32_t max_tokens) const;

  // Picks the worker for a request and counts it in flight there; nullopt when no healthy worker is left
  // outside `exclude`. salt: the request's cache_salt (it enters the first block's key, as in the workers' caches).
  std::optional<route_decision> route(std::span<const int32_t> prompt, std::string_view salt, int32_t max_tokens,
                                      std::span<const size_t> exclude = {});
  // A request routed to `worker` ended there, or left it: one fewer in flight.
  void release(size_t worker);
  // A request left `worker` unfinished (it failed) to be routed again: counted for /metrics.
  void note_failover(size_t worker) { ++workers_[worker].counts.num_failovers; }

  void set_healthy(size_t worker, bool healthy);
  void set_load(size_t worker, const worker_load& load);

  size_t num_workers() const { return workers_.size(); }
  const std::vector<pool_config>& pools() const { return config_.pools; }
  size_t pool_of(size_t worker) const { return workers_[worker].pool; }
  bool healthy(size_t worker) const { return workers_[worker].healthy; }
  int32_t in_flight(size_t worker) const { return workers_[worker].in_flight; }
  const worker_load& load(size_t worker) const { return workers_[worker].load; }
  const worker_route_counts& counts(size_t worker) const { return workers_[worker].counts; }
  // Keys whose requests go to `worker`.
  size_t num_keys(size_t worker) const { return workers_[worker].num_keys; }
  size_t num_healthy(size_t pool) const;
  // Every pool has a healthy worker: what the router's /health answers 200 for.
  bool every_pool_served() const;

  // The prompt's affinity key: the block key after its first min(affinity_blocks, full blocks) blocks;
  // nullopt when it has no full block.
  std::optional<block_key> key_of(std::span<const int32_t> prompt, std::string_view salt) const;

private:
  struct worker_state {
    size_t pool = 0;
    bool healthy = false;  // until its first health check passes
    int32_t in_flight = 0;
    worker_load load;
    worker_route_counts counts;
    size_t num_keys = 0;
  };
  struct key_hash {
    size_t operator()(const block_key& k) const { return static_cast<size_t>(k.lo ^ (k.hi * 0x9e3779b97f4a7c15ULL)); }
  };
  struct key_entry {
    size_t worker = 0;
    std::list<block_key>::iterator lru;  // its place in keys_lru_
  };

  // The pools to try, in order: the bucket's, the longer ones, then the shorter ones nearest first.
  std::vector<size_t> pool_order(size_t bucket) const;
  // Healthy workers of `pool` outside `exclude`.
  std::vector<size_t> candidates(size_t pool, std::span<const size_t> exclude) const;
  // Whether `w` may take one more request under the bounded load over `among` (its slack included).
  bool within_bound(size_t w, const std::vector<size_t>& among) const;
  // The larger of the router's count in flight and the worker's own report of queued and running requests.
  int64_t queue_of(size_t w) const;
  // The least loaded of `among` (nonempty); ties go round the pool.
  size_t least_loaded(const std::vector<size_t>& among, size_t pool);
  size_t round_robin(const std::vector<size_t>& among, size_t pool);
  void assign_key(const block_key& key, size_t worker);

  request_router_config config_;
  std::vector<worker_state> workers_;
  std::vector<std::vector<size_t>> pool_workers_;  // by pool, ascending worker index
  std::vector<size_t> next_;                       // by pool: where round robin and tie-breaking start
  std::unordered_map<block_key, key_entry, key_hash> keys_;
  std::list<block_key> keys_lru_;  // most recently used first
};

} // namespace troupe
