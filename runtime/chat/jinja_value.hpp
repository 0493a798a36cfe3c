#pragma once
// The values a chat template computes with, and the Python semantics Jinja gives them (templates are
// written against Python's jinja2): truthiness, ==, ordering, str() and repr(). Internal to the chat
// template renderer (runtime/chat/chat_template.hpp is the public face).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace troupe::jinja {

class value;
class interpreter;

// A failure while rendering, with Python's message (e.g. "'x' is undefined"); the interpreter adds
// the template line.
class template_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// raise_exception(msg) in a template: the message is shown exactly as written.
class raised_exception : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// A malformed template, with the line the parser stopped at.
class syntax_error : public std::runtime_error {
public:
  syntax_error(const std::string& message, int line) : std::runtime_error(message), line(line) {}
  int line;
};

// A template_error as rendering reports it: with the line of the template it happened on.
class render_error : public std::runtime_error {
public:
  render_error(const std::string& message, int line) : std::runtime_error(message), line(line) {}
  int line;
};

// What Python would have: a list, a tuple, a dict view (d.items()) or a one-shot iterator (what map,
// select, unique, reverse... return). Views and iterators keep their Python type name for messages.
enum class seq_flavor : uint8_t { list, tuple, view, iterator };

struct list_object {
  std::vector<value> items;
  seq_flavor flavor = seq_flavor::list;
  std::string_view type_name = "list"; // "tuple", "dict_items", "generator", "list_reverseiterator"...
  // Iterators only: items[cursor..] are waiting to be taken, then generate() computes the rest one by
  // one (nullopt: exhausted). NOTE: like Python's, an iterator is used up by iterating it, and a lazy
  // one (map, select...) computes an item only when it is taken, so `| first` never sees later errors.
  size_t cursor = 0;
  std::function<std::optional<value>()> generate;
};

// Insertion-ordered like a Python dict; keys compare with Python == (1 and 1.0 are one key).
struct dict_object {
  std::vector<std::pair<value, value>> entries;

  const value* find(const value& key) const;
  value* find(const value& key);
  const value* find_name(std::string_view key) const;
  void set(value key, value v);
};

// namespace(...): the one object a template may assign attributes on.
struct namespace_object {
  dict_object attrs;
};

struct call_args {
  std::vector<value> positional;
  std::vector<std::pair<std::string, value>> keyword;
};

// Macros, globals (range, namespace...) and bound methods ('a'.split).
struct function_object {
  std::string name;
  std::function<value(interpreter&, call_args&)> call;
  bool is_macro = false;
};

// An undefined value remembers the error that using it raises ("'x' is undefined").
struct undefined_info {
  std::string message;
};

enum class value_kind : uint8_t { undefined, none, boolean, integer, floating, string, list, dict, namespace_, function };

class value {
public:
  value() = default; // undefined, with no message
  value(std::nullptr_t) : v_(std::monostate{}) {}
  value(bool b) : v_(b) {}
  value(int i) : v_(int64_t{i}) {}
  value(int64_t i) : v_(i) {}
  value(double f) : v_(f) {}
  value(std::string s) : v_(std::move(s)) {}
  value(std::string_view s) : v_(std::string(s)) {}
  value(const char* s) : v_(std::string(s)) {}
  value(std::shared_ptr<list_object> l) : v_(std::move(l)) {}
  value(std::shared_ptr<dict_object> d) : v_(std::move(d)) {}
  value(std::shared_ptr<namespace_object> n) : v_(std::move(n)) {}
  value(std::shared_ptr<const function_object> f) : v_(std::move(f)) {}

  // An undefined whose use fails with message.
  static value undefined(std::string message);
  static value list(std::vector<value> items, seq_flavor flavor = seq_flavor::list, std::string_view type_name = "");
  static value tuple(std::vector<value> items) { return list(std::move(items), seq_flavor::tuple); }
  static value dict() { return value(std::make_shared<dict_object>()); }
  static value function(std::string name, std::function<value(interpreter&, call_args&)> fn, bool is_macro = false);

  value_kind kind() const { return static_cast<value_kind>(v_.index()); }
  bool is_undefined() const { return kind() == value_kind::undefined; }
  bool is_none() const { return kind() == value_kind::none; }
  bool is_bool() const { return kind() == value_kind::boolean; }
  bool is_int() const { return kind() == value_kind::integer; }
  bool is_float() const { return kind() == value_kind::floating; }
  // int, float or bool: Python's numbers (bool is an int there).
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == value_kind::string; }
  bool is_list() const { return kind() == value_kind::list; }
  bool is_dict() const { return kind() == value_kind::dict; }
  bool is_namespace() const { return kind() == value_kind::namespace_; }
  bool is_function() const { return kind() == value_kind::function; }
  // A list or tuple that can be indexed and measured (not a view or an iterator).
  bool is_sequence_list() const;

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  // int or bool as an integer (Python: True + 1 == 2).
  int64_t as_integer() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  // Any number as a double.
  double as_number() const;
  const std::string& as_string() const { return std::get<std::string>(v_); }
  list_object& as_list() const { return *std::get<std::shared_ptr<list_object>>(v_); }
  dict_object& as_dict() const { return *std::get<std::shared_ptr<dict_object>>(v_); }
  namespace_object& as_namespace() const { return *std::get<std::shared_ptr<namespace_object>>(v_); }
  const function_object& as_function() const { return *std::get<std::shared_ptr<const function_object>>(v_); }
  // The error message of an undefined value.
  std::string undefined_message() const;
  // Identity of a container (Python `is`), null for scalars.
  const void* identity() const;

private:
  std::variant<std::shared_ptr<const undefined_info>, std::monostate, bool, int64_t, double, std::string,
               std::shared_ptr<list_object>, std::shared_ptr<dict_object>, std::shared_ptr<namespace_object>,
               std::shared_ptr<const function_object>>
      v_;
};

// A parameter of a built-in function, method or filter, for binding call arguments Python's way.
struct param {
  std::string_view name;
  value default_value;
  bool required = false;
};

// The arguments of a call to fn bound to params (positional first, then by keyword, then defaults).
// Throws template_error with Python's TypeError text for too many, unknown or missing arguments.
// implicit: arguments Python passes before these (a filter's value), counted in messages.
std::vector<value> bind_args(std::string_view fn, const call_args& args, const std::vector<param>& params,
                             int implicit = 0);

// The next item of an iterator (list_object with flavor iterator), taking it; nullopt when used up.
std::optional<value> take_next(list_object& iterator);

// Python truthiness; undefined is false, an iterator always true.
bool truthy(const value& v);
// Python ==. Undefined equals only undefined.
bool equals(const value& a, const value& b);
// Python <, for numbers, strings and lists of those; throws template_error (Python's TypeError text)
// for anything else, and the undefined's error for an undefined.
bool less_than(const value& a, const value& b, std::string_view op = "<");
// Python str(): what {{ v }} prints; undefined prints as "".
std::string to_str(const value& v);
// Python repr(), used for items inside printed lists and dicts.
std::string repr(const value& v);
// Python repr() of a float ("1.0", "1e+20", "0.30000000000000004").
std::string float_repr(double d);
// Python's type name for error messages: "NoneType", "int", "str", "dict", "Undefined"...
std::string type_name(const value& v);
// Jinja's description of an object in undefined messages: "dict object", "None", "str object".
std::string object_type_repr(const value& v);
// Python len(); throws template_error for values without one.
int64_t length_of(const value& v);
// Throws the error that using an undefined value raises.
[[noreturn]] void fail_undefined(const value& v);

} // namespace troupe::jinja
