// Python semantics of template values: what jinja2 inherits from the Python objects it works on.

#include "runtime/chat/jinja_value.hpp"

#include "runtime/chat/jinja_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace troupe::jinja {

value value::undefined(std::string message) {
  value v;
  v.v_ = std::make_shared<const undefined_info>(undefined_info{std::move(message)});
  return v;
}

value value::list(std::vector<value> items, seq_flavor flavor, std::string_view type_name) {
  auto l = std::make_shared<list_object>();
  l->items = std::move(items);
  l->flavor = flavor;
  if (!type_name.empty()) {
    l->type_name = type_name;
  } else {
    l->type_name = flavor == seq_flavor::tuple ? "tuple" : flavor == seq_flavor::iterator ? "generator" : "list";
  }
  return value(std::move(l));
}

value value::function(std::string name, std::function<value(interpreter&, call_args&)> fn, bool is_macro) {
  return value(std::make_shared<const function_object>(function_object{std::move(name), std::move(fn), is_macro}));
}

bool value::is_sequence_list() const {
  return is_list() && (as_list().flavor == seq_flavor::list || as_list().flavor == seq_flavor::tuple);
}

double value::as_number() const {
  if (is_float()) return as_float();
  return static_cast<double>(as_integer());
}

std::string value::undefined_message() const {
  const auto& info = std::get<std::shared_ptr<const undefined_info>>(v_);
  return info ? info->message : "undefined value";
}

const void* value::identity() const {
  switch (kind()) {
  case value_kind::list: return std::get<std::shared_ptr<list_object>>(v_).get();
  case value_kind::dict: return std::get<std::shared_ptr<dict_object>>(v_).get();
  case value_kind::namespace_: return std::get<std::shared_ptr<namespace_object>>(v_).get();
  case value_kind::function: return std::get<std::shared_ptr<const function_object>>(v_).get();
  default: return nullptr;
  }
}

const value* dict_object::find(const value& key) const {
  for (const auto& [k, v] : entries)
    if (equals(k, key)) return &v;
  return nullptr;
}

value* dict_object::find(const value& key) {
  for (auto& [k, v] : entries)
    if (equals(k, key)) return &v;
  return nullptr;
}

const value* dict_object::find_name(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k.is_string() && k.as_string() == key) return &v;
  return nullptr;
}

void dict_object::set(value key, value v) {
  if (value* slot = find(key)) {
    *slot = std::move(v);
  } else {
    entries.emplace_back(std::move(key), std::move(v));
  }
}

std::vector<value> bind_args(std::string_view fn, const call_args& args, const std::vector<param>& params,
                             int implicit) {
  if (args.positional.size() > params.size()) {
    size_t required = static_cast<size_t>(std::count_if(params.begin(), params.end(), [](const param& p) { return p.required; }));
    size_t lo = required + static_cast<size_t>(implicit), hi = params.size() + static_cast<size_t>(implicit);
    size_t given = args.positional.size() + static_cast<size_t>(implicit);
    std::string takes = lo == hi ? std::to_string(hi) + " positional argument" + (hi == 1 ? "" : "s")
                                 : "from " + std::to_string(lo) + " to " + std::to_string(hi) + " positional arguments";
    throw template_error(std::string(fn) + "() takes " + takes + " but " + std::to_string(given) +
                         (given == 1 ? " was given" : " were given"));
  }
  std::vector<value> out(params.size());
  std::vector<bool> given(params.size(), false);
  for (size_t i = 0; i < args.positional.size(); ++i) {
    out[i] = args.positional[i];
    given[i] = true;
  }
  for (const auto& [name, v] : args.keyword) {
    size_t i = 0;
    while (i < params.size() && params[i].name != name) ++i;
    if (i == params.size())
      throw template_error(std::string(fn) + "() got an unexpected keyword argument '" + name + "'");
    if (given[i]) throw template_error(std::string(fn) + "() got multiple values for argument '" + name + "'");
    out[i] = v;
    given[i] = true;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (given[i]) continue;
    if (params[i].required)
      throw template_error(std::string(fn) + "() missing required argument: '" + std::string(params[i].name) + "'");
    out[i] = params[i].default_value;
  }
  return out;
}

std::optional<value> take_next(list_object& it) {
  if (it.cursor < it.items.size()) return std::move(it.items[it.cursor++]);
  if (!it.generate) return std::nullopt;
  auto next = it.generate();
  if (!next) it.generate = nullptr;
  return next;
}

void fail_undefined(const value& v) { throw template_error(v.undefined_message()); }

bool truthy(const value& v) {
  switch (v.kind()) {
  case value_kind::undefined:
  case value_kind::none: return false;
  case value_kind::boolean: return v.as_bool();
  case value_kind::integer: return v.as_int() != 0;
  case value_kind::floating: return v.as_float() != 0.0;
  case value_kind::string: return !v.as_string().empty();
  case value_kind::list: return v.as_list().flavor == seq_flavor::iterator || !v.as_list().items.empty();
  case value_kind::dict: return !v.as_dict().entries.empty();
  default: return true;
  }
}

bool equals(const value& a, const value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_number() == b.as_number();
    return a.as_integer() == b.as_integer();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
  case value_kind::undefined:
  case value_kind::none: return true;
  case value_kind::string: return a.as_string() == b.as_string();
  case value_kind::list: {
    const auto &x = a.as_list(), &y = b.as_list();
    if (x.flavor == seq_flavor::iterator || y.flavor == seq_flavor::iterator) return &x == &y;
    // A list never equals a tuple in Python.
    if ((x.flavor == seq_flavor::tuple) != (y.flavor == seq_flavor::tuple)) return false;
    if (x.items.size() != y.items.size()) return false;
    for (size_t i = 0; i < x.items.size(); ++i)
      if (!equals(x.items[i], y.items[i])) return false;
    return true;
  }
  case value_kind::dict: {
    const auto &x = a.as_dict(), &y = b.as_dict();
    if (x.entries.size() != y.entries.size()) return false;
    for (const auto& [k, v] : x.entries) {
      const value* other = y.find(k);
      if (!other || !equals(v, *other)) return false;
    }
    return true;
  }
  default: return a.identity() == b.identity();
  }
}

bool less_than(const value& a, const value& b, std::string_view op) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_number() < b.as_number();
    return a.as_integer() < b.as_integer();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string(); // UTF-8 bytes order = code point order
  if (a.is_sequence_list() && b.is_sequence_list() &&
      (a.as_list().flavor == seq_flavor::tuple) == (b.as_list().flavor == seq_flavor::tuple)) {
    const auto &x = a.as_list().items, &y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return less_than(x[i], y[i], op);
    }
    return x.size() < y.size();
  }
  throw template_error("'" + std::string(op) + "' not supported between instances of '" + type_name(a) + "' and '" +
                       type_name(b) + "'");
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci: [-]D[.DDD]e[+-]XX
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  int exponent = std::stoi(sci.substr(e_pos + 1));
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int n = static_cast<int>(digits.size());
  int decpt = exponent + 1; // the value is 0.DIGITS x 10^decpt
  std::string out = negative ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (decpt >= n) {
      out += digits + std::string(static_cast<size_t>(decpt - n), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
    }
  } else {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    int e = decpt - 1;
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    out += ebuf;
  }
  return out;
}

namespace {

std::string string_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    char32_t c = text::next_code_point(s, i);
    char buf[16];
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if (c < 0x7F || text::is_printable(c)) {
      text::append_utf8(out, c);
    } else if (c <= 0xFF) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if (c <= 0xFFFF) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      out += buf;
    }
  }
  out += quote;
  return out;
}

std::string sequence_str(const list_object& l) {
  if (l.flavor == seq_flavor::iterator) return "<" + std::string(l.type_name) + " object>";
  bool tuple = l.flavor == seq_flavor::tuple;
  std::string out = tuple ? "(" : "[";
  for (size_t i = 0; i < l.items.size(); ++i) {
    if (i) out += ", ";
    out += repr(l.items[i]);
  }
  if (tuple && l.items.size() == 1) out += ",";
  out += tuple ? ")" : "]";
  if (l.flavor == seq_flavor::view) return std::string(l.type_name) + "(" + out + ")";
  return out;
}

std::string dict_str(const dict_object& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : d.entries) {
    if (!first) out += ", ";
    first = false;
    out += repr(k) + ": " + repr(v);
  }
  return out + "}";
}

} // namespace

std::string to_str(const value& v) {
  switch (v.kind()) {
  case value_kind::undefined: return "";
  case value_kind::none: return "None";
  case value_kind::boolean: return v.as_bool() ? "True" : "False";
  case value_kind::integer: return std::to_string(v.as_int());
  case value_kind::floating: return float_repr(v.as_float());
  case value_kind::string: return v.as_string();
  case value_kind::list: return sequence_str(v.as_list());
  case value_kind::dict: return dict_str(v.as_dict());
  case value_kind::namespace_: return "<Namespace " + dict_str(v.as_namespace().attrs) + ">";
  case value_kind::function:
    return v.as_function().is_macro ? "<Macro '" + v.as_function().name + "'>"
                                    : "<built-in function " + v.as_function().name + ">";
  }
  return "";
}

std::string repr(const value& v) {
  if (v.is_string()) return string_repr(v.as_string());
  if (v.is_undefined()) return "Undefined";
  return to_str(v);
}

std::string type_name(const value& v) {
  switch (v.kind()) {
  case value_kind::undefined: return "Undefined";
  case value_kind::none: return "NoneType";
  case value_kind::boolean: return "bool";
  case value_kind::integer: return "int";
  case value_kind::floating: return "float";
  case value_kind::string: return "str";
  case value_kind::list: return std::string(v.as_list().type_name);
  case value_kind::dict: return "dict";
  case value_kind::namespace_: return "Namespace";
  case value_kind::function: return v.as_function().is_macro ? "Macro" : "builtin_function_or_method";
  }
  return "object";
}

std::string object_type_repr(const value& v) {
  if (v.is_none()) return "None";
  if (v.is_namespace()) return "jinja2.utils.Namespace object";
  if (v.is_function() && v.as_function().is_macro) return "jinja2.runtime.Macro object";
  return type_name(v) + " object";
}

int64_t length_of(const value& v) {
  switch (v.kind()) {
  case value_kind::undefined: return 0;
  case value_kind::string: return static_cast<int64_t>(text::code_point_count(v.as_string()));
  case value_kind::list:
    if (v.as_list().flavor != seq_flavor::iterator) return static_cast<int64_t>(v.as_list().items.size());
    break;
  case value_kind::dict: return static_cast<int64_t>(v.as_dict().entries.size());
  default: break;
  }
  throw template_error("object of type '" + type_name(v) + "' has no len()");
}

} // namespace troupe::jinja
