#pragma once
// Runs a grammar_automaton over bytes: the parse is a set of configurations (a node that consumes bytes and
// a stack of nodes to return to), advanced byte by byte. Stacks are shared, hash-consed frames in a pool,
// so equal stacks have equal ids within one parser.

#include "runtime/structured/grammar_automaton.hpp"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace troupe::structured {

struct parse_config {
  uint32_t node;   // a node with byte edges
  uint32_t stack;  // frame id in the parser's stack_pool; 0 is the empty stack
  auto operator<=>(const parse_config&) const = default;
};

// Where a parse stands after some bytes: the configurations that can consume the next byte, and whether
// the bytes so far are a complete match.
struct parse_state {
  std::vector<parse_config> configs;
  bool complete = false;
  bool cut = false;  // pushdown_parser's bounds dropped some configurations on the way here
  bool dead() const { return configs.empty() && !complete; }
};

class stack_pool {
public:
  static constexpr uint32_t empty = 0;
  static constexpr uint32_t too_deep = UINT32_MAX;
  explicit stack_pool(uint32_t max_depth);
  // The stack parent with ret pushed on top; too_deep past max_depth frames.
  uint32_t push(uint32_t parent, uint32_t ret);
  uint32_t parent(uint32_t id) const { return frames_[id].parent; }
  uint32_t top(uint32_t id) const { return frames_[id].ret; }
  // Frames made after mark() are forgotten by rollback(mark): a look-ahead leaves no garbage behind.
  std::size_t mark() const { return frames_.size(); }
  void rollback(std::size_t mark);

private:
  struct frame {
    uint32_t parent, ret, depth;
  };
  static constexpr int recent_bits = 10;
  std::vector<frame> frames_;
  std::unordered_map<uint64_t, uint32_t> index_;
  std::vector<uint32_t> recent_;  // frame ids by hash of (parent, ret); checked before use
  uint32_t max_depth_;
};

// NOTE: an ambiguous grammar (s ::= "a" s | "a" s "b") can double its configurations at every byte, so a
// state keeps at most max_configs and one byte's closures visit at most max_closure_steps (a bound on every
// step's time). What a cut keeps are real parses, so every byte still allowed continues a prefix of the
// grammar's language: the output stays valid; the grammar can only end sooner than it would have.
class pushdown_parser {
public:
  static constexpr std::size_t max_configs = 256;
  static constexpr std::size_t max_closure_steps = 4096;

  pushdown_parser(const grammar_automaton& a, uint32_t max_depth);
  // The state before any byte: the closure of the root rule's start.
  parse_state initial();
  // out = in after byte (configurations sorted, without duplicates). Returns !out.dead().
  bool advance(const parse_state& in, uint8_t byte, parse_state& out);
  // A key equal for equal parses, whatever the frame ids (each stack spelled out from the top).
  void key(const parse_state& state, std::string& out) const;
  stack_pool& pool() { return pool_; }
  const grammar_automaton& automaton() const { return *a_; }

private:
  void add_closure(uint32_t node, uint32_t stack, parse_state& out);
  // True the first time c is offered since seen_ was cleared.
  bool first_visit(const parse_config& c);
  // Sorts out's configurations, drops duplicates, and cuts them to max_configs.
  static void finish(parse_state& out);
  const grammar_automaton* a_;
  stack_pool pool_;
  std::vector<parse_config> work_, seen_;
  std::unordered_set<uint64_t> seen_set_;  // seen_ once it is long: a linear search would be quadratic
  std::size_t steps_left_ = 0;             // closure steps this byte may still take
};

} // namespace troupe::structured
