// vLLM's _detect_content_format over troupe's template tree: does the template loop over a message's
// content? Such a template renders content given as a list of {type, text} parts (vLLM's "openai"
// format); any other expects a string. The trace follows vLLM's: names assigned from `messages` (or a
// filter, test or slice of it), loops over those give message names, and a loop over message['content']
// (or message.content) of one of them decides.

#include "runtime/chat/chat_template.hpp"

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "runtime/chat/jinja_ast.hpp"

namespace troupe {
namespace {

using jinja::expr;
using jinja::expr_kind;
using jinja::stmt;
using jinja::stmt_kind;
using jinja::stmt_list;

bool is_var(const expr* e, const std::string& name) { return e && e->kind == expr_kind::name && e->name == name; }

// name['key'] or name.key
bool is_attr(const expr* e, const std::string& name, const std::string& key) {
  if (!e || e->children.empty()) return false;
  if (e->kind == expr_kind::getitem)
    return e->children.size() > 1 && e->children[1] && e->children[1]->kind == expr_kind::literal &&
           e->children[1]->literal.is_string() && e->children[1]->literal.as_string() == key &&
           is_var(e->children[0].get(), name);
  if (e->kind == expr_kind::getattr) return e->name == key && is_var(e->children[0].get(), name);
  return false;
}

// The variable (key empty) or its attribute, possibly through filters, tests and slices.
bool is_var_or_elems(const expr* e, const std::string& name, const std::string& key) {
  if (!e) return false;
  if ((e->kind == expr_kind::filter || e->kind == expr_kind::test || e->kind == expr_kind::slice) &&
      !e->children.empty())
    return is_var_or_elems(e->children[0].get(), name, key);
  return key.empty() ? is_var(e, name) : is_attr(e, name, key);
}

// Every statement of the tree, nested ones included, in order.
void each_stmt(const stmt_list& list, const std::function<void(const stmt&)>& visit) {
  for (const stmt& s : list) {
    visit(s);
    for (const auto& [condition, body] : s.branches) each_stmt(body, visit);
    each_stmt(s.body, visit);
    each_stmt(s.else_body, visit);
  }
}

bool single_name(const jinja::assign_target& t) { return t.names.size() == 1 && !t.unpack && t.namespace_attr.empty(); }

} // namespace

bool chat_template::loops_over_message_content() const {
  const stmt_list& root = program_->body;
  // Names bound to `messages` or its elements through {% set %}, breadth first.
  std::vector<std::string> messages_names{"messages"};
  std::set<std::string> seen{"messages"};
  for (size_t i = 0; i < messages_names.size(); ++i) {
    const std::string related = messages_names[i];
    each_stmt(root, [&](const stmt& s) {
      if (s.kind == stmt_kind::set && single_name(s.target) && is_var_or_elems(s.value.get(), related, "") &&
          seen.insert(s.target.names[0]).second)
        messages_names.push_back(s.target.names[0]);
    });
  }
  // {% for message in messages %}
  std::vector<std::string> message_names;
  each_stmt(root, [&](const stmt& s) {
    if (s.kind != stmt_kind::for_ || !single_name(s.target)) return;
    for (const std::string& m : messages_names)
      if (is_var_or_elems(s.value.get(), m, "")) {
        message_names.push_back(s.target.names[0]);
        break;
      }
  });
  // {% for part in message['content'] %}
  bool found = false;
  each_stmt(root, [&](const stmt& s) {
    if (s.kind != stmt_kind::for_) return;
    for (const std::string& m : message_names) found = found || is_var_or_elems(s.value.get(), m, "content");
  });
  return found;
}

} // namespace troupe
