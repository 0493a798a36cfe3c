#pragma once
// The bounds a structured-output spec must stay within, so that a hostile or pathological spec costs its
// request a clear 400 and bounded time and memory, never the server. Each is far above what real specs
// need: OpenAI strict function parameters and tool schemas (a few hundred grammar parts), date / e-mail /
// UUID patterns (under a hundred automaton states), enums of a few hundred values.
// NOTE: a message that names a limit says which one and what to change; tests match these messages.

#include <cstddef>
#include <cstdint>

namespace troupe::structured::limits {

// The spec's text: a schema, pattern, grammar or choice list (the HTTP body may be 16 MiB).
inline constexpr std::size_t max_spec_bytes = std::size_t{1} << 20;
// Groups in a regex or EBNF, schemas inside schemas (each '$ref' followed counts as one), and the JSON
// nesting of a schema's text: the front ends recurse, so this bounds their stack.
inline constexpr int max_nesting_depth = 128;
// One {m,n}, minLength/maxLength or minItems/maxItems.
inline constexpr int32_t max_repeat_count = 10000;
// Parts of the intermediate grammar (about 112 bytes each: 28 MiB). A front end that copies (a schema's
// anyOf branches each get their parent's properties) stops here.
inline constexpr std::size_t max_grammar_exprs = std::size_t{1} << 18;
// Rules, written or made up (an object schema makes two per property): the rule passes are linear, but a
// rule is a stack frame in the left-recursion check.
inline constexpr int32_t max_rules = 16384;
// Automaton states with bounded repeats expanded ({1000} is a thousand copies), counted before any is made.
inline constexpr std::size_t max_automaton_states = std::size_t{1} << 19;
// Edges once epsilon moves are folded in: (a?){n} folds into n^2 / 2 edges.
inline constexpr std::size_t max_automaton_edges = std::size_t{1} << 22;

} // namespace troupe::structured::limits
