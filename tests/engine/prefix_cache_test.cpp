#include "runtime/engine/prefix_cache.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <span>
#include <vector>

namespace troupe {
namespace {

using ids = std::vector<int32_t>;
using tokens_t = std::vector<int32_t>;

// Every block hashes to 42: any two blocks collide.
block_key constant_hash(const block_key&, std::span<const int32_t>, std::string_view) { return {42, 0}; }

// A block's key is its first token: the parent is ignored, so equal blocks under different parents
// collide, and so does any block whose parent key was reused by other content.
block_key first_token_hash(const block_key&, std::span<const int32_t> tokens, std::string_view) {
  return {static_cast<uint64_t>(tokens[0]), 0};
}

// Registers the full blocks of tokens in blocks[0], blocks[1], ... as one chain.
void register_chain(prefix_cache& cache, const tokens_t& tokens, int32_t block_size, const ids& blocks,
                    const block_hash_fn& hash = xxh3_block_hash) {
  const auto keys = compute_block_keys(tokens, block_size, "", hash);
  cache_entry_id parent = no_entry;
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto block_tokens = std::span(tokens).subspan(i * block_size, block_size);
    parent = cache.insert(blocks[i], keys[i], parent, block_tokens, "");
    ASSERT_NE(parent, no_entry);
  }
}

TEST(block_keys, only_full_blocks_have_keys) {
  EXPECT_EQ(compute_block_keys(tokens_t{1, 2, 3, 4, 5, 6, 7}, 4, "").size(), 1u);
  EXPECT_EQ(compute_block_keys(tokens_t{1, 2, 3, 4, 5, 6, 7, 8}, 4, "").size(), 2u);
  EXPECT_EQ(compute_block_keys(tokens_t{1, 2, 3}, 4, "").size(), 0u);
}

TEST(block_keys, equal_prefixes_have_equal_keys_up_to_the_first_different_block) {
  const auto a = compute_block_keys(tokens_t{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 4, "");
  const auto b = compute_block_keys(tokens_t{1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12}, 4, "");
  EXPECT_EQ(a[0], b[0]);
  EXPECT_NE(a[1], b[1]);
  EXPECT_NE(a[2], b[2]);  // same tokens, different parent
}

TEST(block_keys, a_block_key_chains_through_its_parent) {
  const tokens_t t{1, 2, 3, 4, 5, 6, 7, 8};
  const auto keys = compute_block_keys(t, 4, "salt");
  EXPECT_EQ(keys[0], xxh3_block_hash(root_parent_key, std::span(t).first(4), "salt"));
  EXPECT_EQ(keys[1], xxh3_block_hash(keys[0], std::span(t).subspan(4, 4), ""));
}

TEST(block_keys, a_salt_changes_every_key) {
  const tokens_t t{1, 2, 3, 4, 5, 6, 7, 8};
  const auto plain = compute_block_keys(t, 4, "");
  const auto salted = compute_block_keys(t, 4, "lora-a");
  EXPECT_NE(plain[0], salted[0]);
  EXPECT_NE(plain[1], salted[1]);
}

TEST(block_keys, the_same_block_repeated_gets_a_new_key_each_time) {
  const auto keys = compute_block_keys(tokens_t{1, 2, 1, 2, 1, 2}, 2, "");
  EXPECT_NE(keys[0], keys[1]);
  EXPECT_NE(keys[1], keys[2]);
}

TEST(prefix_cache, finds_a_registered_block_by_key_and_content) {
  prefix_cache cache(4);
  const tokens_t t{1, 2};
  const cache_entry_id entry = cache.insert(3, block_key{7, 7}, no_entry, t, "");
  EXPECT_EQ(entry, 1u);
  EXPECT_EQ(cache.find(block_key{7, 7}, no_entry, t, ""), 3);
  EXPECT_TRUE(cache.contains(3));
  EXPECT_EQ(cache.entry_of(3), 1u);
  EXPECT_EQ(cache.size(), 1);
}

TEST(prefix_cache, a_key_with_other_tokens_parent_or_salt_is_a_miss) {
  prefix_cache cache(4);
  const cache_entry_id root = cache.insert(0, block_key{1, 0}, no_entry, tokens_t{1, 2}, "a");
  cache.insert(1, block_key{2, 0}, root, tokens_t{3, 4}, "");
  EXPECT_EQ(cache.find(block_key{1, 0}, no_entry, tokens_t{1, 3}, "a"), std::nullopt);  // tokens
  EXPECT_EQ(cache.find(block_key{1, 0}, no_entry, tokens_t{1, 2}, "b"), std::nullopt);  // salt
  EXPECT_EQ(cache.find(block_key{2, 0}, root + 7, tokens_t{3, 4}, ""), std::nullopt);   // parent
  EXPECT_EQ(cache.find(block_key{2, 0}, root, tokens_t{3, 4}, "ignored below the root"), 1);
}

TEST(prefix_cache, identical_content_is_registered_once_and_the_first_block_is_kept) {
  prefix_cache cache(4);
  const tokens_t t{1, 2};
  const cache_entry_id first = cache.insert(0, block_key{9, 9}, no_entry, t, "");
  EXPECT_EQ(cache.insert(2, block_key{9, 9}, no_entry, t, ""), first);
  EXPECT_FALSE(cache.contains(2));
  EXPECT_EQ(cache.find(block_key{9, 9}, no_entry, t, ""), 0);
  EXPECT_EQ(cache.size(), 1);
}

TEST(prefix_cache, a_colliding_key_with_other_content_is_not_registered) {
  prefix_cache cache(4);
  cache.insert(0, block_key{42, 0}, no_entry, tokens_t{1, 2}, "");
  EXPECT_EQ(cache.insert(1, block_key{42, 0}, no_entry, tokens_t{3, 4}, ""), no_entry);
  EXPECT_FALSE(cache.contains(1));
  EXPECT_EQ(cache.find(block_key{42, 0}, no_entry, tokens_t{3, 4}, ""), std::nullopt);
  EXPECT_EQ(cache.find(block_key{42, 0}, no_entry, tokens_t{1, 2}, ""), 0);
}

TEST(prefix_cache, erase_frees_the_key_for_new_content) {
  prefix_cache cache(2);
  cache.insert(0, block_key{42, 0}, no_entry, tokens_t{1, 2}, "");
  cache.erase(0);
  EXPECT_EQ(cache.size(), 0);
  EXPECT_EQ(cache.insert(1, block_key{42, 0}, no_entry, tokens_t{3, 4}, ""), 2u);  // ids are never reused
  EXPECT_EQ(cache.find(block_key{42, 0}, no_entry, tokens_t{3, 4}, ""), 1);
  cache.erase(0);  // not registered: no-op
  EXPECT_EQ(cache.size(), 1);
}

TEST(prefix_cache, longest_prefix_returns_the_cached_leading_blocks) {
  prefix_cache cache(8);
  register_chain(cache, tokens_t{1, 2, 3, 4, 5, 6}, 2, ids{5, 3, 6});
  const block_hash_fn hash = xxh3_block_hash;
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 3, 4, 5, 6, 7}, 2, "", hash, 6), ids({5, 3, 6}));
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 3, 4, 0, 6, 7}, 2, "", hash, 6), ids({5, 3}));
  EXPECT_EQ(cache.longest_prefix(tokens_t{0, 2, 3, 4, 5, 6, 7}, 2, "", hash, 6), ids{});
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 3, 4, 5, 6, 7}, 2, "other salt", hash, 6), ids{});
}

TEST(prefix_cache, longest_prefix_stops_at_max_tokens) {
  prefix_cache cache(8);
  register_chain(cache, tokens_t{1, 2, 3, 4, 5, 6}, 2, ids{0, 1, 2});
  const tokens_t prompt{1, 2, 3, 4, 5, 6};
  const block_hash_fn hash = xxh3_block_hash;
  // With the whole prompt cached, prompt_len - 1 leaves the last block to compute.
  EXPECT_EQ(cache.longest_prefix(prompt, 2, "", hash, 5), ids({0, 1}));
  EXPECT_EQ(cache.longest_prefix(prompt, 2, "", hash, 6), ids({0, 1, 2}));
  EXPECT_EQ(cache.longest_prefix(prompt, 2, "", hash, 1), ids{});
  EXPECT_EQ(cache.longest_prefix(prompt, 2, "", hash, -1), ids{});
}

TEST(prefix_cache, with_a_constant_hash_only_the_first_registered_block_can_ever_hit) {
  prefix_cache cache(8);
  const block_hash_fn hash = constant_hash;
  const auto keys = compute_block_keys(tokens_t{1, 2, 3, 4}, 2, "", hash);
  const cache_entry_id a = cache.insert(0, keys[0], no_entry, tokens_t{1, 2}, "");
  EXPECT_EQ(cache.insert(1, keys[1], a, tokens_t{3, 4}, ""), no_entry);  // key 42 is taken

  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 3, 4, 9}, 2, "", hash, 4), ids({0}));
  EXPECT_EQ(cache.longest_prefix(tokens_t{5, 6, 3, 4, 9}, 2, "", hash, 4), ids{});      // other tokens
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 1, 2, 9}, 2, "", hash, 4), ids({0}));   // other parent
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 9}, 2, "salted", hash, 2), ids{});      // other salt
}

TEST(prefix_cache, a_hit_needs_the_parent_entry_not_just_an_equal_parent_key) {
  // [1,2] then [5,6] are cached; [1,2] is evicted and [1,3] (same key under first_token_hash)
  // takes its place. A prompt [1,3,5,6] must not reach [5,6], whose KV was computed after [1,2].
  prefix_cache cache(4);
  const block_hash_fn hash = first_token_hash;
  register_chain(cache, tokens_t{1, 2, 5, 6}, 2, ids{0, 1}, hash);
  cache.erase(0);
  register_chain(cache, tokens_t{1, 3}, 2, ids{2}, hash);
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 3, 5, 6, 7}, 2, "", hash, 4), ids({2}));
  EXPECT_EQ(cache.longest_prefix(tokens_t{1, 2, 5, 6, 7}, 2, "", hash, 4), ids{});
}

} // namespace
} // namespace troupe
