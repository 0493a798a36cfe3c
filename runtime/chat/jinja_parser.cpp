// jinja2's parser (jinja2/parser.py), rule for rule: statements, then expressions from the conditional
// expression down to primaries, postfix subscripts and calls, filters and tests.

#include "runtime/chat/jinja_parser.hpp"

#include "runtime/chat/jinja_lexer.hpp"

#include <algorithm>
#include <initializer_list>

namespace troupe::jinja {
namespace {

using names = std::vector<std::string_view>;

class parser {
public:
  explicit parser(std::vector<token> tokens) : toks_(std::move(tokens)) {}

  std::shared_ptr<const template_program> run() {
    auto program = std::make_shared<template_program>();
    program->body = parse_body({}, "");
    return program;
  }

private:
  // --- token stream ------------------------------------------------------------------------------

  const token& cur() const { return toks_[pos_]; }
  const token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  token next() {
    token t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  static bool is(const token& t, token_kind kind, std::string_view text = {}) {
    return t.kind == kind && (text.empty() || t.text == text);
  }
  bool at(token_kind kind, std::string_view text = {}) const { return is(cur(), kind, text); }
  bool at_name(std::string_view name) const { return at(token_kind::name, name); }
  bool at_op(std::string_view op) const { return at(token_kind::op, op); }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    next();
    return true;
  }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    next();
    return true;
  }

  // How jinja2 names a token in messages.
  static std::string describe(const token& t) {
    switch (t.kind) {
    case token_kind::name:
    case token_kind::op: return t.text;
    case token_kind::string: return "string";
    case token_kind::integer: return "integer";
    case token_kind::floating: return "float";
    case token_kind::variable_end: return "end of print statement";
    case token_kind::block_end: return "end of statement block";
    case token_kind::variable_begin: return "begin of print statement";
    case token_kind::block_begin: return "begin of statement block";
    case token_kind::text: return "template data / text";
    case token_kind::eof: return "end of template";
    }
    return t.text;
  }

  [[noreturn]] void fail(const std::string& message, int line) const { throw syntax_error(message, line); }
  [[noreturn]] void fail(const std::string& message) const { fail(message, cur().line); }

  token expect(token_kind kind, std::string_view text, std::string_view what) {
    if (!at(kind, text)) {
      if (at(token_kind::eof))
        fail("unexpected end of template, expected '" + std::string(what) + "'.");
      fail("expected token '" + std::string(what) + "', got '" + describe(cur()) + "'");
    }
    return next();
  }
  token expect_op(std::string_view op) { return expect(token_kind::op, op, op); }
  token expect_name_token() { return expect(token_kind::name, {}, "name"); }
  void expect_block_end() { expect(token_kind::block_end, {}, "end of statement block"); }

  // --- statements --------------------------------------------------------------------------------

  struct open_block {
    std::string_view tag;
    names ends;
  };

  static std::string join_tags(const names& ends) {
    std::string out;
    for (size_t i = 0; i < ends.size(); ++i) out += (i ? " or '" : "'") + std::string(ends[i]) + "'";
    return out;
  }

  std::string looking_for() const {
    if (blocks_.empty()) return "";
    return " Jinja was looking for the following tags: " + join_tags(blocks_.back().ends) +
           ". The innermost block that needs to be closed is '" + std::string(blocks_.back().tag) + "'.";
  }

  // Statements until a {% name %} with name in ends (left at that name) or the end of the template.
  stmt_list parse_body(names ends, std::string_view tag) {
    if (!tag.empty()) blocks_.push_back({tag, ends});
    stmt_list body;
    while (true) {
      const token& t = cur();
      if (t.kind == token_kind::text) {
        stmt s{stmt_kind::text};
        s.line = t.line;
        s.text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == token_kind::variable_begin) {
        stmt s{stmt_kind::output};
        s.line = next().line;
        s.value = parse_tuple(true);
        expect(token_kind::variable_end, {}, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.kind == token_kind::block_begin) {
        next();
        if (!at(token_kind::name)) fail("tag name expected");
        if (std::find(ends.begin(), ends.end(), cur().text) != ends.end()) break;
        body.push_back(parse_statement());
      } else if (t.kind == token_kind::eof) {
        if (!ends.empty()) fail("Unexpected end of template." + looking_for());
        break;
      } else {
        fail("unexpected '" + describe(t) + "'");
      }
    }
    if (!tag.empty()) blocks_.pop_back();
    return body;
  }

  stmt parse_statement() {
    const token& t = cur();
    const std::string& tag = t.text;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "generation") return parse_scoped_block("endgeneration");
    if (tag == "break" || tag == "continue") {
      stmt s{tag == "break" ? stmt_kind::break_ : stmt_kind::continue_};
      s.line = next().line;
      expect_block_end();
      return s;
    }
    static const names unsupported = {"call", "block", "extends", "include", "import", "from", "autoescape"};
    if (std::find(unsupported.begin(), unsupported.end(), tag) != unsupported.end())
      fail("the '" + tag + "' tag is not supported in chat templates");
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      if (std::find(it->ends.begin(), it->ends.end(), tag) != it->ends.end()) {
        fail("Encountered unknown tag '" + tag + "'. You probably made a nesting mistake. Jinja is expecting this tag, "
             "but currently looking for " + join_tags(blocks_.back().ends) +
             ". The innermost block that needs to be closed is '" + std::string(blocks_.back().tag) + "'.");
      }
    }
    fail("Encountered unknown tag '" + tag + "'." + looking_for());
  }

  stmt parse_if() {
    stmt s{stmt_kind::if_};
    s.line = next().line;
    while (true) {
      expr_ptr cond = parse_tuple(false);
      expect_block_end();
      stmt_list body = parse_body({"elif", "else", "endif"}, "if");
      s.branches.emplace_back(std::move(cond), std::move(body));
      token t = next();
      if (t.text == "elif") continue;
      if (t.text == "else") {
        expect_block_end();
        s.else_body = parse_body({"endif"}, "if");
        next();
      }
      expect_block_end();
      return s;
    }
  }

  stmt parse_for() {
    stmt s{stmt_kind::for_};
    s.line = next().line;
    s.target = parse_assign_target(false);
    expect(token_kind::name, "in", "in");
    s.value = parse_tuple(false, {"recursive"});
    if (skip_name("if")) s.condition = parse_expression(true);
    if (at_name("recursive")) fail("recursive loops are not supported in chat templates");
    expect_block_end();
    s.body = parse_body({"endfor", "else"}, "for");
    if (next().text == "else") {
      expect_block_end();
      s.else_body = parse_body({"endfor"}, "for");
      next();
    }
    expect_block_end();
    return s;
  }

  stmt parse_set() {
    int line = next().line;
    assign_target target = parse_assign_target(true);
    if (skip_op("=")) {
      stmt s{stmt_kind::set};
      s.line = line;
      s.target = std::move(target);
      s.value = parse_tuple(true);
      expect_block_end();
      return s;
    }
    stmt s{stmt_kind::set_block};
    s.line = line;
    if (!target.namespace_attr.empty() || target.unpack) fail("expected token '=', got '" + describe(cur()) + "'");
    s.target = std::move(target);
    if (at_op("|")) s.filter = parse_filter(nullptr, false);
    expect_block_end();
    s.body = parse_body({"endset"}, "set");
    next();
    expect_block_end();
    return s;
  }

  stmt parse_macro() {
    stmt s{stmt_kind::macro};
    s.line = next().line;
    s.target.names.push_back(expect_name_token().text);
    expect_op("(");
    while (!at_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (at_op(")")) break;
      macro_param p;
      p.name = expect_name_token().text;
      if (skip_op("=")) {
        p.default_value = parse_expression(true);
      } else if (!s.params.empty() && s.params.back().default_value) {
        fail("non-default argument follows default argument");
      }
      s.params.push_back(std::move(p));
    }
    expect_op(")");
    expect_block_end();
    s.body = parse_body({"endmacro"}, "macro");
    next();
    expect_block_end();
    return s;
  }

  stmt parse_filter_block() {
    stmt s{stmt_kind::filter_block};
    s.line = next().line;
    s.filter = parse_filter(nullptr, true);
    expect_block_end();
    s.body = parse_body({"endfilter"}, "filter");
    next();
    expect_block_end();
    return s;
  }

  stmt parse_with() {
    stmt s{stmt_kind::with};
    s.line = next().line;
    while (!at(token_kind::block_end)) {
      if (!s.withs.empty()) expect_op(",");
      assign_target target = parse_assign_target(false);
      expect_op("=");
      s.withs.emplace_back(std::move(target), parse_expression(true));
    }
    expect_block_end();
    s.body = parse_body({"endwith"}, "with");
    next();
    expect_block_end();
    return s;
  }

  stmt parse_scoped_block(std::string_view end) {
    stmt s{stmt_kind::scoped_block};
    token t = next();
    s.line = t.line;
    expect_block_end();
    s.body = parse_body({end}, t.text);
    next();
    expect_block_end();
    return s;
  }

  // A name, names separated by commas (optionally in parentheses), or with_namespace: ns.attr.
  assign_target parse_assign_target(bool with_namespace) {
    assign_target target;
    if (with_namespace && at(token_kind::name) && is(peek(), token_kind::op, ".")) {
      target.names.push_back(next().text);
      next();
      target.namespace_attr = expect_name_token().text;
      return target;
    }
    bool parens = skip_op("(");
    while (true) {
      if (!at(token_kind::name)) fail("can't assign to '" + describe(cur()) + "'");
      target.names.push_back(next().text);
      if (!skip_op(",")) break;
      target.unpack = true;
      if (parens && at_op(")")) break;
      if (!parens && (at_op("=") || at_name("in"))) break;
    }
    if (parens) {
      expect_op(")");
      target.unpack = true;
    }
    return target;
  }

  // --- expressions -------------------------------------------------------------------------------

  expr_ptr make(expr_kind kind, int line) {
    auto e = std::make_unique<expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  expr_ptr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  expr_ptr parse_condexpr() {
    expr_ptr e = parse_or();
    while (at_name("if")) {
      int line = next().line;
      auto c = make(expr_kind::conditional, line);
      expr_ptr cond = parse_or();
      expr_ptr otherwise = skip_name("else") ? parse_condexpr() : nullptr;
      c->children.push_back(std::move(e));
      c->children.push_back(std::move(cond));
      c->children.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }

  expr_ptr parse_or() {
    expr_ptr left = parse_and();
    while (at_name("or")) {
      auto e = make(expr_kind::logical_or, next().line);
      e->children.push_back(std::move(left));
      e->children.push_back(parse_and());
      left = std::move(e);
    }
    return left;
  }

  expr_ptr parse_and() {
    expr_ptr left = parse_not();
    while (at_name("and")) {
      auto e = make(expr_kind::logical_and, next().line);
      e->children.push_back(std::move(left));
      e->children.push_back(parse_not());
      left = std::move(e);
    }
    return left;
  }

  expr_ptr parse_not() {
    if (at_name("not")) {
      auto e = make(expr_kind::logical_not, next().line);
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  expr_ptr parse_compare() {
    int line = cur().line;
    expr_ptr first = parse_math1();
    expr_ptr cmp;
    while (true) {
      compare_op op;
      if (at(token_kind::op) && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                 cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        const std::string& t = cur().text;
        op = t == "==" ? compare_op::eq : t == "!=" ? compare_op::ne : t == "<" ? compare_op::lt
             : t == "<=" ? compare_op::le : t == ">" ? compare_op::gt : compare_op::ge;
        next();
      } else if (at_name("in")) {
        op = compare_op::in;
        next();
      } else if (at_name("not") && is(peek(), token_kind::name, "in")) {
        op = compare_op::not_in;
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(expr_kind::compare, line);
        cmp->children.push_back(std::move(first));
      }
      cmp->comparisons.push_back(op);
      cmp->children.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  expr_ptr binary(binary_op op, int line, expr_ptr left, expr_ptr right) {
    auto e = make(expr_kind::binary, line);
    e->op = op;
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  expr_ptr parse_math1() {
    expr_ptr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      token t = next();
      left = binary(t.text == "+" ? binary_op::add : binary_op::sub, t.line, std::move(left), parse_concat());
    }
    return left;
  }

  expr_ptr parse_concat() {
    int line = cur().line;
    expr_ptr first = parse_math2();
    if (!at_op("~")) return first;
    auto e = make(expr_kind::concat, line);
    e->children.push_back(std::move(first));
    while (skip_op("~")) e->children.push_back(parse_math2());
    return e;
  }

  expr_ptr parse_math2() {
    expr_ptr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      token t = next();
      binary_op op = t.text == "*" ? binary_op::mul : t.text == "/" ? binary_op::div
                     : t.text == "//" ? binary_op::floordiv : binary_op::mod;
      left = binary(op, t.line, std::move(left), parse_pow());
    }
    return left;
  }

  expr_ptr parse_pow() {
    expr_ptr left = parse_unary(true);
    while (at_op("**")) {
      int line = next().line;
      left = binary(binary_op::pow, line, std::move(left), parse_unary(true));
    }
    return left;
  }

  expr_ptr parse_unary(bool with_filter) {
    expr_ptr node;
    if (at_op("-") || at_op("+")) {
      token t = next();
      node = make(t.text == "-" ? expr_kind::negate : expr_kind::unary_plus, t.line);
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  expr_ptr literal(value v, int line) {
    auto e = make(expr_kind::literal, line);
    e->literal = std::move(v);
    return e;
  }

  expr_ptr parse_primary() {
    const token& t = cur();
    int line = t.line;
    switch (t.kind) {
    case token_kind::name: {
      std::string n = next().text;
      if (n == "true" || n == "True") return literal(true, line);
      if (n == "false" || n == "False") return literal(false, line);
      if (n == "none" || n == "None") return literal(nullptr, line);
      auto e = make(expr_kind::name, line);
      e->name = std::move(n);
      return e;
    }
    case token_kind::string: {
      std::string s = next().text;
      while (at(token_kind::string)) s += next().text; // adjacent literals concatenate
      return literal(std::move(s), line);
    }
    case token_kind::integer: return literal(next().int_value, line);
    case token_kind::floating: return literal(next().float_value, line);
    case token_kind::op:
      if (t.text == "(") {
        next();
        expr_ptr e = parse_tuple(true, {}, true);
        expect_op(")");
        return e;
      }
      if (t.text == "[") return parse_list();
      if (t.text == "{") return parse_dict();
      break;
    default: break;
    }
    fail("unexpected '" + describe(t) + "'");
  }

  bool is_tuple_end(const names& extra_ends) const {
    if (at(token_kind::variable_end) || at(token_kind::block_end) || at_op(")") || at(token_kind::eof)) return true;
    return at(token_kind::name) && std::find(extra_ends.begin(), extra_ends.end(), cur().text) != extra_ends.end();
  }

  // Expressions separated by commas: one expression, or a tuple when there is a comma.
  expr_ptr parse_tuple(bool with_condexpr, const names& extra_ends = {}, bool explicit_parens = false) {
    int line = cur().line;
    std::vector<expr_ptr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_ends)) break;
      items.push_back(parse_expression(with_condexpr));
      if (at_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail("Expected an expression, got '" + describe(cur()) + "'");
    }
    auto e = make(expr_kind::tuple, line);
    e->children = std::move(items);
    return e;
  }

  expr_ptr parse_list() {
    auto e = make(expr_kind::list, next().line);
    while (!at_op("]")) {
      if (!e->children.empty()) expect_op(",");
      if (at_op("]")) break;
      e->children.push_back(parse_expression(true));
    }
    expect_op("]");
    return e;
  }

  expr_ptr parse_dict() {
    auto e = make(expr_kind::dict, next().line);
    while (!at_op("}")) {
      if (!e->children.empty()) expect_op(",");
      if (at_op("}")) break;
      e->children.push_back(parse_expression(true));
      expect_op(":");
      e->children.push_back(parse_expression(true));
    }
    expect_op("}");
    return e;
  }

  expr_ptr parse_postfix(expr_ptr node) {
    while (true) {
      if (at_op(".") || at_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  expr_ptr parse_filter_expr(expr_ptr node) {
    while (true) {
      if (at_op("|")) {
        node = parse_filter(std::move(node), false);
      } else if (at_name("is")) {
        node = parse_test(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  expr_ptr parse_subscript(expr_ptr node) {
    token t = next();
    if (t.text == ".") {
      token attr = next();
      if (attr.kind == token_kind::name) {
        auto e = make(expr_kind::getattr, t.line);
        e->children.push_back(std::move(node));
        e->name = attr.text;
        return e;
      }
      if (attr.kind != token_kind::integer) fail("expected name or number", attr.line);
      auto e = make(expr_kind::getitem, t.line);
      e->children.push_back(std::move(node));
      e->children.push_back(literal(attr.int_value, attr.line));
      return e;
    }
    std::vector<expr_ptr> args;
    while (!at_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    expr_ptr key;
    if (args.size() == 1) {
      key = std::move(args[0]);
    } else {
      key = make(expr_kind::tuple, t.line);
      key->children = std::move(args);
    }
    if (key->kind == expr_kind::slice) { // a[b:c]: the slice node holds the subject first
      key->children.insert(key->children.begin(), std::move(node));
      return key;
    }
    auto e = make(expr_kind::getitem, t.line);
    e->children.push_back(std::move(node));
    e->children.push_back(std::move(key));
    return e;
  }

  expr_ptr parse_subscribed() {
    int line = cur().line;
    std::vector<expr_ptr> parts;
    if (at_op(":")) {
      next();
      parts.push_back(nullptr);
    } else {
      expr_ptr e = parse_expression(true);
      if (!at_op(":")) return e;
      next();
      parts.push_back(std::move(e));
    }
    if (at_op(":") || at_op("]") || at_op(",")) {
      parts.push_back(nullptr);
    } else {
      parts.push_back(parse_expression(true));
    }
    if (skip_op(":")) {
      parts.push_back(at_op("]") || at_op(",") ? nullptr : parse_expression(true));
    } else {
      parts.push_back(nullptr);
    }
    auto s = make(expr_kind::slice, line);
    s->children = std::move(parts);
    return s;
  }

  void parse_call_args(expr& e) {
    expect_op("(");
    bool need_comma = false;
    while (!at_op(")")) {
      if (need_comma) {
        expect_op(",");
        if (at_op(")")) break;
      }
      if (at_op("*") || at_op("**")) fail("*args and **kwargs calls are not supported in chat templates");
      if (at(token_kind::name) && is(peek(), token_kind::op, "=")) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument follows keyword argument");
        e.children.push_back(parse_expression(true));
      }
      need_comma = true;
    }
    expect_op(")");
  }

  expr_ptr parse_call(expr_ptr node) {
    auto e = make(expr_kind::call, cur().line);
    e->children.push_back(std::move(node));
    parse_call_args(*e);
    return e;
  }

  std::string parse_dotted_name() {
    std::string name = expect_name_token().text;
    while (at_op(".")) {
      next();
      name += "." + expect_name_token().text;
    }
    return name;
  }

  // node | f(args) | g ...; with node null, the filters of a {% filter %} block or a block set.
  expr_ptr parse_filter(expr_ptr node, bool start_inline) {
    while (at_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      int line = cur().line;
      std::string name = parse_dotted_name();
      auto e = make(expr_kind::filter, line);
      e->name = name;
      e->children.push_back(std::move(node));
      if (at_op("(")) parse_call_args(*e);
      node = std::move(e);
    }
    return node;
  }

  expr_ptr parse_test(expr_ptr node) {
    int line = next().line;
    bool negated = skip_name("not");
    std::string name = parse_dotted_name();
    auto e = make(expr_kind::test, line);
    e->name = name;
    e->children.push_back(std::move(node));
    if (at_op("(")) {
      parse_call_args(*e);
    } else if ((at(token_kind::name) || at(token_kind::string) || at(token_kind::integer) ||
                at(token_kind::floating) || at_op("(") || at_op("[") || at_op("{")) &&
               !at_name("else") && !at_name("or") && !at_name("and")) {
      if (at_name("is")) fail("You cannot chain multiple tests with is");
      e->children.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = make(expr_kind::logical_not, line);
    n->children.push_back(std::move(e));
    return n;
  }

  std::vector<token> toks_;
  size_t pos_ = 0;
  std::vector<open_block> blocks_;
};

} // namespace

std::shared_ptr<const template_program> parse_template(std::string_view source) {
  auto program = std::const_pointer_cast<template_program>(parser(tokenize(source)).run());
  resolve_filters_and_tests(*program);
  return program;
}

} // namespace troupe::jinja
