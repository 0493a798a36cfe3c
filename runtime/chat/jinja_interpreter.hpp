#pragma once
// Runs a parsed chat template: jinja2's scoping (a for body is a fresh scope each iteration, if is
// not a scope, namespace() carries values out of loops), its sandboxed attribute lookup, and Python's
// operators. Filters, tests and methods call back in for attribute lookup, calls and iteration.

#include "runtime/chat/jinja_ast.hpp"
#include "runtime/chat/jinja_value.hpp"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace troupe::jinja {

class interpreter {
public:
  // globals: the render context (messages, tools...) and the global functions, as a dict value.
  interpreter(const template_program& program, value globals);

  // The rendered text. Throws raised_exception for raise_exception(), render_error (with the template
  // line) for any other failure.
  std::string render();

  // jinja2's environment.getattr: a Python attribute (bound method) first, then the item; unsafe
  // attributes (list.append) give an undefined that fails when used.
  value getattr(const value& obj, const std::string& name);
  // jinja2's environment.getitem: the item first, then a Python attribute of that name.
  value getitem(const value& obj, const value& key);
  // Calls a function value; an undefined fails with its message, anything else is not callable.
  value call(const value& callee, call_args& args);
  // Python iteration, materialized: list items, dict keys, string characters; undefined is empty.
  std::vector<value> iterate(const value& v);
  // `item in container`, Python's way.
  bool contains(const value& container, const value& item);
  // A filter or test by name, as map('upper') and select('odd') use them.
  value apply_filter(const std::string& name, const value& subject, call_args& args);
  bool apply_test(const std::string& name, const value& subject, call_args& args);

  struct scope;
  using scope_ptr = std::shared_ptr<scope>;

private:
  enum class flow { normal, break_loop, continue_loop };

  flow exec(const stmt_list& body, const scope_ptr& sc);
  flow exec_stmt(const stmt& s, const scope_ptr& sc);
  flow exec_for(const stmt& s, const scope_ptr& sc);
  void assign(const assign_target& target, value v, scope& sc);
  std::string capture(const stmt_list& body, const scope_ptr& sc);
  value define_macro(const stmt& s, const scope_ptr& sc);
  value apply_filter_expr(const expr& f, const value& subject, const scope_ptr& sc);

  value eval(const expr& e, const scope_ptr& sc);
  value eval_binary(const expr& e, const scope_ptr& sc);
  bool eval_compare(const expr& e, const scope_ptr& sc);
  value eval_slice(const expr& e, const scope_ptr& sc);
  call_args eval_args(const expr& e, size_t first, const scope_ptr& sc);

  const template_program& program_;
  scope_ptr globals_;
  std::string* out_ = nullptr;
  int line_ = 1;
  int depth_ = 0; // macro nesting, bounded so a runaway recursion fails instead of crashing
};

// Python's binary operators on template values (+ - * / // % **), with Python's TypeError texts.
value binary_operation(binary_op op, const value& a, const value& b);
// Python's ordering comparison a OP b for OP in < <= > >=.
bool ordering(compare_op op, const value& a, const value& b);

} // namespace troupe::jinja
