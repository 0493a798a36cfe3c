// jinja2's built-in filters (jinja2/filters.py), with transformers' tojson in place of jinja2's.

#include "runtime/chat/jinja_filters.hpp"

#include "runtime/chat/jinja_interpreter.hpp"
#include "runtime/chat/jinja_json.hpp"
#include "runtime/chat/jinja_methods.hpp"
#include "runtime/chat/jinja_text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace troupe::jinja {
namespace {

using args_t = call_args;

std::vector<value> bind(std::string_view fn, const args_t& args, const std::vector<param>& params) {
  return bind_args(fn, args, params, 1); // Python counts the filtered or tested value as an argument
}

// soft_str: what filters that work on text make of any value (undefined is "").
std::string str_of(const value& v) { return to_str(v); }

value iterator_of(std::vector<value> items, std::string_view type = "generator") {
  return value::list(std::move(items), seq_flavor::iterator, type);
}

// A lazy generator over the items of source: step(item, emit) runs for each item as the result is
// pulled and emits zero or one result item (Python runs a generator's body only as it is consumed).
value lazy_generator(interpreter& in, const value& source, std::function<std::optional<value>(const value&)> step) {
  value gen = value::list({}, seq_flavor::iterator, "generator");
  auto upstream = std::make_shared<list_object>();
  upstream->flavor = seq_flavor::iterator;
  value src = source; // keeps the upstream alive
  if (source.is_list() && source.as_list().flavor == seq_flavor::iterator) {
    upstream->generate = [src]() { return take_next(src.as_list()); };
  } else {
    // iter(source) runs at the first pull, as in a Python generator.
    upstream->generate = [&in, src, items = std::vector<value>(), next = size_t{0},
                          loaded = false]() mutable -> std::optional<value> {
      if (!loaded) {
        items = in.iterate(src);
        loaded = true;
      }
      if (next >= items.size()) return std::nullopt;
      return std::move(items[next++]);
    };
  }
  gen.as_list().generate = [upstream, step = std::move(step)]() -> std::optional<value> {
    while (auto item = take_next(*upstream)) {
      if (auto out = step(*item)) return out;
    }
    return std::nullopt;
  };
  return gen;
}

// jinja2's make_attrgetter: "a.b.0" looks each part up with getitem (integers as indexes).
value attribute_of(interpreter& in, const value& item, const value& attribute) {
  if (!attribute.is_string()) return in.getitem(item, attribute);
  value v = item;
  const std::string& path = attribute.as_string();
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = in.getitem(v, numeric ? value(static_cast<int64_t>(std::stoll(part))) : value(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// The sort key of jinja2's ignore_case: strings lower-cased unless case_sensitive.
value sort_key(const value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return value(text::lower(v.as_string()));
  return v;
}

bool key_less(const value& a, const value& b) { return ordering(compare_op::lt, a, b); }

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&#34;"; break;
    case '\'': out += "&#39;"; break;
    default: out += c;
    }
  }
  return out;
}

// Python's int(str, base): optional sign, whitespace around, underscores between digits, a 0x/0o/0b
// prefix matching the base (or any prefix with base 0).
std::optional<int64_t> parse_python_int(const std::string& raw, int64_t base) {
  std::string s = text::strip(raw, std::nullopt, true, true);
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  auto prefix_base = [&](char c) { c = static_cast<char>(std::tolower(static_cast<unsigned char>(c))); return c == 'x' ? 16 : c == 'o' ? 8 : c == 'b' ? 2 : 0; };
  if (i + 1 < s.size() && s[i] == '0' && prefix_base(s[i + 1]) && (base == 0 || prefix_base(s[i + 1]) == base)) {
    base = prefix_base(s[i + 1]);
    i += 2;
    if (i < s.size() && s[i] == '_') ++i;
  } else if (base == 0) {
    base = 10;
  }
  if (base < 2 || base > 36 || i >= s.size()) return std::nullopt;
  int64_t v = 0;
  bool last_underscore = true;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      if (last_underscore) return std::nullopt;
      last_underscore = true;
      continue;
    }
    int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : std::isalpha(static_cast<unsigned char>(c)) ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10 : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) return std::nullopt;
    last_underscore = false;
  }
  if (last_underscore) return std::nullopt;
  return negative ? -v : v;
}

// Python's float(str): decimal, exponent, inf and nan, whitespace around.
std::optional<double> parse_python_float(const std::string& raw) {
  std::string s = text::strip(raw, std::nullopt, true, true);
  std::string cleaned;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 1])))
      continue;
    cleaned += s[i];
  }
  if (cleaned.empty()) return std::nullopt;
  std::string lower = text::lower(cleaned);
  std::string_view body = lower;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
  bool named = body == "inf" || body == "infinity" || body == "nan";
  if (!named && (cleaned.find_first_of("xXpP") != std::string::npos)) return std::nullopt; // no hex floats
  char* end = nullptr;
  double d = std::strtod(cleaned.c_str(), &end);
  if (end != cleaned.c_str() + cleaned.size()) return std::nullopt;
  return d;
}

// --- filters -------------------------------------------------------------------------------------

value f_abs(interpreter&, const value& v, args_t& a) {
  bind("abs", a, {});
  if (v.is_float()) return std::fabs(v.as_float());
  if (v.is_int() || v.is_bool()) return std::abs(v.as_integer());
  throw template_error("bad operand type for abs(): '" + type_name(v) + "'");
}

value f_attr(interpreter& in, const value& v, args_t& a) {
  auto p = bind("attr", a, {{"name", value(), true}});
  return in.getattr(v, str_of(p[0]));
}

std::vector<value> batch_items(interpreter& in, const value& v, const std::vector<value>& p);

// A generator whose items are all computed when the first is taken (jinja2's batch and slice run
// their loops inside generators, so their errors wait for the consumer).
value deferred(std::function<std::vector<value>()> compute) {
  value gen = iterator_of({});
  gen.as_list().generate = [compute = std::move(compute), items = std::vector<value>(), next = size_t{0},
                            done = false]() mutable -> std::optional<value> {
    if (!done) {
      items = compute();
      done = true;
    }
    if (next >= items.size()) return std::nullopt;
    return std::move(items[next++]);
  };
  return gen;
}

value f_batch(interpreter& in, const value& v, args_t& a) {
  auto p = bind("batch", a, {{"linecount", value(), true}, {"fill_with", nullptr}});
  return deferred([&in, v, p]() { return batch_items(in, v, p); });
}

std::vector<value> batch_items(interpreter& in, const value& v, const std::vector<value>& p) {
  int64_t size = p[0].as_integer();
  if (size <= 0) throw template_error("batch size must be positive");
  std::vector<value> out, row;
  for (value& item : in.iterate(v)) {
    row.push_back(std::move(item));
    if (static_cast<int64_t>(row.size()) == size) out.push_back(value::list(std::exchange(row, {})));
  }
  if (!row.empty()) {
    if (!p[1].is_none())
      while (static_cast<int64_t>(row.size()) < size) row.push_back(p[1]);
    out.push_back(value::list(std::move(row)));
  }
  return out;
}

std::vector<value> slice_items(interpreter& in, const value& v, const std::vector<value>& p);

value f_slice(interpreter& in, const value& v, args_t& a) {
  auto p = bind("slice", a, {{"slices", value(), true}, {"fill_with", nullptr}});
  return deferred([&in, v, p]() { return slice_items(in, v, p); });
}

std::vector<value> slice_items(interpreter& in, const value& v, const std::vector<value>& p) {
  int64_t slices = p[0].as_integer();
  if (slices <= 0) throw template_error("slice count must be positive");
  auto seq = in.iterate(v);
  auto length = static_cast<int64_t>(seq.size());
  int64_t per_slice = length / slices, with_extra = length % slices, offset = 0;
  std::vector<value> out;
  for (int64_t k = 0; k < slices; ++k) {
    int64_t start = offset + k * per_slice;
    if (k < with_extra) ++offset;
    int64_t end = offset + (k + 1) * per_slice;
    std::vector<value> part(seq.begin() + start, seq.begin() + end);
    if (!p[1].is_none() && k >= with_extra) part.push_back(p[1]);
    out.push_back(value::list(std::move(part)));
  }
  return out;
}

value f_capitalize(interpreter&, const value& v, args_t& a) {
  bind("capitalize", a, {});
  return value(text::capitalize(str_of(v)));
}

value f_center(interpreter&, const value& v, args_t& a) {
  auto p = bind("center", a, {{"width", 80}});
  return value(text::pad(str_of(v), p[0].as_integer(), ' ', 0));
}

value f_length(interpreter&, const value& v, args_t& a) {
  bind("length", a, {});
  return length_of(v);
}

value f_default(interpreter&, const value& v, args_t& a) {
  auto p = bind("default", a, {{"default_value", ""}, {"boolean", false}});
  if (v.is_undefined() || (truthy(p[1]) && !truthy(v))) return p[0];
  return v;
}

value f_dictsort(interpreter& in, const value& v, args_t& a) {
  auto p = bind("dictsort", a, {{"case_sensitive", false}, {"by", "key"}, {"reverse", false}});
  std::string by = str_of(p[1]);
  if (by != "key" && by != "value") throw template_error("You can only sort by either \"key\" or \"value\"");
  if (!v.is_dict()) {
    if (v.is_undefined()) fail_undefined(v);
    throw template_error("'" + type_name(v) + "' object has no attribute 'items'");
  }
  std::vector<value> items;
  for (const auto& [k, x] : v.as_dict().entries) items.push_back(value::tuple({k, x}));
  bool cs = truthy(p[0]);
  size_t pos = by == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const value& x, const value& y) {
    return key_less(sort_key(x.as_list().items[pos], cs), sort_key(y.as_list().items[pos], cs));
  });
  if (truthy(p[2])) std::reverse(items.begin(), items.end());
  (void)in;
  return value::list(std::move(items));
}

value f_escape(interpreter&, const value& v, args_t& a) {
  bind("escape", a, {});
  return value(html_escape(str_of(v)));
}

value f_first(interpreter& in, const value& v, args_t& a) {
  bind("first", a, {});
  if (v.is_list() && v.as_list().flavor == seq_flavor::iterator) {
    if (auto x = take_next(v.as_list())) return *x;
    return value::undefined("No first item, sequence was empty.");
  }
  auto items = in.iterate(v);
  if (items.empty()) return value::undefined("No first item, sequence was empty.");
  return items.front();
}

value f_last(interpreter& in, const value& v, args_t& a) {
  bind("last", a, {});
  if ((v.is_list() && v.as_list().flavor == seq_flavor::iterator) ||
      !(v.is_undefined() || v.is_string() || v.is_list() || v.is_dict()))
    throw template_error("'" + type_name(v) + "' object is not reversible");
  auto items = in.iterate(v);
  if (items.empty()) return value::undefined("No last item, sequence was empty.");
  return items.back();
}

value f_float(interpreter&, const value& v, args_t& a) {
  auto p = bind("float", a, {{"default", 0.0}});
  if (v.is_undefined()) fail_undefined(v); // float(Undefined) raises, and jinja2 does not catch that
  if (v.is_number()) return v.as_number();
  if (v.is_string()) {
    if (auto d = parse_python_float(v.as_string())) return *d;
  }
  return p[0];
}

value f_format(interpreter&, const value& v, args_t& a) {
  if (!a.keyword.empty() && !a.positional.empty())
    throw template_error("can't handle positional and keyword arguments at the same time");
  value args;
  if (!a.keyword.empty()) {
    args = value::dict();
    for (auto& [k, x] : a.keyword) args.as_dict().set(value(k), x);
  } else {
    args = value::tuple(a.positional);
  }
  return value(percent_format(str_of(v), args));
}

value f_indent(interpreter&, const value& v, args_t& a) {
  auto p = bind("indent", a, {{"width", 4}, {"first", false}, {"blank", false}});
  std::string indention = p[0].is_string() ? p[0].as_string() : std::string(static_cast<size_t>(std::max<int64_t>(0, p[0].as_integer())), ' ');
  // jinja2 appends "\n" to the value itself (s += newline): only text can be indented.
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string()) throw template_error("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
  std::string s = v.as_string() + "\n"; // so that splitlines keeps a trailing empty line
  auto lines = text::splitlines(s, false);
  std::string rv;
  if (truthy(p[2])) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + indention : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? lines[i] : indention + lines[i]);
  }
  if (truthy(p[1])) rv = indention + rv;
  return value(std::move(rv));
}

value f_int(interpreter&, const value& v, args_t& a) {
  auto p = bind("int", a, {{"default", 0}, {"base", 10}});
  if (v.is_undefined()) fail_undefined(v); // int(Undefined) raises, and jinja2 does not catch that
  if (v.is_int() || v.is_bool()) return v.as_integer();
  if (v.is_float()) {
    double d = v.as_float();
    if (!std::isfinite(d)) return p[0];
    return static_cast<int64_t>(std::trunc(d));
  }
  if (v.is_string()) {
    if (auto i = parse_python_int(v.as_string(), p[1].as_integer())) return *i;
    if (auto d = parse_python_float(v.as_string()); d && std::isfinite(*d)) return static_cast<int64_t>(std::trunc(*d));
  }
  return p[0];
}

value f_items(interpreter&, const value& v, args_t& a) {
  bind("items", a, {});
  value gen = iterator_of({});
  if (v.is_undefined()) return gen;
  // jinja2's items is a generator: a non-mapping fails only when it is consumed.
  value src = v;
  bool started = false;
  size_t next = 0;
  gen.as_list().generate = [src, started, next]() mutable -> std::optional<value> {
    if (!started && !src.is_dict()) throw template_error("Can only get item pairs from a mapping.");
    started = true;
    const auto& entries = src.as_dict().entries;
    if (next >= entries.size()) return std::nullopt;
    const auto& [k, x] = entries[next++];
    return value::tuple({k, x});
  };
  return gen;
}

value f_join(interpreter& in, const value& v, args_t& a) {
  auto p = bind("join", a, {{"d", ""}, {"attribute", nullptr}});
  std::string sep = str_of(p[0]), out;
  size_t i = 0;
  for (const value& item : in.iterate(v)) {
    if (i++) out += sep;
    out += str_of(p[1].is_none() ? item : attribute_of(in, item, p[1]));
  }
  return value(std::move(out));
}

value f_list(interpreter& in, const value& v, args_t& a) {
  bind("list", a, {});
  return value::list(in.iterate(v));
}

value f_lower(interpreter&, const value& v, args_t& a) {
  bind("lower", a, {});
  return value(text::lower(str_of(v)));
}

value f_upper(interpreter&, const value& v, args_t& a) {
  bind("upper", a, {});
  return value(text::upper(str_of(v)));
}

value f_map(interpreter& in, const value& v, args_t& a) {
  if (!truthy(v)) return iterator_of({}); // jinja2: `if value:` before iterating
  if (a.positional.empty()) {
    value attribute, dflt;
    bool has_default = false;
    for (auto& [k, x] : a.keyword) {
      if (k == "attribute") {
        attribute = x;
      } else if (k == "default") {
        dflt = x;
        has_default = true;
      } else {
        throw template_error("Unexpected keyword argument '" + k + "'");
      }
    }
    if (attribute.is_undefined()) throw template_error("map requires a filter argument");
    return lazy_generator(in, v, [&in, attribute, dflt, has_default](const value& item) -> std::optional<value> {
      value x = attribute_of(in, item, attribute);
      return has_default && x.is_undefined() ? dflt : x;
    });
  }
  std::string name = str_of(a.positional[0]);
  args_t rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  return lazy_generator(in, v, [&in, name, rest](const value& item) -> std::optional<value> {
    args_t copy = rest;
    return in.apply_filter(name, item, copy);
  });
}

value min_max(interpreter& in, const value& v, args_t& a, bool want_max) {
  auto p = bind(want_max ? "max" : "min", a, {{"case_sensitive", false}, {"attribute", nullptr}});
  auto items = in.iterate(v);
  if (items.empty()) return value::undefined("No aggregated item, sequence was empty.");
  bool cs = truthy(p[0]);
  auto key = [&](const value& x) { return sort_key(p[1].is_none() ? x : attribute_of(in, x, p[1]), cs); };
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    bool better = want_max ? key_less(key(items[best]), key(items[i])) : key_less(key(items[i]), key(items[best]));
    if (better) best = i;
  }
  return items[best];
}

value f_max(interpreter& in, const value& v, args_t& a) { return min_max(in, v, a, true); }
value f_min(interpreter& in, const value& v, args_t& a) { return min_max(in, v, a, false); }

// select / reject / selectattr / rejectattr.
value select_or_reject(interpreter& in, const value& v, args_t& a, bool by_attribute, bool keep_when) {
  if (!truthy(v)) return iterator_of({}); // jinja2: `if value:` before iterating
  size_t next = 0;
  value attribute;
  if (by_attribute) {
    if (a.positional.empty()) throw template_error("Missing parameter for attribute name");
    attribute = a.positional[next++];
  }
  std::string test_name;
  bool has_test = next < a.positional.size();
  if (has_test) test_name = str_of(a.positional[next++]);
  args_t test_args;
  test_args.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next), a.positional.end());
  test_args.keyword = a.keyword;
  return lazy_generator(in, v, [&in, by_attribute, attribute, has_test, test_name, test_args, keep_when](
                                   const value& item) -> std::optional<value> {
    value subject = by_attribute ? attribute_of(in, item, attribute) : item;
    bool passed;
    if (has_test) {
      args_t copy = test_args;
      passed = in.apply_test(test_name, subject, copy);
    } else {
      passed = truthy(subject);
    }
    if (passed == keep_when) return item;
    return std::nullopt;
  });
}

value f_select(interpreter& in, const value& v, args_t& a) { return select_or_reject(in, v, a, false, true); }
value f_reject(interpreter& in, const value& v, args_t& a) { return select_or_reject(in, v, a, false, false); }
value f_selectattr(interpreter& in, const value& v, args_t& a) { return select_or_reject(in, v, a, true, true); }
value f_rejectattr(interpreter& in, const value& v, args_t& a) { return select_or_reject(in, v, a, true, false); }

value f_replace(interpreter&, const value& v, args_t& a) {
  auto p = bind("replace", a, {{"old", value(), true}, {"new", value(), true}, {"count", nullptr}});
  int64_t count = p[2].is_none() ? -1 : p[2].as_integer();
  return value(text::replace(str_of(v), str_of(p[0]), str_of(p[1]), count));
}

value f_reverse(interpreter& in, const value& v, args_t& a) {
  bind("reverse", a, {});
  if (v.is_string()) return value(text::slice(v.as_string(), std::nullopt, std::nullopt, -1));
  std::vector<value> items;
  try {
    items = in.iterate(v);
  } catch (const template_error&) {
    throw template_error("argument must be iterable");
  }
  std::reverse(items.begin(), items.end());
  if (v.is_sequence_list()) return iterator_of(std::move(items), "list_reverseiterator");
  if (v.is_dict()) return iterator_of(std::move(items), "dict_reversekeyiterator");
  return value::list(std::move(items)); // jinja2 falls back to a reversed list
}

value f_round(interpreter&, const value& v, args_t& a) {
  auto p = bind("round", a, {{"precision", 0}, {"method", "common"}});
  std::string method = str_of(p[1]);
  if (method != "common" && method != "ceil" && method != "floor")
    throw template_error("method must be common, ceil or floor");
  int64_t precision = p[0].as_integer();
  if (!v.is_number()) throw template_error("type " + type_name(v) + " doesn't define __round__ method");
  if (method == "common") {
    if (!v.is_float()) return v.as_integer(); // Python's round() of an int stays an int
    double x = v.as_float();
    if (precision == 0) return std::nearbyint(x);
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::clamp<int64_t>(precision, 0, 300)), x);
    return std::strtod(buf, nullptr);
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_number() * scale;
  return (method == "ceil" ? std::ceil(x) : std::floor(x)) / scale;
}

value f_safe(interpreter&, const value& v, args_t& a) {
  bind("safe", a, {});
  return value(str_of(v));
}

value f_sort(interpreter& in, const value& v, args_t& a) {
  auto p = bind("sort", a, {{"reverse", false}, {"case_sensitive", false}, {"attribute", nullptr}});
  auto items = in.iterate(v);
  bool cs = truthy(p[1]);
  auto key = [&](const value& x) { return sort_key(p[2].is_none() ? x : attribute_of(in, x, p[2]), cs); };
  bool reverse = truthy(p[0]);
  std::stable_sort(items.begin(), items.end(), [&](const value& x, const value& y) {
    return reverse ? key_less(key(y), key(x)) : key_less(key(x), key(y));
  });
  return value::list(std::move(items));
}

value f_string(interpreter&, const value& v, args_t& a) {
  bind("string", a, {});
  return value(str_of(v));
}

value f_sum(interpreter& in, const value& v, args_t& a) {
  auto p = bind("sum", a, {{"attribute", nullptr}, {"start", 0}});
  value total = p[1];
  for (const value& item : in.iterate(v)) {
    total = binary_operation(binary_op::add, total, p[0].is_none() ? item : attribute_of(in, item, p[0]));
  }
  return total;
}

value f_title(interpreter&, const value& v, args_t& a) {
  bind("title", a, {});
  // jinja2 splits at runs of whitespace and -({[< and capitalizes each piece.
  auto is_sep = [](char32_t c) { return text::is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<'; };
  std::string s = str_of(v), out;
  auto cps = text::code_points(s);
  bool at_piece_start = true;
  bool in_sep = false;
  for (char32_t c : cps) {
    bool sep = is_sep(c);
    if (sep != in_sep) at_piece_start = true;
    in_sep = sep;
    if (at_piece_start) {
      text::append_upper(out, c);
    } else {
      text::append_lower(out, c);
    }
    at_piece_start = false;
  }
  return value(std::move(out));
}

value f_tojson(interpreter&, const value& v, args_t& a) {
  auto p = bind("tojson", a, {{"ensure_ascii", false}, {"indent", nullptr}, {"separators", nullptr}, {"sort_keys", false}});
  json_options o;
  o.ensure_ascii = truthy(p[0]);
  if (p[1].is_string()) {
    o.indent = p[1].as_string();
  } else if (p[1].is_int()) {
    o.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, p[1].as_int())), ' ');
  } else if (!p[1].is_none()) {
    throw template_error("indent must be None, an int or a str");
  }
  if (o.indent) o.item_separator = ",";
  if (!p[2].is_none()) {
    auto seps = p[2].is_sequence_list() ? p[2].as_list().items : std::vector<value>{};
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string())
      throw template_error("separators must be an (item_separator, key_separator) tuple");
    o.item_separator = seps[0].as_string();
    o.key_separator = seps[1].as_string();
  }
  o.sort_keys = truthy(p[3]);
  return value(to_json(v, o));
}

value f_trim(interpreter&, const value& v, args_t& a) {
  auto p = bind("trim", a, {{"chars", nullptr}});
  std::optional<std::string> chars;
  if (!p[0].is_none()) chars = str_of(p[0]);
  return value(text::strip(str_of(v), chars, true, true));
}

value f_unique(interpreter& in, const value& v, args_t& a) {
  auto p = bind("unique", a, {{"case_sensitive", false}, {"attribute", nullptr}});
  bool cs = truthy(p[0]);
  value attribute = p[1];
  auto seen = std::make_shared<std::vector<value>>();
  return lazy_generator(in, v, [&in, cs, attribute, seen](const value& item) -> std::optional<value> {
    value key = sort_key(attribute.is_none() ? item : attribute_of(in, item, attribute), cs);
    if (std::any_of(seen->begin(), seen->end(), [&](const value& s) { return equals(s, key); })) return std::nullopt;
    seen->push_back(key);
    return item;
  });
}

value f_wordcount(interpreter&, const value& v, args_t& a) {
  bind("wordcount", a, {});
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : text::code_points(str_of(v))) {
    bool word = text::is_alpha(c) || text::is_numeric(c) || c == '_';
    if (word && !in_word) ++n;
    in_word = word;
  }
  return n;
}

constexpr filter_entry filters[] = {
    {"abs", f_abs},           {"attr", f_attr},         {"batch", f_batch},           {"slice", f_slice},         {"capitalize", f_capitalize}, {"center", f_center},
    {"count", f_length},      {"d", f_default},         {"default", f_default},       {"dictsort", f_dictsort},
    {"e", f_escape},          {"escape", f_escape},     {"first", f_first},           {"float", f_float},
    {"forceescape", f_escape}, {"format", f_format},    {"indent", f_indent},         {"int", f_int},
    {"items", f_items},       {"join", f_join},         {"last", f_last},             {"length", f_length},
    {"list", f_list},         {"lower", f_lower},       {"map", f_map},               {"max", f_max},
    {"min", f_min},           {"reject", f_reject},     {"rejectattr", f_rejectattr}, {"replace", f_replace},
    {"reverse", f_reverse},   {"round", f_round},       {"safe", f_safe},             {"select", f_select},
    {"selectattr", f_selectattr}, {"sort", f_sort},     {"string", f_string},         {"sum", f_sum},
    {"title", f_title},       {"tojson", f_tojson},     {"trim", f_trim},             {"unique", f_unique},
    {"upper", f_upper},       {"wordcount", f_wordcount},
};

constexpr std::string_view unimplemented_filters[] = {"filesizeformat", "groupby", "pprint", "random", "striptags",
                                                      "truncate", "urlencode", "urlize", "wordwrap", "xmlattr"};

} // namespace

const filter_entry* find_filter(std::string_view name) {
  for (const auto& f : filters)
    if (f.name == name) return &f;
  return nullptr;
}

bool is_unimplemented_filter(std::string_view name) {
  return std::find(std::begin(unimplemented_filters), std::end(unimplemented_filters), name) !=
         std::end(unimplemented_filters);
}

} // namespace troupe::jinja
