#include "runtime/engine/kv_cache_manager.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace troupe {

kv_cache_manager::kv_cache_manager(const kv_cache_config& config, block_hash_fn hash)
    : pool_(config.num_blocks, config.enable_prefix_caching), hash_(std::move(hash)), block_size_(config.block_size) {
  if (block_size_ <= 0) throw std::invalid_argument("kv_cache_manager: block_size must be positive");
  if (!hash_) throw std::invalid_argument("kv_cache_manager: no block hash function");
}

computed_blocks kv_cache_manager::get_computed_blocks(std::span<const int32_t> tokens, std::string_view cache_salt) {
  computed_blocks hit;
  hit.cache_salt.assign(cache_salt);
  if (!pool_.caching_enabled()) return hit;
  const auto max_tokens = static_cast<int64_t>(tokens.size()) - 1;
  hit.blocks = pool_.cache().longest_prefix(tokens, block_size_, cache_salt, hash_, max_tokens);
  hit.num_computed_tokens = static_cast<int32_t>(hit.blocks.size()) * block_size_;
  ++stats_.num_requests;
  stats_.num_queried_tokens += static_cast<int64_t>(tokens.size());
  stats_.num_hit_tokens += hit.num_computed_tokens;
  return hit;
}

std::optional<std::vector<int32_t>> kv_cache_manager::allocate_slots(request_id id, int32_t num_new_tokens,
                                                                     const computed_blocks& prefix) {
  if (num_new_tokens < 0) throw std::invalid_argument("kv_cache_manager::allocate_slots: negative token count");
  const auto it = requests_.find(id);
  const bool is_new = it == requests_.end();
  if (!is_new && !prefix.blocks.empty())
    throw std::logic_error("kv_cache_manager::allocate_slots: request " + std::to_string(id) +
                           " already has blocks; a prefix applies to its first call only");

  const int64_t num_prefix_blocks = is_new ? static_cast<int64_t>(prefix.blocks.size()) : 0;
  const int64_t num_held = is_new ? 0 : static_cast<int64_t>(it->second.blocks.size());
  const int64_t num_tokens = (is_new ? num_prefix_blocks * block_size_ : it->second.num_tokens) + num_new_tokens;
  const int64_t num_needed = (num_tokens + block_size_ - 1) / block_size_;
  const int64_t num_to_allocate = std::max<int64_t>(num_needed - num_held - num_prefix_blocks, 0);

  // A prefix block with no other holder is in the free queue: touching it uses up a free block.
  int64_t num_prefix_free = 0;
  for (const int32_t b : is_new ? std::span<const int32_t>(prefix.blocks) : std::span<const int32_t>()) {
    // An unregistered hit was evicted since the lookup, and may hold other KV by now.
    if (!pool_.cache().contains(b))
      throw std::logic_error("kv_cache_manager::allocate_slots: prefix block " + std::to_string(b) +
                             " was evicted after get_computed_blocks; look up again");
    num_prefix_free += pool_.ref_count(b) == 0 ? 1 : 0;
  }
  if (num_to_allocate + num_prefix_free > pool_.num_free()) return std::nullopt;

  // Touch before allocating, so the allocation cannot evict the prefix.
  pool_.touch(prefix.blocks);
  auto fresh = pool_.allocate(static_cast<int32_t>(num_to_allocate));  // fits: checked above

  request_blocks& r = is_new ? requests_[id] : it->second;
  if (is_new) {
    r.blocks = prefix.blocks;
    r.cache_salt = prefix.cache_salt;
    r.num_cached_blocks = static_cast<int32_t>(prefix.blocks.size());
    if (!prefix.blocks.empty()) {
      // NOTE: the prefix blocks are held now, so their entries outlive this request's use of them.
      r.last_key = pool_.cache().key_of(prefix.blocks.back());
      r.last_entry = pool_.cache().entry_of(prefix.blocks.back());
    }
  }
  r.blocks.insert(r.blocks.end(), fresh->begin(), fresh->end());
  r.num_tokens = num_tokens;
  return fresh;
}

void kv_cache_manager::cache_blocks(request_id id, std::span<const int32_t> tokens, int32_t num_computed_tokens) {
  if (!pool_.caching_enabled()) return;
  const auto it = requests_.find(id);
  if (it == requests_.end())
    throw std::logic_error("kv_cache_manager::cache_blocks: request " + std::to_string(id) + " holds no blocks");
  request_blocks& r = it->second;
  if (num_computed_tokens < 0 || num_computed_tokens > r.num_tokens ||
      static_cast<size_t>(num_computed_tokens) > tokens.size())
    throw std::logic_error("kv_cache_manager::cache_blocks: request " + std::to_string(id) + " reports " +
                           std::to_string(num_computed_tokens) + " computed tokens, with " +
                           std::to_string(r.num_tokens) + " slots and " + std::to_string(tokens.size()) + " tokens");

  const int32_t num_full = num_computed_tokens / block_size_;
  while (!r.chain_broken && r.num_cached_blocks < num_full) {
    const int32_t i = r.num_cached_blocks;
    const auto block_tokens = tokens.subspan(static_cast<size_t>(i) * block_size_, static_cast<size_t>(block_size_));
    const block_key key = block_key_at(hash_, i, r.last_key, block_tokens, r.cache_salt);
    const std::string_view salt = i == 0 ? std::string_view(r.cache_salt) : std::string_view();
    const cache_entry_id entry = pool_.cache_block(r.blocks[i], key, r.last_entry, block_tokens, salt);
    if (entry == no_entry) {
      // Its key names other content, so no child of it could be confirmed: stop the chain here.
      r.chain_broken = true;
      break;
    }
    r.last_key = key;
    r.last_entry = entry;
    ++r.num_cached_blocks;
  }
}

void kv_cache_manager::free(request_id id) {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return;
  std::vector<int32_t>& blocks = it->second.blocks;
  std::reverse(blocks.begin(), blocks.end());
  pool_.free(blocks);
  requests_.erase(it);
}

std::span<const int32_t> kv_cache_manager::block_table(request_id id) const {
  const auto it = requests_.find(id);
  if (it == requests_.end()) return {};
  return it->second.blocks;
}

std::string kv_cache_manager::check_consistency() const {
  std::vector<int32_t> held(static_cast<size_t>(pool_.num_blocks()), 0);
  for (const auto& [id, r] : requests_) {
    const int64_t needed = (r.num_tokens + block_size_ - 1) / block_size_;
    if (static_cast<int64_t>(r.blocks.size()) != needed)
      return "request " + std::to_string(id) + " holds " + std::to_string(r.blocks.size()) + " blocks for " +
             std::to_string(r.num_tokens) + " tokens (" + std::to_string(needed) + " needed)";
    if (r.num_cached_blocks > static_cast<int32_t>(r.blocks.size()))
      return "request " + std::to_string(id) + " has " + std::to_string(r.num_cached_blocks) + " cached blocks of " +
             std::to_string(r.blocks.size());
    for (const int32_t b : r.blocks) {
      if (b < 0 || b >= pool_.num_blocks()) return "request " + std::to_string(id) + " holds block id " + std::to_string(b);
      ++held[b];
    }
  }
  for (int32_t b = 0; b < pool_.num_blocks(); ++b)
    if (held[b] != pool_.ref_count(b))
      return "block " + std::to_string(b) + " has reference count " + std::to_string(pool_.ref_count(b)) + " but " +
             std::to_string(held[b]) + " request tables hold it";
  return pool_.check_consistency();
}

prefix_cache_stats kv_cache_manager::stats() const {
  prefix_cache_stats s = stats_;
  s.num_evicted_blocks = pool_.num_evictions();
  return s;
}

} // namespace troupe
