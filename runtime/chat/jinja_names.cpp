// Filter and test names resolved after parsing, with jinja2's rule for where an unknown name is an
// error at once and where only when it runs.

#include "runtime/chat/jinja_filters.hpp"
#include "runtime/chat/jinja_parser.hpp"

namespace troupe::jinja {
namespace {

// Filters and tests looked up as jinja2's code generator does: an unknown name fails the template
// at once, except inside an if statement or a conditional expression (jinja2's "soft" frames, left by
// any for, macro or block inside them), where it fails only if it runs.
class name_resolver {
public:
  void stmts(stmt_list& body, bool soft) {
    for (stmt& s : body) statement(s, soft);
  }

private:
  void statement(stmt& s, bool soft) {
    switch (s.kind) {
    case stmt_kind::output:
    case stmt_kind::set: expression(s.value.get(), soft); break;
    case stmt_kind::if_:
      for (auto& [cond, body] : s.branches) {
        expression(cond.get(), true);
        stmts(body, true);
      }
      stmts(s.else_body, true);
      break;
    case stmt_kind::for_:
      expression(s.value.get(), soft);
      expression(s.condition.get(), false);
      stmts(s.body, false);
      stmts(s.else_body, false);
      break;
    case stmt_kind::set_block:
    case stmt_kind::filter_block:
      expression(s.filter.get(), false);
      stmts(s.body, false);
      break;
    case stmt_kind::macro:
      for (auto& p : s.params) expression(p.default_value.get(), false);
      stmts(s.body, false);
      break;
    case stmt_kind::with:
      for (auto& w : s.withs) expression(w.second.get(), soft);
      stmts(s.body, false);
      break;
    case stmt_kind::scoped_block: stmts(s.body, false); break;
    default: break;
    }
  }

  void expression(expr* e, bool soft) {
    if (!e) return;
    if (e->kind == expr_kind::conditional) soft = true;
    if (e->kind == expr_kind::filter) {
      e->filter = find_filter(e->name);
      if (!e->filter && !soft) {
        if (is_unimplemented_filter(e->name))
          throw syntax_error("the filter '" + e->name + "' is not supported in chat templates", e->line);
        throw syntax_error("No filter named '" + e->name + "'.", e->line);
      }
    } else if (e->kind == expr_kind::test) {
      e->test = find_test(e->name);
      if (!e->test && !soft) throw syntax_error("No test named '" + e->name + "'.", e->line);
    }
    for (auto& c : e->children) expression(c.get(), soft);
    for (auto& kv : e->kwargs) expression(kv.second.get(), soft);
  }
};

} // namespace

void resolve_filters_and_tests(template_program& program) { name_resolver().stmts(program.body, false); }

} // namespace troupe::jinja
