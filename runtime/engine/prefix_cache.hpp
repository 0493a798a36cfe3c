#pragma once
// Automatic prefix caching: the key of a full KV block, and the index of full blocks whose KV is
// cached, looked up by key and confirmed against the stored content.
//
// A block's key hashes (parent block's key, the block's token ids, extra keys). The only extra key
// is a per-request cache salt (vLLM's cache_salt: a LoRA name, a multimodal digest, a tenant
// secret); as in vLLM it enters the first block's hash only and reaches later blocks through the
// parent chain. The first block's parent is root_parent_key.
//
// A key only finds a candidate. A hit is confirmed against what the cache stored when it
// registered the block: its token ids, its parent, and (for a first block) the salt. The parent is
// the parent's cache entry id, not its key: entry ids are never reused, so a confirmed chain of
// hits is the exact token sequence the KV was computed for, even with a hash that collides at
// will (a parent key could name other content whose KV was evicted and recomputed since).
//
// NOTE: one key names at most one registered block. A block whose key is taken stays
// unregistered: by identical content (two requests computed the same prefix at once; the first
// one stays, as in vLLM's lookup) or by different content (a collision: first come, first kept).

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe {

// 128 bits of XXH3 by default: a collision is not expected in the life of the universe, and the
// content check makes one harmless anyway.
struct block_key {
  uint64_t lo = 0;
  uint64_t hi = 0;
  bool operator==(const block_key&) const = default;
};

// The parent of every sequence's first block: "troupe-kv-cache-" in ASCII.
inline constexpr block_key root_parent_key{0x74726f7570652d6bULL, 0x762d63616368652dULL};

// hash(parent key, the block's token ids, extra keys) -> key. Injectable so tests can force
// collisions; must be deterministic.
using block_hash_fn =
    std::function<block_key(const block_key& parent, std::span<const int32_t> tokens, std::string_view extra)>;

// XXH3-128 of parent, tokens, extra's length and extra.
block_key xxh3_block_hash(const block_key& parent, std::span<const int32_t> tokens, std::string_view extra);

// The key of block `index` of a sequence whose previous block has key `parent` (ignored for index
// 0, whose parent is root_parent_key). The salt enters only the hash of block 0.
block_key block_key_at(const block_hash_fn& hash, int32_t index, const block_key& parent,
                       std::span<const int32_t> block_tokens, std::string_view salt);

// Keys of all FULL blocks of tokens (a partial last block has none). block_size > 0.
std::vector<block_key> compute_block_keys(std::span<const int32_t> tokens, int32_t block_size, std::string_view salt,
                                          const block_hash_fn& hash = xxh3_block_hash);

// Identifies one registration of a block in the cache; never reused. no_entry: not cached.
using cache_entry_id = uint64_t;
inline constexpr cache_entry_id no_entry = 0;

class prefix_cache {
public:
  // Room for blocks 0..num_blocks-1 of the pool; empty.
  explicit prefix_cache(int32_t num_blocks);

  // The cached block with this key whose stored content is exactly (parent entry, tokens, and for
  // a first block, parent == no_entry, the salt); nullopt on a miss or a key whose content differs.
  std::optional<int32_t> find(const block_key& key, cache_entry_id parent, std::span<const int32_t> tokens,
                              std::string_view salt) const;

  // The cached blocks of the longest run of leading full blocks of tokens, in order, covering at
  // most max_tokens tokens. Hashes block by block and stops at the first miss, so the work is
  // O(blocks hit + 1). A caller that needs a token left to compute (for logits) passes
  // max_tokens = tokens.size() - 1.
  std::vector<int32_t> longest_prefix(std::span<const int32_t> tokens, int32_t block_size, std::string_view salt,
                                      const block_hash_fn& hash, int64_t max_tokens) const;

  // Registers `block` as holding (key, parent, tokens, salt). Returns its new entry id; or, when an
  // identical block is already registered, that block's entry id (`block` stays unregistered);
  // or no_entry when the key belongs to different content (a collision; `block` stays
  // unregistered, and so must the rest of its chain). `block` must not be registered already.
  cache_entry_id insert(int32_t block, const block_key& key, cache_entry_id parent, std::span<const int32_t> tokens,
                        std::string_view salt);

  // Unregisters `block` (its KV is about to be overwritten); no-op when it is not registered.
  void erase(int32_t block);

  // Whether `block` is registered (false for ids out of range).
  bool contains(int32_t block) const;
  // The entry id of a registered block; no_entry when it is not registered.
  cache_entry_id entry_of(int32_t block) const;
  // The key of a registered block.
  const block_key& key_of(int32_t block) const;

  // Number of registered blocks.
  int32_t size() const { return static_cast<int32_t>(by_key_.size()); }

  // For tests: "" when the key index and the entries agree (each key names one registered block
  // that has that key, and every registered block is named), else the first disagreement.
  std::string check_consistency() const;

private:
  struct entry {
    cache_entry_id id = no_entry;  // no_entry: the block is not registered
    cache_entry_id parent = no_entry;
    block_key key;
    std::vector<int32_t> tokens;  // kept with its capacity when erased, so re-registering does not allocate
    std::string salt;             // first blocks only
  };
  struct key_hash {
    size_t operator()(const block_key& k) const { return static_cast<size_t>(k.lo ^ (k.hi * 0x9e3779b97f4a7c15ULL)); }
  };

  bool holds(const entry& e, cache_entry_id parent, std::span<const int32_t> tokens, std::string_view salt) const;

  std::vector<entry> entries_;  // by block id
  std::unordered_map<block_key, int32_t, key_hash> by_key_;
  cache_entry_id next_id_ = 1;
};

} // namespace troupe
