#pragma once
// runtime/structured/: the grammar engine of structured outputs. This is its intermediate form: context-free
// rules over bytes (literals, byte classes, sequences, alternations, bounded repetitions, rule references)
// that every front end (EBNF, regex, choice, JSON schema) builds and grammar_automaton compiles.

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe::structured {

using byte_set = std::bitset<256>;

// Closed ranges of Unicode code points.
using codepoint_ranges = std::vector<std::pair<char32_t, char32_t>>;

inline constexpr int32_t unbounded = -1;

struct grammar_expr {
  enum class kind : uint8_t { empty, literal, byte_class, sequence, choice, repeat, rule_ref };
  kind type = kind::empty;
  std::string text;            // literal: its bytes
  byte_set bytes;              // byte_class
  std::vector<int32_t> items;  // sequence and choice: the parts; repeat: the one repeated part
  int32_t min = 0;             // repeat
  int32_t max = unbounded;     // repeat
  int32_t rule = -1;           // rule_ref
};

// A grammar under construction: expressions are ids into one table, rules name an expression each.
class grammar {
public:
  // The id of the rule called name, made (without a body) on first use.
  int32_t rule(std::string_view name);
  // A fresh rule whose name starts with prefix (for rules a front end makes up).
  int32_t new_rule(std::string_view prefix);
  void set_body(int32_t rule, int32_t expr);
  bool has_body(int32_t rule) const { return rules_[rule].body >= 0; }
  const std::string& rule_name(int32_t rule) const { return rules_[rule].name; }
  int32_t rule_body(int32_t rule) const { return rules_[rule].body; }
  int32_t num_rules() const { return static_cast<int32_t>(rules_.size()); }
  const grammar_expr& expr(int32_t id) const { return exprs_[id]; }
  int32_t num_exprs() const { return static_cast<int32_t>(exprs_.size()); }
  int32_t root = -1;
  // Names the source in messages ("json_schema"); set by the front end.
  std::string what = "grammar";

  int32_t empty();
  int32_t literal(std::string_view bytes);
  int32_t bytes(const byte_set& set);
  int32_t byte_range(uint8_t lo, uint8_t hi);
  // Any of the code points of ranges as UTF-8 (surrogates are left out).
  int32_t codepoints(const codepoint_ranges& ranges);
  int32_t sequence(std::vector<int32_t> items);
  int32_t choice(std::vector<int32_t> items);
  // item repeated min..max times (max == unbounded: no limit).
  int32_t repeat(int32_t item, int32_t min, int32_t max);
  int32_t optional(int32_t item) { return repeat(item, 0, 1); }
  int32_t ref(int32_t rule);
  // Any one of texts, with shared prefixes factored out (a trie), so that matching stays deterministic
  // where a plain alternation would follow every option at once.
  int32_t literal_set(std::vector<std::string> texts);

private:
  struct named_rule {
    std::string name;
    int32_t body = -1;
  };
  // Throws std::invalid_argument past limits::max_grammar_exprs.
  int32_t add(grammar_expr e);
  std::vector<grammar_expr> exprs_;
  std::vector<named_rule> rules_;
  std::unordered_map<std::string, int32_t> rule_ids_;  // by name: a grammar of many rules stays linear
};

// ranges sorted and merged; with negate, their complement within [0, 0x10FFFF].
codepoint_ranges normalize_ranges(codepoint_ranges ranges, bool negate);

// The UTF-8 byte sequences of the code points lo..hi (surrogates left out), each a list of byte ranges,
// e.g. U+0080..U+07FF -> {[C2-DF][80-BF]}.
std::vector<std::vector<std::pair<uint8_t, uint8_t>>> utf8_sequences(char32_t lo, char32_t hi);

} // namespace troupe::structured
