#pragma once
// The parsed form of a chat template: expressions and statements as jinja2's parser builds them.

#include "runtime/chat/jinja_value.hpp"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace troupe::jinja {

struct expr;
using expr_ptr = std::unique_ptr<expr>;

enum class expr_kind : uint8_t {
  literal,  // value
  name,     // name
  list,     // children: items
  tuple,    // children: items
  dict,     // children: key0, value0, key1, value1...
  getattr,  // children[0].name
  getitem,  // children[0][children[1]]
  slice,    // children[0][children[1]:children[2]:children[3]], absent parts null
  call,     // children[0](children[1..], kwargs)
  filter,   // children[0] | name(children[1..], kwargs); children[0] null inside {% filter %} / block set
  test,     // children[0] is name(children[1..], kwargs)
  logical_not,
  negate,
  unary_plus,
  binary,   // children[0] op children[1]
  compare,  // children[0] cmp[0] children[1] cmp[1] children[2]...
  logical_and,
  logical_or,
  concat,   // children joined with ~
  conditional, // children[0] if children[1] else children[2] (null: no else)
};

enum class binary_op : uint8_t { add, sub, mul, div, floordiv, mod, pow };
enum class compare_op : uint8_t { eq, ne, lt, le, gt, ge, in, not_in };

struct filter_entry;
struct test_entry;

struct expr {
  expr_kind kind;
  int line = 0;
  value literal;
  std::string name;
  binary_op op = binary_op::add;
  std::vector<compare_op> comparisons;
  std::vector<expr_ptr> children;
  std::vector<std::pair<std::string, expr_ptr>> kwargs;
  const filter_entry* filter = nullptr; // resolved when parsed: an unknown name fails at parse time
  const test_entry* test = nullptr;
};

// Where a set, for or with stores: one name, several names (a, b = ...), or a namespace attribute.
struct assign_target {
  std::vector<std::string> names;
  bool unpack = false;       // a tuple of names
  std::string namespace_attr; // set ns.attr = ...: names[0] is the namespace
};

struct stmt;
using stmt_list = std::vector<stmt>;

enum class stmt_kind : uint8_t {
  text,         // text
  output,       // {{ value }}
  if_,          // branches, else_body
  for_,         // target in value [if condition]: body / else_body
  set,          // target = value
  set_block,    // {% set target %}body{% endset %}, optionally through filter
  macro,        // name(params): body
  filter_block, // {% filter f %}body{% endfilter %}
  break_,
  continue_,
  scoped_block, // body in its own scope ({% generation %})
  with,         // withs: body
};

struct macro_param {
  std::string name;
  expr_ptr default_value; // null: required
};

struct stmt {
  explicit stmt(stmt_kind k) : kind(k) {}

  stmt_kind kind;
  int line = 0;
  std::string text;
  expr_ptr value;
  expr_ptr condition;
  expr_ptr filter;
  assign_target target;
  std::vector<std::pair<expr_ptr, stmt_list>> branches;
  stmt_list body;
  stmt_list else_body;
  std::vector<macro_param> params;
  std::vector<std::pair<assign_target, expr_ptr>> withs;
};

struct template_program {
  stmt_list body;
};

} // namespace troupe::jinja
