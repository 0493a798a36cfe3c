#pragma once
// Compiled grammars for one model's vocabulary, shared by every request with the same spec: the gateway
// compiles a request's spec while it parses the body (so a bad one is a 400), and the sampling shard makes
// each constrained sequence's matcher from the same compiled grammar. Thread-safe; the least recently used
// grammar goes when more than `capacity` are held.

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/structured/token_constraint.hpp"

namespace troupe {

class grammar_cache {
 public:
  explicit grammar_cache(std::shared_ptr<const token_vocabulary> vocab, size_t capacity = 256);

  // The spec's compiled grammar. Throws std::invalid_argument (compile_structured_output's message).
  std::shared_ptr<const compiled_grammar> get(const structured_output& spec);
  // Matchers (grammar_matcher) over this cache's grammars, for model_runner::enable_constraints.
  // NOTE: the factory refers to this cache, which must outlive it.
  constraint_factory factory();

  size_t size() const;

 private:
  std::shared_ptr<const token_vocabulary> vocab_;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::string> order_;  // most recently used first
  struct entry {
    std::shared_ptr<const compiled_grammar> grammar;
    std::list<std::string>::iterator at;
  };
  std::unordered_map<std::string, entry> grammars_;
};

} // namespace troupe
