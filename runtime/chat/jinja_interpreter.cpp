// Statements and expressions of a chat template, evaluated the way jinja2's compiled code runs them.

#include "runtime/chat/jinja_interpreter.hpp"

#include "runtime/chat/jinja_filters.hpp"
#include "runtime/chat/jinja_methods.hpp"
#include "runtime/chat/jinja_text.hpp"

#include <algorithm>

namespace troupe::jinja {

// Variables of one frame; lookups go up the parents. NOTE: a for body gets a new scope per iteration
// whose parent is the enclosing one, so assignments in the body never outlive the iteration — jinja2's
// rule, and the reason templates carry values out of loops in namespace() objects.
struct interpreter::scope {
  scope_ptr parent;
  std::vector<std::pair<std::string, value>> vars;

  explicit scope(scope_ptr p) : parent(std::move(p)) {}

  const value* lookup(const std::string& name) const {
    for (const scope* s = this; s; s = s->parent.get())
      for (const auto& [n, v] : s->vars)
        if (n == name) return &v;
    return nullptr;
  }
  void set(const std::string& name, value v) {
    for (auto& [n, old] : vars) {
      if (n == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};

namespace {

constexpr int max_macro_depth = 200;

value undefined_member(const value& obj, const value& key) {
  if (key.is_string()) return value::undefined(repr(value(object_type_repr(obj))) + " has no attribute " + repr(key));
  return value::undefined(object_type_repr(obj) + " has no element " + repr(key));
}

// Python's index normalization: negative counts from the end; nullopt when out of range.
std::optional<size_t> normalize_index(int64_t i, size_t n) {
  if (i < 0) i += static_cast<int64_t>(n);
  if (i < 0 || i >= static_cast<int64_t>(n)) return std::nullopt;
  return static_cast<size_t>(i);
}

} // namespace

interpreter::interpreter(const template_program& program, value globals) : program_(program) {
  globals_ = std::make_shared<scope>(nullptr);
  if (globals.is_dict()) {
    for (auto& [k, v] : globals.as_dict().entries) globals_->set(to_str(k), v);
  }
}

std::string interpreter::render() {
  std::string out;
  out_ = &out;
  auto root = std::make_shared<scope>(globals_);
  try {
    exec(program_.body, root);
  } catch (const template_error& e) {
    throw render_error(e.what(), line_);
  }
  return out;
}

// --- statements ----------------------------------------------------------------------------------

interpreter::flow interpreter::exec(const stmt_list& body, const scope_ptr& sc) {
  for (const stmt& s : body) {
    flow f = exec_stmt(s, sc);
    if (f != flow::normal) return f;
  }
  return flow::normal;
}

interpreter::flow interpreter::exec_stmt(const stmt& s, const scope_ptr& sc) {
  line_ = s.line;
  switch (s.kind) {
  case stmt_kind::text: *out_ += s.text; break;
  case stmt_kind::output: *out_ += to_str(eval(*s.value, sc)); break;
  case stmt_kind::if_:
    for (const auto& [cond, body] : s.branches) {
      if (truthy(eval(*cond, sc))) return exec(body, sc);
    }
    return exec(s.else_body, sc);
  case stmt_kind::for_: return exec_for(s, sc);
  case stmt_kind::set:
    if (!s.target.namespace_attr.empty()) {
      const value* ns = sc->lookup(s.target.names[0]);
      value v = eval(*s.value, sc);
      line_ = s.line;
      if (!ns || !ns->is_namespace()) throw template_error("cannot assign attribute on non-namespace object");
      ns->as_namespace().attrs.set(value(s.target.namespace_attr), std::move(v));
    } else {
      assign(s.target, eval(*s.value, sc), *sc);
    }
    break;
  case stmt_kind::set_block: {
    value captured(capture(s.body, std::make_shared<scope>(sc)));
    assign(s.target, s.filter ? apply_filter_expr(*s.filter, captured, sc) : captured, *sc);
    break;
  }
  case stmt_kind::macro: sc->set(s.target.names[0], define_macro(s, sc)); break;
  case stmt_kind::filter_block: {
    value captured(capture(s.body, std::make_shared<scope>(sc)));
    *out_ += to_str(apply_filter_expr(*s.filter, captured, sc));
    break;
  }
  case stmt_kind::break_: return flow::break_loop;
  case stmt_kind::continue_: return flow::continue_loop;
  case stmt_kind::scoped_block: return exec(s.body, std::make_shared<scope>(sc));
  case stmt_kind::with: {
    auto inner = std::make_shared<scope>(sc);
    std::vector<value> values;
    for (const auto& w : s.withs) values.push_back(eval(*w.second, sc));
    for (size_t i = 0; i < values.size(); ++i) assign(s.withs[i].first, std::move(values[i]), *inner);
    return exec(s.body, inner);
  }
  }
  return flow::normal;
}

void interpreter::assign(const assign_target& target, value v, scope& sc) {
  if (!target.unpack) {
    sc.set(target.names[0], std::move(v));
    return;
  }
  if (!(v.is_undefined() || v.is_list() || v.is_dict() || v.is_string()))
    throw template_error("cannot unpack non-iterable " + type_name(v) + " object");
  std::vector<value> items = iterate(v);
  size_t want = target.names.size();
  if (items.size() < want)
    throw template_error("not enough values to unpack (expected " + std::to_string(want) + ", got " +
                         std::to_string(items.size()) + ")");
  if (items.size() > want) throw template_error("too many values to unpack (expected " + std::to_string(want) + ")");
  for (size_t i = 0; i < want; ++i) sc.set(target.names[i], std::move(items[i]));
}

std::string interpreter::capture(const stmt_list& body, const scope_ptr& sc) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    exec(body, sc);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buffer;
}

interpreter::flow interpreter::exec_for(const stmt& s, const scope_ptr& sc) {
  std::vector<value> items = iterate(eval(*s.value, sc));
  if (s.condition) {
    std::vector<value> kept;
    for (value& item : items) {
      auto probe = std::make_shared<scope>(sc);
      assign(s.target, item, *probe);
      if (truthy(eval(*s.condition, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec(s.else_body, sc);
  const size_t n = items.size();
  for (size_t i = 0; i < n; ++i) {
    auto body_scope = std::make_shared<scope>(sc);
    auto loop = std::make_shared<dict_object>();
    auto add = [&](const char* key, value v) { loop->entries.emplace_back(value(key), std::move(v)); };
    const auto index = static_cast<int64_t>(i), length = static_cast<int64_t>(n);
    add("index", index + 1);
    add("index0", index);
    add("revindex", length - index);
    add("revindex0", length - index - 1);
    add("first", i == 0);
    add("last", i + 1 == n);
    add("length", length);
    add("depth", 1);
    add("depth0", 0);
    add("previtem", i > 0 ? items[i - 1] : value::undefined("there is no previous item"));
    add("nextitem", i + 1 < n ? items[i + 1] : value::undefined("there is no next item"));
    add("cycle", value::function("cycle", [index](interpreter&, call_args& a) -> value {
          if (a.positional.empty()) throw template_error("no items for cycling given");
          return a.positional[static_cast<size_t>(index) % a.positional.size()];
        }));
    body_scope->set("loop", value(std::move(loop)));
    assign(s.target, items[i], *body_scope);
    flow f = exec(s.body, body_scope);
    if (f == flow::break_loop) break;
  }
  return flow::normal;
}

value interpreter::define_macro(const stmt& s, const scope_ptr& sc) {
  const stmt* m = &s;
  std::weak_ptr<scope> defining = sc; // NOTE: weak, so a macro stored in its own scope is no cycle
  return value::function(
      s.target.names[0],
      [m, defining](interpreter& in, call_args& args) -> value {
        const std::string& name = m->target.names[0];
        if (args.positional.size() > m->params.size()) {
          throw template_error("macro '" + name + "' takes not more than " + std::to_string(m->params.size()) +
                               " argument(s)");
        }
        scope_ptr parent = defining.lock();
        auto frame = std::make_shared<scope>(parent ? parent : in.globals_);
        std::vector<bool> given(m->params.size(), false);
        for (size_t i = 0; i < args.positional.size(); ++i) {
          frame->set(m->params[i].name, args.positional[i]);
          given[i] = true;
        }
        for (auto& [key, v] : args.keyword) {
          auto it = std::find_if(m->params.begin(), m->params.end(), [&](const macro_param& p) { return p.name == key; });
          if (it == m->params.end()) throw template_error("macro '" + name + "' takes no keyword argument '" + key + "'");
          auto i = static_cast<size_t>(it - m->params.begin());
          if (given[i]) throw template_error("macro '" + name + "' got multiple values for argument '" + key + "'");
          frame->set(key, v);
          given[i] = true;
        }
        for (size_t i = 0; i < m->params.size(); ++i) {
          if (given[i]) continue;
          const macro_param& p = m->params[i];
          frame->set(p.name, p.default_value ? in.eval(*p.default_value, frame)
                                             : value::undefined("parameter '" + p.name + "' was not provided"));
        }
        if (++in.depth_ > max_macro_depth) {
          --in.depth_;
          throw template_error("maximum recursion depth exceeded in macro '" + name + "'");
        }
        std::string result;
        try {
          result = in.capture(m->body, frame);
        } catch (...) {
          --in.depth_;
          throw;
        }
        --in.depth_;
        return value(std::move(result));
      },
      true);
}

namespace {

// A filter or test jinja2 let through because it sat in an if: it fails when it runs.
[[noreturn]] void missing(const expr& e) {
  if (e.kind == expr_kind::filter && is_unimplemented_filter(e.name))
    throw template_error("the filter '" + e.name + "' is not supported in chat templates");
  throw template_error(std::string("No ") + (e.kind == expr_kind::filter ? "filter" : "test") + " named '" + e.name +
                       "' found.");
}

} // namespace

value interpreter::apply_filter_expr(const expr& f, const value& subject, const scope_ptr& sc) {
  value inner = f.children[0] ? apply_filter_expr(*f.children[0], subject, sc) : subject;
  call_args args = eval_args(f, 1, sc);
  line_ = f.line;
  if (!f.filter) missing(f);
  return f.filter->apply(*this, inner, args);
}

// --- expressions ---------------------------------------------------------------------------------

call_args interpreter::eval_args(const expr& e, size_t first, const scope_ptr& sc) {
  call_args args;
  for (size_t i = first; i < e.children.size(); ++i) args.positional.push_back(eval(*e.children[i], sc));
  for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v, sc));
  return args;
}

value interpreter::eval(const expr& e, const scope_ptr& sc) {
  line_ = e.line;
  switch (e.kind) {
  case expr_kind::literal: return e.literal;
  case expr_kind::name: {
    if (const value* v = sc->lookup(e.name)) return *v;
    return value::undefined("'" + e.name + "' is undefined");
  }
  case expr_kind::list:
  case expr_kind::tuple: {
    std::vector<value> items;
    items.reserve(e.children.size());
    for (const auto& c : e.children) items.push_back(eval(*c, sc));
    return value::list(std::move(items), e.kind == expr_kind::tuple ? seq_flavor::tuple : seq_flavor::list);
  }
  case expr_kind::dict: {
    value d = value::dict();
    for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
      value k = eval(*e.children[i], sc);
      d.as_dict().set(std::move(k), eval(*e.children[i + 1], sc));
    }
    return d;
  }
  case expr_kind::getattr: {
    value obj = eval(*e.children[0], sc);
    line_ = e.line;
    return getattr(obj, e.name);
  }
  case expr_kind::getitem: {
    value obj = eval(*e.children[0], sc);
    value key = eval(*e.children[1], sc);
    line_ = e.line;
    return getitem(obj, key);
  }
  case expr_kind::slice: return eval_slice(e, sc);
  case expr_kind::call: {
    value callee = eval(*e.children[0], sc);
    call_args args = eval_args(e, 1, sc);
    line_ = e.line;
    return call(callee, args);
  }
  case expr_kind::filter: {
    value subject = eval(*e.children[0], sc);
    call_args args = eval_args(e, 1, sc);
    line_ = e.line;
    if (!e.filter) missing(e);
    return e.filter->apply(*this, subject, args);
  }
  case expr_kind::test: {
    value subject = eval(*e.children[0], sc);
    call_args args = eval_args(e, 1, sc);
    line_ = e.line;
    if (!e.test) missing(e);
    return e.test->apply(*this, subject, args);
  }
  case expr_kind::logical_not: return !truthy(eval(*e.children[0], sc));
  case expr_kind::negate:
  case expr_kind::unary_plus: {
    value v = eval(*e.children[0], sc);
    line_ = e.line;
    if (v.is_undefined()) fail_undefined(v);
    if (!v.is_number()) {
      throw template_error(std::string("bad operand type for unary ") + (e.kind == expr_kind::negate ? "-" : "+") +
                           ": '" + type_name(v) + "'");
    }
    if (e.kind == expr_kind::unary_plus) return v.is_bool() ? value(v.as_integer()) : v;
    return v.is_float() ? value(-v.as_float()) : value(-v.as_integer());
  }
  case expr_kind::binary: return eval_binary(e, sc);
  case expr_kind::compare: return eval_compare(e, sc);
  case expr_kind::logical_and: {
    value left = eval(*e.children[0], sc);
    return truthy(left) ? eval(*e.children[1], sc) : left;
  }
  case expr_kind::logical_or: {
    value left = eval(*e.children[0], sc);
    return truthy(left) ? left : eval(*e.children[1], sc);
  }
  case expr_kind::concat: {
    std::string s;
    for (const auto& c : e.children) s += to_str(eval(*c, sc));
    return value(std::move(s));
  }
  case expr_kind::conditional: {
    if (truthy(eval(*e.children[1], sc))) return eval(*e.children[0], sc);
    if (e.children[2]) return eval(*e.children[2], sc);
    return value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                            " evaluated to false and no else section was defined.");
  }
  }
  return value();
}

value interpreter::eval_binary(const expr& e, const scope_ptr& sc) {
  value a = eval(*e.children[0], sc);
  value b = eval(*e.children[1], sc);
  line_ = e.line;
  return binary_operation(e.op, a, b);
}

bool interpreter::eval_compare(const expr& e, const scope_ptr& sc) {
  value left = eval(*e.children[0], sc);
  for (size_t i = 0; i < e.comparisons.size(); ++i) {
    value right = eval(*e.children[i + 1], sc);
    line_ = e.line;
    bool ok;
    switch (e.comparisons[i]) {
    case compare_op::eq: ok = equals(left, right); break;
    case compare_op::ne: ok = !equals(left, right); break;
    case compare_op::in: ok = contains(right, left); break;
    case compare_op::not_in: ok = !contains(right, left); break;
    default: ok = ordering(e.comparisons[i], left, right); break;
    }
    if (!ok) return false;
    left = std::move(right);
  }
  return true;
}

// NOTE: jinja2 slices with Python's obj[a:b:c] directly, not through the sandbox's getitem, so slicing
// what cannot be sliced is an error rather than an undefined.
value interpreter::eval_slice(const expr& e, const scope_ptr& sc) {
  value obj = eval(*e.children[0], sc);
  std::optional<int64_t> bounds[3];
  value raw[3] = {value(nullptr), value(nullptr), value(nullptr)};
  bool valid = true;
  for (int k = 0; k < 3; ++k) {
    if (!e.children[k + 1]) continue;
    value b = eval(*e.children[k + 1], sc);
    raw[k] = b;
    if (b.is_int() || b.is_bool()) {
      bounds[k] = b.as_integer();
    } else if (!b.is_none()) {
      valid = false;
    }
  }
  line_ = e.line;
  if (obj.is_undefined()) fail_undefined(obj);
  // Python 3.12 slices are hashable, so a dict looks the slice up as a key (transformers' Python).
  if (obj.is_dict()) throw template_error("slice(" + repr(raw[0]) + ", " + repr(raw[1]) + ", " + repr(raw[2]) + ")");
  if (!obj.is_string() && !obj.is_sequence_list()) throw template_error("'" + type_name(obj) + "' object is not subscriptable");
  if (!valid) throw template_error("slice indices must be integers or None or have an __index__ method");
  int64_t step = bounds[2].value_or(1);
  if (step == 0) throw template_error("slice step cannot be zero");
  if (obj.is_string()) return value(text::slice(obj.as_string(), bounds[0], bounds[1], step));
  {
    const auto& items = obj.as_list().items;
    auto n = static_cast<int64_t>(items.size());
    auto adjust = [&](std::optional<int64_t> v, int64_t dflt, int64_t lo, int64_t hi) {
      if (!v) return dflt;
      return std::clamp(*v < 0 ? *v + n : *v, lo, hi);
    };
    std::vector<value> out;
    if (step > 0) {
      for (int64_t i = adjust(bounds[0], 0, 0, n), end = adjust(bounds[1], n, 0, n); i < end; i += step)
        out.push_back(items[static_cast<size_t>(i)]);
    } else {
      for (int64_t i = adjust(bounds[0], n - 1, -1, n - 1), end = adjust(bounds[1], -1, -1, n - 1); i > end; i += step)
        out.push_back(items[static_cast<size_t>(i)]);
    }
    return value::list(std::move(out), obj.as_list().flavor);
  }
}

// --- services for filters, tests and methods -----------------------------------------------------

value interpreter::getattr(const value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (auto attr = python_attribute(obj, name)) return *attr;
  if (obj.is_dict()) {
    if (const value* v = obj.as_dict().find_name(name)) return *v;
  }
  return undefined_member(obj, value(name));
}

value interpreter::getitem(const value& obj, const value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_dict()) {
    if (const value* v = obj.as_dict().find(key)) return *v;
  } else if (obj.is_sequence_list() && (key.is_int() || key.is_bool())) {
    const auto& items = obj.as_list().items;
    if (auto i = normalize_index(key.as_integer(), items.size())) return items[*i];
  } else if (obj.is_string() && (key.is_int() || key.is_bool())) {
    auto cps = text::code_points(obj.as_string());
    if (auto i = normalize_index(key.as_integer(), cps.size())) return value(text::from_code_points(cps, *i, *i + 1));
  }
  if (key.is_string()) {
    if (auto attr = python_attribute(obj, key.as_string())) return *attr;
  }
  return undefined_member(obj, key);
}

value interpreter::call(const value& callee, call_args& args) {
  if (callee.is_undefined()) fail_undefined(callee);
  if (!callee.is_function()) throw template_error("'" + type_name(callee) + "' object is not callable");
  return callee.as_function().call(*this, args);
}

std::vector<value> interpreter::iterate(const value& v) {
  switch (v.kind()) {
  case value_kind::undefined: return {};
  case value_kind::list: {
    list_object& l = v.as_list();
    if (l.flavor != seq_flavor::iterator) return l.items;
    std::vector<value> rest;
    while (auto x = take_next(l)) rest.push_back(std::move(*x));
    return rest;
  }
  case value_kind::dict: {
    std::vector<value> keys;
    keys.reserve(v.as_dict().entries.size());
    for (const auto& [k, _] : v.as_dict().entries) keys.push_back(k);
    return keys;
  }
  case value_kind::string: {
    std::vector<value> chars;
    const std::string& s = v.as_string();
    for (size_t i = 0; i < s.size();) {
      size_t b = i;
      text::next_code_point(s, i);
      chars.emplace_back(s.substr(b, i - b));
    }
    return chars;
  }
  default: throw template_error("'" + type_name(v) + "' object is not iterable");
  }
}

bool interpreter::contains(const value& container, const value& item) {
  switch (container.kind()) {
  case value_kind::undefined: return false;
  case value_kind::string:
    if (!item.is_string()) {
      throw template_error("'in <string>' requires string as left operand, not " + type_name(item));
    }
    return container.as_string().find(item.as_string()) != std::string::npos;
  case value_kind::list:
    if (container.as_list().flavor == seq_flavor::iterator) {
      while (auto x = take_next(container.as_list()))
        if (equals(*x, item)) return true;
      return false;
    }
    for (const value& x : container.as_list().items)
      if (equals(x, item)) return true;
    return false;
  case value_kind::dict: return container.as_dict().find(item) != nullptr;
  default: throw template_error("argument of type '" + type_name(container) + "' is not iterable");
  }
}

value interpreter::apply_filter(const std::string& name, const value& subject, call_args& args) {
  const filter_entry* f = find_filter(name);
  if (!f) throw template_error("No filter named '" + name + "'.");
  return f->apply(*this, subject, args);
}

bool interpreter::apply_test(const std::string& name, const value& subject, call_args& args) {
  const test_entry* t = find_test(name);
  if (!t) throw template_error("No test named '" + name + "'.");
  return t->apply(*this, subject, args);
}

} // namespace troupe::jinja
