#pragma once
// A spec compiled for one vocabulary (declared in grammar_matcher.hpp): the automaton, the vocabulary, and
// a cache of token masks by parse state that every matcher of the grammar shares.
// NOTE: immutable but for the mask cache, which is guarded by a mutex; safe to share between threads.

#include "runtime/structured/grammar_automaton.hpp"
#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/structured/token_vocabulary.hpp"

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace troupe {

// Bytes of token masks that many grammars' caches hold together. Without it the bound is per grammar: 64
// cached grammars (grammar_cache) and those of running requests whose entry went, 32 MiB each (1,700 masks
// of Qwen3's 151,936 ids), could hold several GiB. Thread-safe.
class mask_budget {
public:
  explicit mask_budget(std::size_t limit) : limit_(limit) {}
  // Reserves bytes; false (nothing reserved) when that would pass the limit.
  bool take(std::size_t bytes);
  void give_back(std::size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }
  std::size_t limit() const { return limit_; }

private:
  std::atomic<std::size_t> used_{0};
  std::size_t limit_;
};

class compiled_grammar {
public:
  using mask = std::vector<uint32_t>;
  static constexpr std::size_t default_mask_cache_bytes = std::size_t{32} << 20;

  // mask_cache_bytes bounds the masks kept (least recently used go first); shared, when given, bounds them
  // together with other grammars' (a mask that does not fit after this grammar's own oldest went is not
  // kept: it is computed again when needed).
  compiled_grammar(structured::grammar_automaton automaton, std::shared_ptr<const token_vocabulary> vocab,
                   std::size_t mask_cache_bytes = default_mask_cache_bytes, std::shared_ptr<mask_budget> shared = nullptr);
  ~compiled_grammar();
  compiled_grammar(const compiled_grammar&) = delete;
  compiled_grammar& operator=(const compiled_grammar&) = delete;

  const structured::grammar_automaton& automaton() const { return automaton_; }
  const token_vocabulary& vocabulary() const { return *vocab_; }
  const std::shared_ptr<const token_vocabulary>& vocabulary_ptr() const { return vocab_; }
  // Frames a matcher's stacks may hold: a deeper nesting is not allowed to start.
  uint32_t max_stack_depth() const { return 2000; }

  // The mask stored for a parse state's key, or null.
  std::shared_ptr<const mask> find_mask(const std::string& key) const;
  void store_mask(const std::string& key, std::shared_ptr<const mask> m) const;

  struct cache_stats {
    std::size_t hits = 0, misses = 0, entries = 0, bytes = 0;
  };
  cache_stats stats() const;

private:
  structured::grammar_automaton automaton_;
  std::shared_ptr<const token_vocabulary> vocab_;
  std::size_t budget_;
  std::shared_ptr<mask_budget> shared_;
  using lru_list = std::list<std::pair<std::string, std::shared_ptr<const mask>>>;
  mutable std::mutex mutex_;
  mutable lru_list lru_;  // most recent first
  mutable std::unordered_map<std::string, lru_list::iterator> index_;
  mutable cache_stats stats_;
};

} // namespace troupe
