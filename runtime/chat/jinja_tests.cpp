// jinja2's built-in tests (jinja2/tests.py): {% if x is defined %}, selectattr('k', 'equalto', v).

#include "runtime/chat/jinja_filters.hpp"

#include "runtime/chat/jinja_interpreter.hpp"
#include "runtime/chat/jinja_text.hpp"

namespace troupe::jinja {
namespace {

using args_t = call_args;

std::vector<value> bind(std::string_view fn, const args_t& args, const std::vector<param>& params) {
  return bind_args(fn, args, params, 1); // Python counts the tested value as an argument
}

std::string str_of(const value& v) { return to_str(v); }

value one_arg(std::string_view name, const args_t& a) {
  return bind("test_" + std::string(name), a, {{"other", value(), true}})[0];
}

bool t_defined(interpreter&, const value& v, args_t& a) {
  bind("test_defined", a, {});
  return !v.is_undefined();
}
bool t_undefined(interpreter&, const value& v, args_t& a) {
  bind("test_undefined", a, {});
  return v.is_undefined();
}
bool t_none(interpreter&, const value& v, args_t& a) {
  bind("test_none", a, {});
  return v.is_none();
}
bool t_boolean(interpreter&, const value& v, args_t& a) {
  bind("test_boolean", a, {});
  return v.is_bool();
}
bool t_false(interpreter&, const value& v, args_t& a) {
  bind("test_false", a, {});
  return v.is_bool() && !v.as_bool();
}
bool t_true(interpreter&, const value& v, args_t& a) {
  bind("test_true", a, {});
  return v.is_bool() && v.as_bool();
}
bool t_integer(interpreter&, const value& v, args_t& a) {
  bind("test_integer", a, {});
  return v.is_int();
}
bool t_float(interpreter&, const value& v, args_t& a) {
  bind("test_float", a, {});
  return v.is_float();
}
bool t_number(interpreter&, const value& v, args_t& a) {
  bind("test_number", a, {});
  return v.is_number();
}
bool t_string(interpreter&, const value& v, args_t& a) {
  bind("test_string", a, {});
  return v.is_string();
}
bool t_mapping(interpreter&, const value& v, args_t& a) {
  bind("test_mapping", a, {});
  return v.is_dict();
}
// Undefined has __call__ (it raises), so Python calls it callable.
bool t_callable(interpreter&, const value& v, args_t& a) {
  bind("test_callable", a, {});
  return v.is_function() || v.is_undefined();
}
bool t_escaped(interpreter&, const value&, args_t& a) {
  bind("test_escaped", a, {});
  return false;
}
bool t_lower(interpreter&, const value& v, args_t& a) {
  bind("test_lower", a, {});
  return text::is_lower_str(str_of(v));
}
bool t_upper(interpreter&, const value& v, args_t& a) {
  bind("test_upper", a, {});
  return text::is_upper_str(str_of(v));
}

bool t_sequence(interpreter&, const value& v, args_t& a) {
  bind("sequence", a, {});
  return v.is_undefined() || v.is_string() || v.is_dict() || v.is_sequence_list();
}

bool t_iterable(interpreter&, const value& v, args_t& a) {
  bind("iterable", a, {});
  return v.is_undefined() || v.is_string() || v.is_dict() || v.is_list();
}

// value % 2 == r, with Python's % (a string formats, anything else may raise).
bool remainder_is(const value& v, int64_t r) { return equals(binary_operation(binary_op::mod, v, value(2)), value(r)); }

bool t_odd(interpreter&, const value& v, args_t& a) {
  bind("test_odd", a, {});
  return remainder_is(v, 1);
}
bool t_even(interpreter&, const value& v, args_t& a) {
  bind("test_even", a, {});
  return remainder_is(v, 0);
}

bool t_divisibleby(interpreter&, const value& v, args_t& a) {
  value num = bind("test_divisibleby", a, {{"num", value(), true}})[0];
  value r = binary_operation(binary_op::mod, v, num);
  return equals(r, value(0));
}

bool t_sameas(interpreter&, const value& v, args_t& a) {
  value other = one_arg("sameas", a);
  if (v.is_none() || v.is_bool() || v.is_undefined()) return v.kind() == other.kind() && equals(v, other);
  const void* id = v.identity();
  return id && id == other.identity();
}

bool t_in(interpreter& in, const value& v, args_t& a) { return in.contains(one_arg("in", a), v); }
bool t_eq(interpreter&, const value& v, args_t& a) { return equals(v, one_arg("eq", a)); }
bool t_ne(interpreter&, const value& v, args_t& a) { return !equals(v, one_arg("ne", a)); }
bool t_lt(interpreter&, const value& v, args_t& a) { return ordering(compare_op::lt, v, one_arg("lt", a)); }
bool t_le(interpreter&, const value& v, args_t& a) { return ordering(compare_op::le, v, one_arg("le", a)); }
bool t_gt(interpreter&, const value& v, args_t& a) { return ordering(compare_op::gt, v, one_arg("gt", a)); }
bool t_ge(interpreter&, const value& v, args_t& a) { return ordering(compare_op::ge, v, one_arg("ge", a)); }
bool t_filter(interpreter&, const value& v, args_t& a) {
  bind("test_filter", a, {});
  return v.is_string() && find_filter(v.as_string());
}
bool t_test(interpreter&, const value& v, args_t& a) {
  bind("test_test", a, {});
  return v.is_string() && find_test(v.as_string());
}

constexpr test_entry tests[] = {
    {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined},   {"divisibleby", t_divisibleby},
    {"eq", t_eq},           {"equalto", t_eq},        {"==", t_eq},             {"escaped", t_escaped},
    {"even", t_even},       {"false", t_false},       {"filter", t_filter},     {"float", t_float},
    {"ge", t_ge},           {">=", t_ge},             {"gt", t_gt},             {">", t_gt},
    {"greaterthan", t_gt},  {"in", t_in},             {"integer", t_integer},   {"iterable", t_iterable},
    {"le", t_le},           {"<=", t_le},             {"lower", t_lower},       {"lt", t_lt},
    {"<", t_lt},            {"lessthan", t_lt},       {"mapping", t_mapping},   {"ne", t_ne},
    {"!=", t_ne},           {"none", t_none},         {"number", t_number},     {"odd", t_odd},
    {"sameas", t_sameas},   {"sequence", t_sequence}, {"string", t_string},     {"test", t_test},
    {"true", t_true},       {"undefined", t_undefined}, {"upper", t_upper},
};

} // namespace

const test_entry* find_test(std::string_view name) {
  for (const auto& t : tests)
    if (t.name == name) return &t;
  return nullptr;
}

} // namespace troupe::jinja
