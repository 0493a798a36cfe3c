#include "runtime/engine/kv_cache_manager.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <span>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

using ids = std::vector<int32_t>;
using tokens_t = std::vector<int32_t>;

// start, start + 1, ..., n tokens.
tokens_t seq(int32_t start, int32_t n) {
  tokens_t t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

tokens_t concat(tokens_t a, const tokens_t& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

ids table(const kv_cache_manager& kv, request_id id) {
  const auto t = kv.block_table(id);
  return ids(t.begin(), t.end());
}

// Plays the scheduler for a prompt computed in one step: look up, allocate, compute, cache.
std::optional<ids> prefill(kv_cache_manager& kv, request_id id, const tokens_t& prompt, std::string_view salt = {}) {
  const computed_blocks hit = kv.get_computed_blocks(prompt, salt);
  auto fresh = kv.allocate_slots(id, static_cast<int32_t>(prompt.size()) - hit.num_computed_tokens, hit);
  if (fresh) kv.cache_blocks(id, prompt, static_cast<int32_t>(prompt.size()));
  return fresh;
}

// Every block hashes to 42: any two blocks collide.
block_key constant_hash(const block_key&, std::span<const int32_t>, std::string_view) { return {42, 0}; }

TEST(kv_cache_manager, a_new_request_gets_blocks_for_its_prompt) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  const computed_blocks hit = kv.get_computed_blocks(seq(100, 10));
  EXPECT_EQ(hit.blocks, ids{});
  EXPECT_EQ(hit.num_computed_tokens, 0);
  EXPECT_EQ(kv.allocate_slots(1, 10, hit), ids({0, 1, 2}));
  EXPECT_EQ(table(kv, 1), ids({0, 1, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 5);
}

TEST(kv_cache_manager, decode_takes_a_new_block_only_when_the_last_one_is_full) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  kv.allocate_slots(1, 10);
  EXPECT_EQ(kv.allocate_slots(1, 1), ids{});  // slot 10
  EXPECT_EQ(kv.allocate_slots(1, 1), ids{});  // slot 11
  EXPECT_EQ(kv.allocate_slots(1, 1), ids({3}));
  EXPECT_EQ(table(kv, 1), ids({0, 1, 2, 3}));
}

TEST(kv_cache_manager, a_second_request_reuses_a_shared_3_block_prefix) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  EXPECT_EQ(prefill(kv, 1, seq(0, 14)), ids({0, 1, 2, 3}));
  EXPECT_EQ(kv.pool().cache().size(), 3);

  const tokens_t prompt = concat(seq(0, 12), {90, 91, 92});
  const computed_blocks hit = kv.get_computed_blocks(prompt);
  EXPECT_EQ(hit.blocks, ids({0, 1, 2}));
  EXPECT_EQ(hit.num_computed_tokens, 12);
  EXPECT_EQ(kv.allocate_slots(2, 3, hit), ids({4}));
  EXPECT_EQ(table(kv, 2), ids({0, 1, 2, 4}));
  for (int32_t b : {0, 1, 2}) EXPECT_EQ(kv.pool().ref_count(b), 2);
  EXPECT_EQ(kv.pool().ref_count(3), 1);

  const prefix_cache_stats s = kv.stats();
  EXPECT_EQ(s.num_requests, 2);
  EXPECT_EQ(s.num_queried_tokens, 14 + 15);
  EXPECT_EQ(s.num_hit_tokens, 12);
  EXPECT_EQ(s.num_evicted_blocks, 0);
}

TEST(kv_cache_manager, freeing_one_sharer_keeps_the_shared_blocks_alive) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  prefill(kv, 1, seq(0, 14));
  prefill(kv, 2, concat(seq(0, 12), {90, 91, 92}));
  kv.free(1);
  for (int32_t b : {0, 1, 2}) EXPECT_EQ(kv.pool().ref_count(b), 1);
  EXPECT_EQ(kv.pool().ref_count(3), 0);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(table(kv, 1), ids{});
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13)).blocks, ids({0, 1, 2}));

  kv.free(2);
  EXPECT_EQ(kv.num_free_blocks(), 8);
  EXPECT_EQ(kv.pool().num_cached_free(), 3);  // 0, 1, 2; request 2's block 4 is partial
}

TEST(kv_cache_manager, a_fully_cached_prompt_still_leaves_a_token_to_compute) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  prefill(kv, 1, seq(0, 12));
  EXPECT_EQ(kv.pool().cache().size(), 3);

  const computed_blocks hit = kv.get_computed_blocks(seq(0, 12));
  EXPECT_EQ(hit.blocks, ids({0, 1}));  // the last block is recomputed for the logits
  EXPECT_EQ(hit.num_computed_tokens, 8);
  EXPECT_EQ(kv.allocate_slots(2, 4, hit), ids({3}));

  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13)).blocks, ids({0, 1, 2}));
}

TEST(kv_cache_manager, a_freed_requests_tail_blocks_are_evicted_first) {
  kv_cache_manager kv({.num_blocks = 4, .block_size = 4});
  prefill(kv, 1, seq(0, 12));
  kv.free(1);  // LRU order: 2, 1, 0
  EXPECT_EQ(kv.pool().num_cached_free(), 3);

  EXPECT_EQ(prefill(kv, 2, seq(50, 12)), ids({3, 2, 1}));  // the plain block first
  EXPECT_EQ(kv.stats().num_evicted_blocks, 2);
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13)).blocks, ids({0}));
}

TEST(kv_cache_manager, allocation_fails_without_side_effects_when_blocks_run_out) {
  kv_cache_manager kv({.num_blocks = 4, .block_size = 4});
  EXPECT_EQ(kv.allocate_slots(1, 12), ids({0, 1, 2}));
  EXPECT_EQ(kv.allocate_slots(2, 8), std::nullopt);
  EXPECT_EQ(table(kv, 2), ids{});
  EXPECT_EQ(kv.num_free_blocks(), 1);
  kv.free(2);  // never got blocks: no-op

  EXPECT_EQ(kv.allocate_slots(1, 1), ids({3}));  // 13 slots
  EXPECT_EQ(kv.allocate_slots(1, 4), std::nullopt);  // 17 would need a fifth block
  EXPECT_EQ(kv.allocate_slots(1, 3), ids{});  // 16 slots: the failed call added none
  EXPECT_EQ(table(kv, 1), ids({0, 1, 2, 3}));
}

TEST(kv_cache_manager, free_prefix_blocks_count_against_the_free_blocks) {
  kv_cache_manager kv({.num_blocks = 4, .block_size = 4});
  prefill(kv, 1, seq(0, 9));  // blocks 0, 1 cached; 2 partial
  kv.free(1);                 // plain: 3, 2; cached: 1, 0

  const tokens_t long_prompt = concat(seq(0, 8), seq(100, 12));  // 5 blocks
  const computed_blocks hit = kv.get_computed_blocks(long_prompt);
  EXPECT_EQ(hit.blocks, ids({0, 1}));
  // 3 new blocks fit in 4 free ones, but taking the 2 hits leaves only 2.
  EXPECT_EQ(kv.allocate_slots(2, 12, hit), std::nullopt);
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(kv.pool().ref_count(0), 0);
  EXPECT_EQ(kv.pool().num_cached_free(), 2);

  const tokens_t prompt = concat(seq(0, 8), seq(100, 8));  // 4 blocks
  const computed_blocks hit2 = kv.get_computed_blocks(prompt);
  EXPECT_EQ(kv.allocate_slots(2, 8, hit2), ids({3, 2}));
  EXPECT_EQ(table(kv, 2), ids({0, 1, 3, 2}));
  EXPECT_EQ(kv.num_free_blocks(), 0);
  EXPECT_EQ(kv.stats().num_evicted_blocks, 0);
}

TEST(kv_cache_manager, blocks_filled_by_decode_are_cached_too) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  tokens_t tokens = seq(0, 6);
  EXPECT_EQ(prefill(kv, 1, tokens), ids({0, 1}));
  EXPECT_EQ(kv.pool().cache().size(), 1);

  tokens.push_back(100);  // sampled after the prefill
  kv.allocate_slots(1, 1);
  tokens.push_back(101);
  kv.cache_blocks(1, tokens, 7);
  EXPECT_EQ(kv.pool().cache().size(), 1);

  kv.allocate_slots(1, 1);
  tokens.push_back(102);
  kv.cache_blocks(1, tokens, 8);
  EXPECT_EQ(kv.pool().cache().size(), 2);
  EXPECT_EQ(kv.get_computed_blocks(concat(seq(0, 6), {100, 101, 7})).blocks, ids({0, 1}));
}

TEST(kv_cache_manager, a_prefix_computed_twice_at_once_is_cached_once_and_the_first_copy_kept) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  const tokens_t prompt = seq(0, 9);
  const computed_blocks hit1 = kv.get_computed_blocks(prompt);
  const computed_blocks hit2 = kv.get_computed_blocks(prompt);
  EXPECT_EQ(kv.allocate_slots(1, 9, hit1), ids({0, 1, 2}));
  EXPECT_EQ(kv.allocate_slots(2, 9, hit2), ids({3, 4, 5}));
  kv.cache_blocks(1, prompt, 9);
  kv.cache_blocks(2, prompt, 9);
  EXPECT_EQ(kv.pool().cache().size(), 2);
  EXPECT_FALSE(kv.pool().cache().contains(3));

  // Request 2's chain goes on from request 1's copy.
  kv.allocate_slots(2, 3);
  kv.cache_blocks(2, seq(0, 12), 12);
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13)).blocks, ids({0, 1, 5}));

  kv.free(2);
  EXPECT_EQ(kv.pool().num_cached_free(), 1);  // block 5; 3 and 4 were duplicates, now plain
  kv.free(1);
  EXPECT_EQ(kv.pool().num_cached_free(), 3);
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13)).blocks, ids({0, 1, 5}));
}

TEST(kv_cache_manager, a_constant_hash_never_serves_a_wrong_block) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4}, constant_hash);
  const tokens_t a = seq(0, 13);
  EXPECT_EQ(prefill(kv, 1, a), ids({0, 1, 2, 3}));
  // Block 0 took key 42; blocks 1 and 2 collide with it and stay unregistered.
  EXPECT_EQ(kv.pool().cache().size(), 1);
  EXPECT_TRUE(kv.pool().cache().contains(0));

  EXPECT_EQ(kv.get_computed_blocks(seq(50, 13)).blocks, ids{});                     // other first block
  EXPECT_EQ(kv.get_computed_blocks(a).blocks, ids({0}));                            // only the first block
  EXPECT_EQ(kv.get_computed_blocks(concat(seq(0, 4), seq(0, 9))).blocks, ids({0}));  // same block, other parent
  EXPECT_EQ(kv.get_computed_blocks(a, "salt").blocks, ids{});                       // other salt

  kv.free(1);
  EXPECT_EQ(prefill(kv, 2, seq(50, 13)), ids({4, 5, 6, 7}));
  EXPECT_EQ(kv.pool().cache().size(), 1);  // 42 still names block 0
  EXPECT_EQ(kv.get_computed_blocks(seq(50, 13)).blocks, ids{});
  EXPECT_EQ(kv.get_computed_blocks(a).blocks, ids({0}));

  const prefix_cache_stats s = kv.stats();
  EXPECT_EQ(s.num_requests, 8);
  EXPECT_EQ(s.num_hit_tokens, 3 * 4);
}

TEST(kv_cache_manager, a_cache_salt_separates_otherwise_equal_prompts) {
  kv_cache_manager kv({.num_blocks = 8, .block_size = 4});
  const tokens_t prompt = seq(0, 9);
  prefill(kv, 1, prompt, "tenant-a");
  EXPECT_EQ(kv.get_computed_blocks(prompt).blocks, ids{});
  EXPECT_EQ(kv.get_computed_blocks(prompt, "tenant-b").blocks, ids{});
  EXPECT_EQ(kv.get_computed_blocks(prompt, "tenant-a").blocks, ids({0, 1}));

  // A salted request that hit keeps its salt for the blocks it caches later.
  const computed_blocks hit = kv.get_computed_blocks(seq(0, 13), "tenant-a");
  EXPECT_EQ(kv.allocate_slots(2, 5, hit), ids({3, 4}));
  kv.cache_blocks(2, seq(0, 13), 13);
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13), "tenant-a").blocks, ids({0, 1, 3}));
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 13)).blocks, ids{});
}

TEST(kv_cache_manager, returns_to_its_starting_free_count_after_all_requests_free) {
  kv_cache_manager kv({.num_blocks = 6, .block_size = 4});
  prefill(kv, 1, seq(0, 10));
  prefill(kv, 2, seq(0, 9));
  prefill(kv, 3, seq(30, 5));
  EXPECT_EQ(kv.allocate_slots(1, 2), ids{});  // 12 slots in its 3 blocks
  EXPECT_EQ(kv.num_free_blocks(), 0);
  EXPECT_DOUBLE_EQ(kv.usage(), 1.0);
  for (request_id id : {2, 1, 3}) kv.free(id);
  EXPECT_EQ(kv.num_free_blocks(), 6);
  EXPECT_DOUBLE_EQ(kv.usage(), 0.0);
  for (int32_t b = 0; b < 6; ++b) EXPECT_EQ(kv.pool().ref_count(b), 0);
}

TEST(kv_cache_manager, without_prefix_caching_nothing_is_shared) {
  kv_cache_manager kv({.num_blocks = 4, .block_size = 4, .enable_prefix_caching = false});
  EXPECT_EQ(prefill(kv, 1, seq(0, 9)), ids({0, 1, 2}));
  kv.free(1);
  EXPECT_EQ(kv.get_computed_blocks(seq(0, 9)).blocks, ids{});
  EXPECT_EQ(prefill(kv, 2, seq(0, 9)), ids({3, 2, 1}));
  EXPECT_EQ(kv.pool().cache().size(), 0);
  const prefix_cache_stats s = kv.stats();
  EXPECT_EQ(s.num_requests, 0);
  EXPECT_EQ(s.num_queried_tokens, 0);
  EXPECT_EQ(s.num_evicted_blocks, 0);
}

TEST(kv_cache_manager, misuse_is_a_logic_error) {
  kv_cache_manager kv({.num_blocks = 4, .block_size = 4});
  EXPECT_THROW(kv.cache_blocks(9, seq(0, 4), 4), std::logic_error);  // no blocks
  prefill(kv, 1, seq(0, 8));
  EXPECT_THROW(kv.cache_blocks(1, seq(0, 8), 9), std::logic_error);  // more than it has slots for
  const computed_blocks hit = kv.get_computed_blocks(seq(0, 9));
  EXPECT_THROW(kv.allocate_slots(1, 1, hit), std::logic_error);  // a prefix for a running request
  EXPECT_THROW(kv.allocate_slots(1, -1), std::invalid_argument);
  kv.free(1);
  const computed_blocks stale = kv.get_computed_blocks(seq(0, 9));  // blocks 0 and 1, free
  kv.allocate_slots(2, 16);                                          // evicts them
  EXPECT_THROW(kv.allocate_slots(3, 1, stale), std::logic_error);
  EXPECT_THROW(kv_cache_manager({.num_blocks = 4, .block_size = 0}), std::invalid_argument);
}

// Random traffic over a tiny pool, with a hash that collides all the time. Every block records the
// (salt, tokens) its KV was computed for, as a model would; every prefix hit must match exactly.
void run_random_traffic(const block_hash_fn& hash, int64_t min_hit_tokens) {
  constexpr int32_t block_size = 2;
  constexpr int32_t num_blocks = 12;
  kv_cache_manager kv({.num_blocks = num_blocks, .block_size = block_size}, hash);
  std::mt19937 rng(7);
  auto pick = [&](int32_t n) { return static_cast<int32_t>(rng() % static_cast<uint32_t>(n)); };

  struct request {
    tokens_t tokens;
    std::string salt;
    int32_t num_computed = 0;
  };
  std::map<request_id, request> running;
  std::vector<std::pair<std::string, tokens_t>> kv_of(num_blocks);  // what each block's KV was computed for
  request_id next_id = 1;
  int64_t num_hit_tokens = 0;

  auto computed = [&](request_id id, request& r, int32_t from_tokens) {
    const auto t = kv.block_table(id);
    for (int32_t i = from_tokens / block_size; i < r.num_computed / block_size; ++i) {
      ASSERT_EQ(kv.pool().ref_count(t[i]), 1) << "a request writes KV into a block nobody else reads";
      kv_of[t[i]] = {r.salt, tokens_t(r.tokens.begin(), r.tokens.begin() + (i + 1) * block_size)};
    }
    kv.cache_blocks(id, r.tokens, r.num_computed);
  };

  for (int step = 0; step < 3000; ++step) {
    const int32_t action = pick(10);
    if (action < 4) {  // a new request: prompts over 2 tokens, so prefixes repeat often
      request r;
      r.salt = pick(4) == 0 ? "s" : "";
      for (int32_t n = 1 + pick(7); n > 0; --n) r.tokens.push_back(pick(2));
      const computed_blocks hit = kv.get_computed_blocks(r.tokens, r.salt);
      for (size_t i = 0; i < hit.blocks.size(); ++i) {
        const tokens_t prefix(r.tokens.begin(), r.tokens.begin() + (i + 1) * block_size);
        ASSERT_EQ(kv_of[hit.blocks[i]], std::make_pair(r.salt, prefix)) << "step " << step << " block " << i;
      }
      const auto num_new = static_cast<int32_t>(r.tokens.size()) - hit.num_computed_tokens;
      if (!kv.allocate_slots(next_id, num_new, hit)) continue;
      num_hit_tokens += hit.num_computed_tokens;
      r.num_computed = static_cast<int32_t>(r.tokens.size());
      computed(next_id, r, hit.num_computed_tokens);
      running.emplace(next_id++, std::move(r));
    } else if (action < 8 && !running.empty()) {  // a decode step; preempted when out of blocks
      auto it = std::next(running.begin(), pick(static_cast<int32_t>(running.size())));
      if (!kv.allocate_slots(it->first, 1)) {
        kv.free(it->first);
        running.erase(it);
        continue;
      }
      request& r = it->second;
      r.tokens.push_back(pick(2));
      const int32_t before = r.num_computed++;
      computed(it->first, r, before - before % block_size);
    } else if (!running.empty()) {  // a request finishes
      auto it = std::next(running.begin(), pick(static_cast<int32_t>(running.size())));
      kv.free(it->first);
      running.erase(it);
    }

    int64_t num_refs = 0, num_held = 0;
    for (int32_t b = 0; b < num_blocks; ++b) {
      num_refs += kv.pool().ref_count(b);
      num_held += kv.pool().ref_count(b) > 0 ? 1 : 0;
    }
    int64_t num_table_entries = 0;
    for (const auto& [id, r] : running) num_table_entries += static_cast<int64_t>(kv.block_table(id).size());
    ASSERT_EQ(num_refs, num_table_entries);
    ASSERT_EQ(kv.num_free_blocks(), num_blocks - num_held);
    ASSERT_EQ(kv.check_consistency(), "") << "step " << step;
  }
  EXPECT_GE(num_hit_tokens, min_hit_tokens);  // the traffic did exercise the cache
  for (const auto& [id, r] : running) kv.free(id);
  EXPECT_EQ(kv.num_free_blocks(), num_blocks);
}

TEST(kv_cache_manager, random_traffic_with_a_colliding_hash_never_serves_wrong_kv) {
  // Three keys in all: parent and tokens mixed, then folded.
  run_random_traffic(
      [](const block_key& parent, std::span<const int32_t> tokens, std::string_view salt) {
        uint64_t h = parent.lo * 3 + salt.size();
        for (int32_t t : tokens) h = h * 5 + static_cast<uint64_t>(t);
        return block_key{h % 3, 0};
      },
      100);
}

TEST(kv_cache_manager, random_traffic_with_xxh3_never_serves_wrong_kv) { run_random_traffic(xxh3_block_hash, 500); }

} // namespace
} // namespace troupe
