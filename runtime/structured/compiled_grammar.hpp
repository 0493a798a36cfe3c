#pragma once
// A spec compiled for one vocabulary (declared in grammar_matcher.hpp): the automaton, the vocabulary, and
// a cache of token masks by parse state that every matcher of the grammar shares.
// NOTE: immutable but for the mask cache, which is guarded by a mutex; safe to share between threads.

#include "runtime/structured/grammar_automaton.hpp"
#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/structured/token_vocabulary.hpp"

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace troupe {

class compiled_grammar {
public:
  using mask = std::vector<uint32_t>;

  // mask_cache_bytes bounds the masks kept (least recently used go first).
  compiled_grammar(structured::grammar_automaton automaton, std::shared_ptr<const token_vocabulary> vocab,
                   std::size_t mask_cache_bytes = std::size_t{32} << 20);

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
  using lru_list = std::list<std::pair<std::string, std::shared_ptr<const mask>>>;
  mutable std::mutex mutex_;
  mutable lru_list lru_;  // most recent first
  mutable std::unordered_map<std::string, lru_list::iterator> index_;
  mutable cache_stats stats_;
};

} // namespace troupe
