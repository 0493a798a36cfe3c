#include "runtime/engine/prefix_cache.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per block
#include <xxhash.h>

namespace troupe {

block_key xxh3_block_hash(const block_key& parent, std::span<const int32_t> tokens, std::string_view extra) {
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  XXH3_128bits_update(&state, &parent.lo, sizeof parent.lo);
  XXH3_128bits_update(&state, &parent.hi, sizeof parent.hi);
  XXH3_128bits_update(&state, tokens.data(), tokens.size_bytes());
  // The length keeps (tokens, extra) unambiguous whatever the block size.
  const uint64_t extra_size = extra.size();
  XXH3_128bits_update(&state, &extra_size, sizeof extra_size);
  XXH3_128bits_update(&state, extra.data(), extra.size());
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  return {h.low64, h.high64};
}

block_key block_key_at(const block_hash_fn& hash, int32_t index, const block_key& parent,
                       std::span<const int32_t> block_tokens, std::string_view salt) {
  if (index == 0) return hash(root_parent_key, block_tokens, salt);
  return hash(parent, block_tokens, {});
}

std::vector<block_key> compute_block_keys(std::span<const int32_t> tokens, int32_t block_size, std::string_view salt,
                                          const block_hash_fn& hash) {
  if (block_size <= 0) throw std::invalid_argument("compute_block_keys: block_size must be positive");
  const size_t num_full = tokens.size() / static_cast<size_t>(block_size);
  std::vector<block_key> keys;
  keys.reserve(num_full);
  block_key parent = root_parent_key;
  for (size_t i = 0; i < num_full; ++i) {
    parent = block_key_at(hash, static_cast<int32_t>(i), parent, tokens.subspan(i * block_size, block_size), salt);
    keys.push_back(parent);
  }
  return keys;
}

prefix_cache::prefix_cache(int32_t num_blocks) : entries_(static_cast<size_t>(std::max(num_blocks, 0))) {
  by_key_.reserve(entries_.size());
}

bool prefix_cache::holds(const entry& e, cache_entry_id parent, std::span<const int32_t> tokens,
                         std::string_view salt) const {
  if (e.parent != parent) return false;
  if (!std::ranges::equal(e.tokens, tokens)) return false;
  // Later blocks inherit the salt from their parent entry, which was confirmed already.
  return parent != no_entry || e.salt == salt;
}

std::optional<int32_t> prefix_cache::find(const block_key& key, cache_entry_id parent,
                                          std::span<const int32_t> tokens, std::string_view salt) const {
  const auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  if (!holds(entries_[it->second], parent, tokens, salt)) return std::nullopt;
  return it->second;
}

std::vector<int32_t> prefix_cache::longest_prefix(std::span<const int32_t> tokens, int32_t block_size,
                                                  std::string_view salt, const block_hash_fn& hash,
                                                  int64_t max_tokens) const {
  if (block_size <= 0) throw std::invalid_argument("prefix_cache::longest_prefix: block_size must be positive");
  const int64_t limit = std::clamp<int64_t>(max_tokens, 0, static_cast<int64_t>(tokens.size()));
  const int64_t max_blocks = limit / block_size;
  std::vector<int32_t> hits;
  if (by_key_.empty()) return hits;
  block_key key = root_parent_key;
  cache_entry_id parent = no_entry;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i * block_size), static_cast<size_t>(block_size));
    key = block_key_at(hash, static_cast<int32_t>(i), key, block_tokens, salt);
    const auto block = find(key, parent, block_tokens, salt);
    if (!block) break;
    hits.push_back(*block);
    parent = entries_[*block].id;
  }
  return hits;
}

cache_entry_id prefix_cache::insert(int32_t block, const block_key& key, cache_entry_id parent,
                                    std::span<const int32_t> tokens, std::string_view salt) {
  if (block < 0 || static_cast<size_t>(block) >= entries_.size())
    throw std::out_of_range("prefix_cache::insert: block id " + std::to_string(block) + " out of range");
  if (entries_[block].id != no_entry)
    throw std::logic_error("prefix_cache::insert: block " + std::to_string(block) + " is registered already");

  const auto [it, inserted] = by_key_.try_emplace(key, block);
  if (!inserted) {
    const entry& existing = entries_[it->second];
    return holds(existing, parent, tokens, salt) ? existing.id : no_entry;
  }
  entry& e = entries_[block];
  e.id = next_id_++;
  e.parent = parent;
  e.key = key;
  e.tokens.assign(tokens.begin(), tokens.end());
  if (parent == no_entry) {
    e.salt.assign(salt);
  } else {
    e.salt.clear();
  }
  return e.id;
}

void prefix_cache::erase(int32_t block) {
  if (!contains(block)) return;
  entry& e = entries_[block];
  // NOTE: a registered block is the one block its key maps to (insert never maps a taken key).
  by_key_.erase(e.key);
  e.id = no_entry;
}

bool prefix_cache::contains(int32_t block) const {
  return block >= 0 && static_cast<size_t>(block) < entries_.size() && entries_[block].id != no_entry;
}

cache_entry_id prefix_cache::entry_of(int32_t block) const {
  return contains(block) ? entries_[block].id : no_entry;
}

std::string prefix_cache::check_consistency() const {
  size_t num_registered = 0;
  for (const entry& e : entries_) num_registered += e.id != no_entry ? 1 : 0;
  if (num_registered != by_key_.size())
    return "prefix cache: " + std::to_string(num_registered) + " registered blocks but " + std::to_string(by_key_.size()) +
           " keys";
  for (const auto& [key, block] : by_key_) {
    if (!contains(block)) return "prefix cache: a key names block " + std::to_string(block) + ", which is not registered";
    if (!(entries_[block].key == key)) return "prefix cache: block " + std::to_string(block) + " is named by another key";
  }
  return "";
}

const block_key& prefix_cache::key_of(int32_t block) const {
  if (!contains(block))
    throw std::logic_error("prefix_cache::key_of: block " + std::to_string(block) + " is not registered");
  return entries_[block].key;
}

} // namespace troupe
