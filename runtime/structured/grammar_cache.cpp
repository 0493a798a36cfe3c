// The bounded, shared cache of compiled grammars.

#include "runtime/structured/grammar_cache.hpp"

#include "runtime/structured/compiled_grammar.hpp"

namespace troupe {

grammar_cache::grammar_cache(std::size_t capacity, std::size_t mask_bytes)
    : capacity_(capacity == 0 ? 1 : capacity), masks_(std::make_shared<mask_budget>(mask_bytes)) {}

std::shared_ptr<const compiled_grammar> grammar_cache::get(const structured_output& spec,
                                                           const std::shared_ptr<const token_vocabulary>& vocab) {
  // The vocabulary by address: an entry holds its compiled grammar, which holds the vocabulary alive.
  std::string key = std::to_string(reinterpret_cast<std::uintptr_t>(vocab.get())) + ":" +
                    std::to_string(static_cast<int>(spec.type)) + ":" + spec.text;
  {
    std::lock_guard lock(mutex_);
    if (const auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  auto compiled = compile_structured_output(spec, vocab, masks_);
  std::lock_guard lock(mutex_);
  if (const auto it = index_.find(key); it != index_.end()) return it->second->second;  // compiled meanwhile
  lru_.emplace_front(key, compiled);
  index_.emplace(std::move(key), lru_.begin());
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return compiled;
}

std::size_t grammar_cache::mask_bytes_used() const { return masks_->used(); }

std::size_t grammar_cache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

} // namespace troupe
