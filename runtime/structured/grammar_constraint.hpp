#pragma once
// The grammar engine as the sampling shard's token_constraint: each constrained sequence gets a
// grammar_matcher over its spec's compiled grammar, which `compile` gives (grammar_cache::get, so requests
// with one spec share one compiled grammar and its mask cache).

#include <functional>
#include <memory>

#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/structured/token_constraint.hpp"

namespace troupe {

using grammar_compiler = std::function<std::shared_ptr<const compiled_grammar>(const structured_output&)>;

// Matchers for model_runner::enable_constraints. The engine's bitmask rows span the model's vocabulary (the
// logits' width), which may differ from the tokenizer's: ids only one of them has are never allowed.
constraint_factory grammar_constraint_factory(grammar_compiler compile);

} // namespace troupe
