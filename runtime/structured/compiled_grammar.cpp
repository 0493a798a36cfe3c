// The compiled grammar's shared mask cache.

#include "runtime/structured/compiled_grammar.hpp"

namespace troupe {

bool mask_budget::take(std::size_t bytes) {
  std::size_t used = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ || used > limit_ - bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

compiled_grammar::compiled_grammar(structured::grammar_automaton automaton, std::shared_ptr<const token_vocabulary> vocab,
                                   std::size_t mask_cache_bytes, std::shared_ptr<mask_budget> shared)
    : automaton_(std::move(automaton)), vocab_(std::move(vocab)), budget_(mask_cache_bytes), shared_(std::move(shared)) {}

compiled_grammar::~compiled_grammar() {
  if (shared_) shared_->give_back(stats_.bytes);
}

std::shared_ptr<const compiled_grammar::mask> compiled_grammar::find_mask(const std::string& key) const {
  std::lock_guard lock(mutex_);
  const auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void compiled_grammar::store_mask(const std::string& key, std::shared_ptr<const mask> m) const {
  const std::size_t cost = m->size() * sizeof(uint32_t) + key.size();
  std::lock_guard lock(mutex_);
  if (index_.contains(key) || cost > budget_) return;
  const auto evict_oldest = [&] {
    const auto& [old_key, old_mask] = lru_.back();
    const std::size_t freed = old_mask->size() * sizeof(uint32_t) + old_key.size();
    stats_.bytes -= freed;
    if (shared_) shared_->give_back(freed);
    index_.erase(old_key);
    lru_.pop_back();
  };
  while (!lru_.empty() && stats_.bytes + cost > budget_) evict_oldest();
  if (shared_) {
    while (!shared_->take(cost)) {
      if (lru_.empty()) return;  // the other grammars hold the shared bytes: not kept
      evict_oldest();
    }
  }
  lru_.emplace_front(key, std::move(m));
  index_.emplace(key, lru_.begin());
  stats_.bytes += cost;
}

compiled_grammar::cache_stats compiled_grammar::stats() const {
  std::lock_guard lock(mutex_);
  cache_stats s = stats_;
  s.entries = index_.size();
  return s;
}

} // namespace troupe
