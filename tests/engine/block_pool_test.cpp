#include "runtime/engine/block_pool.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

using ids = std::vector<int32_t>;

// Registers a held block under a made-up key: the pool only cares whether a block is registered.
void cache(block_pool& pool, int32_t block) {
  const std::vector<int32_t> tokens{block, block};
  ASSERT_NE(pool.cache_block(block, block_key{static_cast<uint64_t>(block) + 100, 0}, no_entry, tokens, ""), no_entry);
}

TEST(block_pool, a_fresh_pool_hands_out_blocks_in_id_order) {
  block_pool pool(4, true);
  EXPECT_EQ(pool.num_blocks(), 4);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.allocate(2), ids({0, 1}));
  EXPECT_EQ(pool.allocate(2), ids({2, 3}));
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_EQ(pool.ref_count(0), 1);
}

TEST(block_pool, allocation_is_all_or_nothing) {
  block_pool pool(4, true);
  EXPECT_EQ(pool.allocate(3), ids({0, 1, 2}));
  EXPECT_EQ(pool.allocate(2), std::nullopt);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.allocate(1), ids({3}));
}

TEST(block_pool, allocating_zero_blocks_gives_an_empty_list) {
  block_pool pool(2, true);
  EXPECT_EQ(pool.allocate(0), ids{});
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(block_pool, freed_plain_blocks_queue_behind_the_never_used_ones) {
  block_pool pool(4, true);
  pool.allocate(2);
  pool.free(ids{1, 0});
  EXPECT_EQ(pool.allocate(4), ids({2, 3, 1, 0}));
}

TEST(block_pool, a_block_is_free_only_when_its_last_reference_goes) {
  block_pool pool(4, true);
  pool.allocate(1);
  pool.touch(ids{0});
  EXPECT_EQ(pool.ref_count(0), 2);
  pool.free(ids{0});
  EXPECT_EQ(pool.ref_count(0), 1);
  EXPECT_EQ(pool.num_free(), 3);
  pool.free(ids{0});
  EXPECT_EQ(pool.ref_count(0), 0);
  EXPECT_EQ(pool.num_free(), 4);
}

TEST(block_pool, cached_free_blocks_survive_until_no_plain_free_block_is_left) {
  block_pool pool(4, true);
  pool.allocate(2);
  cache(pool, 0);
  cache(pool, 1);
  pool.free(ids{1, 0});
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.num_cached_free(), 2);

  EXPECT_EQ(pool.allocate(2), ids({2, 3}));
  EXPECT_EQ(pool.num_evictions(), 0);
  EXPECT_TRUE(pool.cache().contains(0));
  EXPECT_TRUE(pool.cache().contains(1));

  EXPECT_EQ(pool.allocate(1), ids({1}));  // freed first, so evicted first
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_FALSE(pool.cache().contains(1));
  EXPECT_TRUE(pool.cache().contains(0));
}

TEST(block_pool, a_plain_block_freed_after_a_cached_one_is_still_taken_first) {
  block_pool pool(3, true);
  pool.allocate(3);
  cache(pool, 0);
  pool.free(ids{0});
  pool.free(ids{1});
  EXPECT_EQ(pool.allocate(1), ids({1}));
  EXPECT_EQ(pool.num_evictions(), 0);
  EXPECT_EQ(pool.allocate(1), ids({0}));
  EXPECT_EQ(pool.num_evictions(), 1);
}

TEST(block_pool, evicts_least_recently_used_cached_block_first) {
  block_pool pool(3, true);
  pool.allocate(3);
  for (int32_t b : {0, 1, 2}) cache(pool, b);
  pool.free(ids{2});
  pool.free(ids{0});
  pool.free(ids{1});
  EXPECT_EQ(pool.allocate(3), ids({2, 0, 1}));
  EXPECT_EQ(pool.num_evictions(), 3);
  EXPECT_EQ(pool.cache().size(), 0);
}

TEST(block_pool, a_cache_hit_takes_a_free_cached_block_out_of_the_queue) {
  block_pool pool(4, true);
  pool.allocate(2);
  cache(pool, 0);
  cache(pool, 1);
  pool.free(ids{1, 0});
  pool.touch(ids{0});
  EXPECT_EQ(pool.ref_count(0), 1);
  EXPECT_EQ(pool.num_free(), 3);
  EXPECT_EQ(pool.num_cached_free(), 1);

  EXPECT_EQ(pool.allocate(3), ids({2, 3, 1}));
  EXPECT_EQ(pool.allocate(1), std::nullopt);
  EXPECT_TRUE(pool.cache().contains(0));  // held, so never evicted
}

TEST(block_pool, a_hit_moves_the_block_to_the_back_of_the_lru_order) {
  block_pool pool(3, true);
  pool.allocate(3);
  for (int32_t b : {0, 1, 2}) cache(pool, b);
  pool.free(ids{0, 1, 2});
  pool.touch(ids{0});
  pool.free(ids{0});
  EXPECT_EQ(pool.allocate(3), ids({1, 2, 0}));
}

TEST(block_pool, eviction_removes_the_block_from_the_prefix_cache) {
  block_pool pool(1, true);
  pool.allocate(1);
  const std::vector<int32_t> tokens{7, 8};
  const block_key key{5, 6};
  const cache_entry_id entry = pool.cache_block(0, key, no_entry, tokens, "");
  EXPECT_EQ(entry, 1u);
  pool.free(ids{0});
  EXPECT_EQ(pool.cache().find(key, no_entry, tokens, ""), 0);

  EXPECT_EQ(pool.allocate(1), ids({0}));
  EXPECT_EQ(pool.cache().find(key, no_entry, tokens, ""), std::nullopt);
  EXPECT_EQ(pool.cache().size(), 0);
  EXPECT_EQ(pool.cache().entry_of(0), no_entry);
}

TEST(block_pool, registering_a_block_twice_keeps_its_first_entry) {
  block_pool pool(1, true);
  pool.allocate(1);
  const std::vector<int32_t> tokens{7, 8};
  EXPECT_EQ(pool.cache_block(0, block_key{1, 1}, no_entry, tokens, ""), 1u);
  EXPECT_EQ(pool.cache_block(0, block_key{2, 2}, no_entry, tokens, ""), 1u);
  EXPECT_EQ(pool.cache().key_of(0), (block_key{1, 1}));
}

TEST(block_pool, without_caching_nothing_is_registered_and_freed_blocks_stay_plain) {
  block_pool pool(2, false);
  pool.allocate(2);
  const std::vector<int32_t> tokens{1};
  EXPECT_EQ(pool.cache_block(0, block_key{1, 1}, no_entry, tokens, ""), no_entry);
  pool.free(ids{0, 1});
  EXPECT_EQ(pool.num_cached_free(), 0);
  EXPECT_EQ(pool.allocate(2), ids({0, 1}));
  EXPECT_EQ(pool.num_evictions(), 0);
}

TEST(block_pool, usage_counts_held_blocks_and_not_cached_free_ones) {
  block_pool pool(4, true);
  pool.allocate(1);
  EXPECT_DOUBLE_EQ(pool.usage(), 0.25);
  cache(pool, 0);
  pool.free(ids{0});
  EXPECT_DOUBLE_EQ(pool.usage(), 0.0);
}

TEST(block_pool, returns_to_its_starting_free_count_after_everything_is_freed) {
  block_pool pool(5, true);
  const auto a = pool.allocate(3).value();
  const auto b = pool.allocate(2).value();
  cache(pool, a[0]);
  pool.touch(ids{a[0]});
  pool.free(a);
  pool.free(b);
  pool.free(ids{a[0]});
  EXPECT_EQ(pool.num_free(), 5);
  EXPECT_EQ(pool.num_cached_free(), 1);
}

TEST(block_pool, misuse_is_a_logic_error) {
  block_pool pool(2, true);
  EXPECT_THROW(pool.free(ids{0}), std::logic_error);  // double free
  EXPECT_THROW(pool.touch(ids{2}), std::out_of_range);
  const std::vector<int32_t> tokens{1};
  EXPECT_THROW(pool.cache_block(0, block_key{1, 1}, no_entry, tokens, ""), std::logic_error);  // free block
  EXPECT_THROW(pool.allocate(-1), std::invalid_argument);
  EXPECT_THROW(block_pool(0, true), std::invalid_argument);
}

} // namespace
} // namespace troupe
