// The compiled grammar's shared mask cache.

#include "runtime/structured/compiled_grammar.hpp"

namespace troupe {

compiled_grammar::compiled_grammar(structured::grammar_automaton automaton, std::shared_ptr<const token_vocabulary> vocab,
                                   std::size_t mask_cache_bytes)
    : automaton_(std::move(automaton)), vocab_(std::move(vocab)), budget_(mask_cache_bytes) {}

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
  while (!lru_.empty() && stats_.bytes + cost > budget_) {
    const auto& [old_key, old_mask] = lru_.back();
    stats_.bytes -= old_mask->size() * sizeof(uint32_t) + old_key.size();
    index_.erase(old_key);
    lru_.pop_back();
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
