#pragma once
// A grammar compiled for matching: each rule an epsilon-free automaton whose edges consume a byte range or
// call another rule (pushing the node to return to). pushdown_parser runs it.

#include "runtime/structured/grammar_ir.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::structured {

struct grammar_automaton {
  struct byte_edge {
    uint8_t lo, hi;
    uint32_t to;
    auto operator<=>(const byte_edge&) const = default;
  };
  struct call_edge {
    uint32_t rule;
    uint32_t ret;  // node to continue at once the rule completes
    auto operator<=>(const call_edge&) const = default;
  };
  struct node {
    uint32_t byte_begin = 0, byte_end = 0;  // into byte_edges
    uint32_t call_begin = 0, call_end = 0;  // into calls
    bool final = false;                     // the node's rule may complete here
    bool simple = false;                    // byte edges only: its closure is itself
  };
  std::vector<node> nodes;
  std::vector<byte_edge> byte_edges;
  std::vector<call_edge> calls;
  std::vector<uint32_t> rule_start;  // by rule id
  std::vector<std::string> rule_names;
  uint32_t root_rule = 0;
};

// Compiles g (whose root is set). what names the source in messages ("guided_grammar"). Throws
// std::invalid_argument for a rule used but not defined, a left-recursive rule, or a grammar past the
// size limit.
grammar_automaton compile_automaton(const grammar& g, std::string_view what);

} // namespace troupe::structured
