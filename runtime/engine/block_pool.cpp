#include "runtime/engine/block_pool.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace troupe {

block_pool::block_pool(int32_t num_blocks, bool enable_caching)
    : ref_(static_cast<size_t>(std::max(num_blocks, 0)), 0),
      next_(ref_.size(), -1),
      prev_(ref_.size(), -1),
      cache_(enable_caching ? num_blocks : 0),
      caching_(enable_caching) {
  if (num_blocks <= 0) throw std::invalid_argument("block_pool: num_blocks must be positive");
  for (int32_t b = 0; b < num_blocks; ++b) push_back(plain_, b);
}

void block_pool::check_id(int32_t block, const char* what) const {
  if (block < 0 || block >= num_blocks())
    throw std::out_of_range(std::string("block_pool::") + what + ": block id " + std::to_string(block) +
                            " out of range [0, " + std::to_string(num_blocks()) + ")");
}

void block_pool::push_back(queue& q, int32_t block) {
  prev_[block] = q.tail;
  next_[block] = -1;
  if (q.tail >= 0) {
    next_[q.tail] = block;
  } else {
    q.head = block;
  }
  q.tail = block;
  ++q.size;
}

void block_pool::unlink(queue& q, int32_t block) {
  const int32_t p = prev_[block];
  const int32_t n = next_[block];
  if (p >= 0) {
    next_[p] = n;
  } else {
    q.head = n;
  }
  if (n >= 0) {
    prev_[n] = p;
  } else {
    q.tail = p;
  }
  prev_[block] = next_[block] = -1;
  --q.size;
}

std::optional<std::vector<int32_t>> block_pool::allocate(int32_t n) {
  if (n < 0) throw std::invalid_argument("block_pool::allocate: negative block count " + std::to_string(n));
  if (n > num_free()) return std::nullopt;
  std::vector<int32_t> blocks;
  blocks.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    int32_t b;
    if (plain_.size > 0) {
      b = plain_.head;
      unlink(plain_, b);
    } else {
      b = cached_.head;
      unlink(cached_, b);
      cache_.erase(b);  // its KV is about to be overwritten
      ++num_evictions_;
    }
    ref_[b] = 1;
    blocks.push_back(b);
  }
  return blocks;
}

void block_pool::free(std::span<const int32_t> blocks) {
  for (const int32_t b : blocks) {
    check_id(b, "free");
    if (ref_[b] == 0) throw std::logic_error("block_pool::free: block " + std::to_string(b) + " is already free");
    if (--ref_[b] == 0) push_back(cache_.contains(b) ? cached_ : plain_, b);
  }
}

void block_pool::touch(std::span<const int32_t> blocks) {
  for (const int32_t b : blocks) {
    check_id(b, "touch");
    if (ref_[b] == 0) unlink(cache_.contains(b) ? cached_ : plain_, b);
    ++ref_[b];
  }
}

cache_entry_id block_pool::cache_block(int32_t block, const block_key& key, cache_entry_id parent,
                                       std::span<const int32_t> tokens, std::string_view salt) {
  check_id(block, "cache_block");
  if (!caching_) return no_entry;
  // A free block would sit in the plain queue while registered, breaking the queue invariant.
  if (ref_[block] == 0)
    throw std::logic_error("block_pool::cache_block: block " + std::to_string(block) + " is free");
  if (cache_.contains(block)) return cache_.entry_of(block);
  return cache_.insert(block, key, parent, tokens, salt);
}

std::string block_pool::check_consistency() const {
  const auto name = [](int32_t b) { return "block " + std::to_string(b); };
  std::vector<uint8_t> queued(ref_.size(), 0);
  // Walks one queue: every block in it is free, matches the queue's kind, links back, and is queued once.
  const auto walk = [&](const queue& q, bool cached, const char* what) -> std::string {
    int32_t n = 0, prev = -1;
    for (int32_t b = q.head; b >= 0; prev = b, b = next_[b]) {
      if (b >= num_blocks()) return std::string(what) + " queue holds block id " + std::to_string(b);
      if (queued[b]++) return name(b) + " is queued twice (or the " + what + " queue loops)";
      if (prev_[b] != prev) return name(b) + " in the " + what + " queue links back to " + std::to_string(prev_[b]) +
                                   ", not " + std::to_string(prev);
      if (ref_[b] != 0) return name(b) + " is in the " + what + " queue with reference count " + std::to_string(ref_[b]);
      if (cache_.contains(b) != cached)
        return name(b) + " is in the " + what + " queue but is " + (cached ? "not " : "") + "registered";
      ++n;
    }
    if (prev != q.tail) return std::string(what) + " queue ends at " + std::to_string(prev) + ", its tail is " + std::to_string(q.tail);
    if (n != q.size) return std::string(what) + " queue holds " + std::to_string(n) + " blocks, its size says " + std::to_string(q.size);
    return "";
  };
  if (std::string e = walk(plain_, false, "plain"); !e.empty()) return e;
  if (std::string e = walk(cached_, true, "cached"); !e.empty()) return e;
  for (int32_t b = 0; b < num_blocks(); ++b) {
    if (ref_[b] < 0) return name(b) + " has reference count " + std::to_string(ref_[b]);
    if (ref_[b] == 0 && !queued[b]) return name(b) + " is free but in no queue";
  }
  if (!caching_ && cache_.size() != 0) return "caching is off but " + std::to_string(cache_.size()) + " blocks are registered";
  return cache_.check_consistency();
}

int32_t block_pool::ref_count(int32_t block) const {
  check_id(block, "ref_count");
  return ref_[block];
}

} // namespace troupe
