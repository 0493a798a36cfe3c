#pragma once
// One constrained sequence's rule for its next token, as the sampling shard drives it: a bitmask of the
// tokens allowed next, and an advance over the token sampled. grammar_matcher (grammar_constraints.hpp)
// is the production rule; the interface lets the engine's bookkeeping (constraint_table) be tested with
// small fixed rules, without compiling grammars.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "runtime/structured/grammar_matcher.hpp"

namespace troupe {

class token_constraint {
 public:
  virtual ~token_constraint() = default;
  // Bit (id % 32) of word (id / 32) set <=> id may come next; words.size() is ceil(vocab / 32).
  virtual void fill_next_token_bitmask(std::span<uint32_t> words) = 0;
  // Advances over a sampled token; false (state unchanged) when the token is not allowed.
  virtual bool accept_token(int32_t id) = 0;
  // True once the output is complete and an end id was accepted (or nothing more can follow).
  virtual bool is_terminated() const = 0;
  // True once an end id was accepted: the constraint is over (xgrammar's is_terminated, as vLLM reads it).
  virtual bool ended() const = 0;
};

// Makes a fresh constraint, at the start of the output, for a spec. Throws std::invalid_argument with a
// message a user can act on when the spec cannot be compiled.
using constraint_factory = std::function<std::unique_ptr<token_constraint>(const structured_output&)>;

} // namespace troupe
