#pragma once
// Compiled grammars by (spec, vocabulary), so that requests with the same schema share one compiled grammar
// and its mask cache. Bounded: the least recently used entry goes first, and the masks of every grammar it
// compiled (cached or still held by a running request) share one budget of mask_bytes. Safe to use from
// several threads.

#include "runtime/structured/grammar_matcher.hpp"

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace troupe {

class grammar_cache {
public:
  explicit grammar_cache(std::size_t capacity = 64, std::size_t mask_bytes = std::size_t{512} << 20);

  // The compiled grammar of spec for vocab, compiled on first use (outside the lock). Throws
  // std::invalid_argument as compile_structured_output does; a failure is not cached.
  std::shared_ptr<const compiled_grammar> get(const structured_output& spec,
                                              const std::shared_ptr<const token_vocabulary>& vocab);
  std::size_t size() const;
  // Bytes of masks its grammars hold together (at most mask_bytes).
  std::size_t mask_bytes_used() const;

private:
  using entry = std::pair<std::string, std::shared_ptr<const compiled_grammar>>;
  std::size_t capacity_;
  std::shared_ptr<mask_budget> masks_;
  mutable std::mutex mutex_;
  std::list<entry> lru_;  // most recent first
  std::unordered_map<std::string, std::list<entry>::iterator> index_;
};

} // namespace troupe
