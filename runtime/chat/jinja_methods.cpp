// Python methods of str, dict and list as bound functions, and Python's two string formatters.

#include "runtime/chat/jinja_methods.hpp"

#include "runtime/chat/jinja_interpreter.hpp"
#include "runtime/chat/jinja_text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace troupe::jinja {
namespace {

using method_fn = value (*)(interpreter& in, const value& self, call_args& args);

std::optional<std::string> optional_string(const value& v, std::string_view fn) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  if (!v.is_string()) throw template_error(std::string(fn) + " arg must be None or str");
  return v.as_string();
}

int64_t int_arg(const value& v, std::string_view fn) {
  if (v.is_int() || v.is_bool()) return v.as_integer();
  throw template_error("'" + type_name(v) + "' object cannot be interpreted as an integer (in " + std::string(fn) + ")");
}

std::optional<int64_t> optional_int(const value& v, std::string_view fn) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  return int_arg(v, fn);
}

const std::string& str_arg(const value& v, std::string_view fn) {
  if (!v.is_string()) throw template_error(std::string(fn) + "() argument must be str, not " + type_name(v));
  return v.as_string();
}

value string_list(std::vector<std::string> parts) {
  std::vector<value> out;
  out.reserve(parts.size());
  for (auto& p : parts) out.emplace_back(std::move(p));
  return value::list(std::move(out));
}

value split_method(const value& self, call_args& args, bool reverse) {
  auto a = bind_args(reverse ? "rsplit" : "split", args, {{"sep", nullptr}, {"maxsplit", -1}});
  auto sep = optional_string(a[0], "sep");
  if (sep && sep->empty()) throw template_error("empty separator");
  int64_t maxsplit = int_arg(a[1], "split");
  return string_list(reverse ? text::rsplit(self.as_string(), sep, maxsplit) : text::split(self.as_string(), sep, maxsplit));
}

value strip_method(const value& self, call_args& args, bool left, bool right, const char* name) {
  auto a = bind_args(name, args, {{"chars", nullptr}});
  return value(text::strip(self.as_string(), optional_string(a[0], name), left, right));
}

value affix_method(const value& self, call_args& args, bool prefix) {
  const char* name = prefix ? "startswith" : "endswith";
  auto a = bind_args(name, args, {{"prefix", value(), true}, {"start", nullptr}, {"end", nullptr}});
  const std::string& s = self.as_string();
  auto start = optional_int(a[1], name), end = optional_int(a[2], name);
  auto n = static_cast<int64_t>(text::code_point_count(s));
  auto clamp = [&](std::optional<int64_t> v, int64_t d) {
    if (!v) return d;
    return std::clamp(*v < 0 ? *v + n : *v, int64_t{0}, n);
  };
  int64_t b = clamp(start, 0), e = clamp(end, n);
  if (b > e) return false;
  std::string sub = s.substr(text::byte_offset(s, static_cast<size_t>(b)),
                             text::byte_offset(s, static_cast<size_t>(e)) - text::byte_offset(s, static_cast<size_t>(b)));
  std::vector<value> candidates;
  if (a[0].is_string()) {
    candidates.push_back(a[0]);
  } else if (a[0].is_list() && a[0].as_list().flavor == seq_flavor::tuple) {
    candidates = a[0].as_list().items;
  } else {
    throw template_error(std::string(name) + " first arg must be str or a tuple of str, not " + type_name(a[0]));
  }
  for (const value& c : candidates) {
    if (!c.is_string()) {
      throw template_error("tuple for " + std::string(name) + " must only contain str, not " + type_name(c));
    }
    const std::string& x = c.as_string();
    if (x.size() <= sub.size() && (prefix ? sub.compare(0, x.size(), x) == 0 : sub.compare(sub.size() - x.size(), x.size(), x) == 0))
      return true;
  }
  return false;
}

value find_method(const value& self, call_args& args, bool reverse, bool raise, const char* name) {
  auto a = bind_args(name, args, {{"sub", value(), true}, {"start", nullptr}, {"end", nullptr}});
  int64_t at = text::find(self.as_string(), str_arg(a[0], name), optional_int(a[1], name), optional_int(a[2], name), reverse);
  if (at < 0 && raise) throw template_error("substring not found");
  return at;
}

value pad_method(const value& self, call_args& args, int align, const char* name) {
  auto a = bind_args(name, args, {{"width", value(), true}, {"fillchar", " "}});
  const std::string& fill = str_arg(a[1], name);
  if (text::code_point_count(fill) != 1) throw template_error("The fill character must be exactly one character long");
  size_t i = 0;
  return value(text::pad(self.as_string(), int_arg(a[0], name), text::next_code_point(fill, i), align));
}

value predicate(const value& self, bool (*pred)(char32_t)) { return text::all_of(self.as_string(), pred); }

value partition_method(const value& self, call_args& args, bool reverse) {
  auto a = bind_args(reverse ? "rpartition" : "partition", args, {{"sep", value(), true}});
  const std::string& s = self.as_string();
  const std::string& sep = str_arg(a[0], "partition");
  if (sep.empty()) throw template_error("empty separator");
  size_t at = reverse ? s.rfind(sep) : s.find(sep);
  if (at == std::string::npos) {
    return reverse ? value::tuple({value(""), value(""), value(s)}) : value::tuple({value(s), value(""), value("")});
  }
  return value::tuple({value(s.substr(0, at)), value(sep), value(s.substr(at + sep.size()))});
}

value str_method(interpreter& in, const std::string& name, const value& self, call_args& args) {
  const std::string& s = self.as_string();
  static const char* const no_argument_methods[] = {"lower", "casefold", "upper", "title", "capitalize", "swapcase",
                                                    "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum",
                                                    "isspace", "isascii", "islower", "isupper"};
  if (std::find(std::begin(no_argument_methods), std::end(no_argument_methods), name) != std::end(no_argument_methods))
    bind_args(name, args, {});
  if (name == "split") return split_method(self, args, false);
  if (name == "rsplit") return split_method(self, args, true);
  if (name == "strip") return strip_method(self, args, true, true, "strip");
  if (name == "lstrip") return strip_method(self, args, true, false, "lstrip");
  if (name == "rstrip") return strip_method(self, args, false, true, "rstrip");
  if (name == "startswith") return affix_method(self, args, true);
  if (name == "endswith") return affix_method(self, args, false);
  if (name == "lower" || name == "casefold") return value(text::lower(s));
  if (name == "upper") return value(text::upper(s));
  if (name == "title") return value(text::title(s));
  if (name == "capitalize") return value(text::capitalize(s));
  if (name == "swapcase") return value(text::swapcase(s));
  if (name == "replace") {
    auto a = bind_args("replace", args, {{"old", value(), true}, {"new", value(), true}, {"count", -1}});
    return value(text::replace(s, str_arg(a[0], "replace"), str_arg(a[1], "replace"), int_arg(a[2], "replace")));
  }
  if (name == "find") return find_method(self, args, false, false, "find");
  if (name == "rfind") return find_method(self, args, true, false, "rfind");
  if (name == "index") return find_method(self, args, false, true, "index");
  if (name == "rindex") return find_method(self, args, true, true, "rindex");
  if (name == "count") {
    auto a = bind_args("count", args, {{"sub", value(), true}});
    return text::count(s, str_arg(a[0], "count"));
  }
  if (name == "join") {
    auto a = bind_args("join", args, {{"iterable", value(), true}});
    std::string out;
    size_t i = 0;
    for (const value& item : in.iterate(a[0])) {
      if (!item.is_string()) {
        throw template_error("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(item) +
                             " found");
      }
      if (i++) out += s;
      out += item.as_string();
    }
    return value(std::move(out));
  }
  if (name == "format") return value(python_format(in, s, args));
  if (name == "isdigit") return predicate(self, text::is_digit);
  if (name == "isdecimal") return predicate(self, text::is_digit);
  if (name == "isnumeric") return predicate(self, text::is_numeric);
  if (name == "isalpha") return predicate(self, text::is_alpha);
  if (name == "isalnum") {
    return predicate(self, [](char32_t c) { return text::is_alpha(c) || text::is_numeric(c); });
  }
  if (name == "isspace") return predicate(self, text::is_space);
  if (name == "isascii") {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  }
  if (name == "islower") return value(text::is_lower_str(s));
  if (name == "isupper") return value(text::is_upper_str(s));
  if (name == "splitlines") {
    auto a = bind_args("splitlines", args, {{"keepends", false}});
    return string_list(text::splitlines(s, truthy(a[0])));
  }
  if (name == "partition") return partition_method(self, args, false);
  if (name == "rpartition") return partition_method(self, args, true);
  if (name == "removeprefix" || name == "removesuffix") {
    auto a = bind_args(name, args, {{"fix", value(), true}});
    const std::string& fix = str_arg(a[0], name);
    if (name == "removeprefix") return s.compare(0, fix.size(), fix) == 0 ? value(s.substr(fix.size())) : self;
    bool ends = fix.size() <= s.size() && s.compare(s.size() - fix.size(), fix.size(), fix) == 0;
    return ends && !fix.empty() ? value(s.substr(0, s.size() - fix.size())) : self;
  }
  if (name == "zfill") {
    auto a = bind_args("zfill", args, {{"width", value(), true}});
    int64_t width = int_arg(a[0], "zfill");
    auto n = static_cast<int64_t>(text::code_point_count(s));
    if (width <= n) return self;
    size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    return value(s.substr(0, sign) + std::string(static_cast<size_t>(width - n), '0') + s.substr(sign));
  }
  if (name == "ljust") return pad_method(self, args, -1, "ljust");
  if (name == "rjust") return pad_method(self, args, 1, "rjust");
  if (name == "center") return pad_method(self, args, 0, "center");
  if (name == "expandtabs") {
    auto a = bind_args("expandtabs", args, {{"tabsize", 8}});
    return value(text::expandtabs(s, int_arg(a[0], "expandtabs")));
  }
  throw template_error("'str' object has no attribute '" + name + "'");
}

bool is_str_method(const std::string& name) {
  static const char* const names[] = {
      "split", "rsplit", "strip", "lstrip", "rstrip", "startswith", "endswith", "lower", "casefold", "upper", "title",
      "capitalize", "swapcase", "replace", "find", "rfind", "index", "rindex", "count", "join", "format", "isdigit",
      "isdecimal", "isnumeric", "isalpha", "isalnum", "isspace", "isascii", "islower", "isupper", "splitlines",
      "partition", "rpartition", "removeprefix", "removesuffix", "zfill", "ljust", "rjust", "center", "expandtabs"};
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

value dict_method(const std::string& name, const value& self, call_args& args) {
  dict_object& d = self.as_dict();
  if (name == "get") {
    auto a = bind_args("get", args, {{"key", value(), true}, {"default", nullptr}});
    const value* v = d.find(a[0]);
    return v ? *v : a[1];
  }
  bind_args(name, args, {});
  if (name == "copy") return value(std::make_shared<dict_object>(d));
  std::vector<value> out;
  for (const auto& [k, v] : d.entries) {
    if (name == "keys") {
      out.push_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else {
      out.push_back(value::tuple({k, v}));
    }
  }
  return value::list(std::move(out), seq_flavor::view, name == "keys" ? "dict_keys" : name == "values" ? "dict_values" : "dict_items");
}

value list_method(const std::string& name, const value& self, call_args& args) {
  const auto& items = self.as_list().items;
  if (name == "copy") {
    bind_args("copy", args, {});
    return value::list(items, self.as_list().flavor);
  }
  auto a = bind_args(name, args, {{"value", value(), true}});
  if (name == "count") return static_cast<int64_t>(std::count_if(items.begin(), items.end(), [&](const value& x) { return equals(x, a[0]); }));
  for (size_t i = 0; i < items.size(); ++i)
    if (equals(items[i], a[0])) return static_cast<int64_t>(i);
  throw template_error(repr(a[0]) + " is not in " + type_name(self));
}

value bound(const value& self, const std::string& name, value (*fn)(const std::string&, const value&, call_args&)) {
  return value::function(name, [self, name, fn](interpreter&, call_args& args) { return fn(name, self, args); });
}

value unsafe(const value& obj, const std::string& name) {
  return value::undefined("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.");
}

} // namespace

std::optional<value> python_attribute(const value& obj, const std::string& name) {
  switch (obj.kind()) {
  case value_kind::string:
    if (!is_str_method(name)) return std::nullopt;
    return value::function(name, [obj, name](interpreter& in, call_args& args) { return str_method(in, name, obj, args); });
  case value_kind::dict:
    if (name == "get" || name == "keys" || name == "values" || name == "items" || name == "copy")
      return bound(obj, name, dict_method);
    if (name == "clear" || name == "pop" || name == "popitem" || name == "setdefault" || name == "update")
      return unsafe(obj, name);
    return std::nullopt;
  case value_kind::list: {
    seq_flavor f = obj.as_list().flavor;
    if (f != seq_flavor::list && f != seq_flavor::tuple) return std::nullopt;
    if (name == "count" || name == "index" || (f == seq_flavor::list && name == "copy")) return bound(obj, name, list_method);
    if (f == seq_flavor::list && (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
                                  name == "remove" || name == "reverse" || name == "sort" || name == "clear"))
      return unsafe(obj, name);
    return std::nullopt;
  }
  case value_kind::namespace_:
    if (const value* v = obj.as_namespace().attrs.find_name(name)) return *v;
    return std::nullopt;
  default: return std::nullopt;
  }
}

// --- str.format and format() ---------------------------------------------------------------------

namespace {

struct spec_parts {
  char32_t fill = ' ';
  char align = 0;
  char sign = '-';
  bool alternate = false;
  int64_t width = -1;
  char grouping = 0;
  int64_t precision = -1;
  char type = 0;
};

spec_parts parse_spec(const std::string& spec) {
  spec_parts p;
  auto cps = text::code_points(spec);
  size_t i = 0, n = cps.size();
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '=' || c == '^'; };
  if (n >= 2 && is_align(cps[1])) {
    p.fill = cps[0];
    p.align = static_cast<char>(cps[1]);
    i = 2;
  } else if (n >= 1 && is_align(cps[0])) {
    p.align = static_cast<char>(cps[0]);
    i = 1;
  }
  if (i < n && (cps[i] == '+' || cps[i] == '-' || cps[i] == ' ')) p.sign = static_cast<char>(cps[i++]);
  if (i < n && cps[i] == '#') {
    p.alternate = true;
    ++i;
  }
  if (i < n && cps[i] == '0') {
    if (!p.align) {
      p.fill = '0';
      p.align = '=';
    }
    ++i;
  }
  auto read_int = [&]() {
    int64_t v = 0;
    bool any = false;
    while (i < n && cps[i] >= '0' && cps[i] <= '9') {
      v = v * 10 + (cps[i++] - '0');
      any = true;
    }
    return any ? v : -1;
  };
  p.width = read_int();
  if (i < n && (cps[i] == ',' || cps[i] == '_')) p.grouping = static_cast<char>(cps[i++]);
  if (i < n && cps[i] == '.') {
    ++i;
    p.precision = read_int();
    if (p.precision < 0) throw template_error("Format specifier missing precision");
  }
  if (i < n) p.type = static_cast<char>(cps[i++]);
  if (i < n) throw template_error("Invalid format specifier '" + spec + "'");
  return p;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out += sep;
    out += digits[i];
  }
  return out;
}

std::string apply_padding(std::string sign, std::string body, const spec_parts& p, char default_align) {
  char align = p.align ? p.align : default_align;
  auto len = static_cast<int64_t>(text::code_point_count(sign) + text::code_point_count(body));
  if (p.width <= len) return sign + body;
  std::string fill;
  for (int64_t k = 0; k < p.width - len; ++k) text::append_utf8(fill, p.fill);
  if (align == '=') return sign + fill + body;
  if (align == '<') return sign + body + fill;
  if (align == '>') return fill + sign + body;
  std::string left, right;
  int64_t total = p.width - len;
  for (int64_t k = 0; k < total / 2; ++k) text::append_utf8(left, p.fill);
  for (int64_t k = total / 2; k < total; ++k) text::append_utf8(right, p.fill);
  return left + sign + body + right;
}

std::string float_body(double x, const spec_parts& p) {
  char type = p.type;
  int64_t prec = p.precision;
  if (std::isinf(x)) return (type >= 'A' && type <= 'Z') ? "INF" : "inf";
  if (std::isnan(x)) return (type >= 'A' && type <= 'Z') ? "NAN" : "nan";
  char buf[512];
  if (type == 0 && prec < 0) {
    std::string r = float_repr(x);
    return r;
  }
  if (type == '%') {
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec < 0 ? 6 : prec), x * 100);
    return std::string(buf) + "%";
  }
  char conv = type == 0 ? 'g' : type == 'n' ? 'g' : type;
  std::string fmt = std::string("%") + (p.alternate ? "#" : "") + ".*" + conv;
  std::snprintf(buf, sizeof buf, fmt.c_str(), static_cast<int>(prec < 0 ? 6 : prec), x);
  std::string out = buf;
  if (type == 0 && out.find_first_of(".eEn") == std::string::npos) out += ".0";
  return out;
}

} // namespace

std::string format_spec(const value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v);
  spec_parts p = parse_spec(spec);
  if (v.is_string() || (!v.is_number())) {
    if (!v.is_string()) throw template_error("unsupported format string passed to " + type_name(v) + ".__format__");
    if (p.type && p.type != 's') throw template_error(std::string("Unknown format code '") + p.type + "' for object of type 'str'");
    std::string s = v.as_string();
    if (p.precision >= 0) s = text::slice(s, 0, p.precision, 1);
    return apply_padding("", s, p, '<');
  }
  bool is_float_type = p.type == 'f' || p.type == 'F' || p.type == 'e' || p.type == 'E' || p.type == 'g' ||
                       p.type == 'G' || p.type == '%';
  if (v.is_float() || is_float_type) {
    if (!v.is_float() && p.type == 0) p.type = 'd';
    if (p.type == 'd' && v.is_float()) throw template_error("Unknown format code 'd' for object of type 'float'");
    if (p.type != 'd') {
      double x = v.as_number();
      std::string body = float_body(std::fabs(x), p);
      if (p.grouping) {
        size_t dot = body.find_first_of(".eE%");
        body = group_digits(body.substr(0, dot), p.grouping) + (dot == std::string::npos ? "" : body.substr(dot));
      }
      std::string sign = std::signbit(x) ? "-" : p.sign == '+' ? "+" : p.sign == ' ' ? " " : "";
      return apply_padding(sign, body, p, '>');
    }
  }
  int64_t x = v.as_integer();
  uint64_t mag = x < 0 ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
  std::string body;
  char buf[80];
  switch (p.type) {
  case 0: case 'd': case 'n': std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(mag)); break;
  case 'x': std::snprintf(buf, sizeof buf, p.alternate ? "0x%llx" : "%llx", static_cast<unsigned long long>(mag)); break;
  case 'X': std::snprintf(buf, sizeof buf, p.alternate ? "0X%llX" : "%llX", static_cast<unsigned long long>(mag)); break;
  case 'o': std::snprintf(buf, sizeof buf, p.alternate ? "0o%llo" : "%llo", static_cast<unsigned long long>(mag)); break;
  case 'b': {
    std::string bits;
    for (uint64_t m = mag; m; m >>= 1) bits.insert(bits.begin(), static_cast<char>('0' + (m & 1)));
    std::snprintf(buf, sizeof buf, "%s%s", p.alternate ? "0b" : "", bits.empty() ? "0" : bits.c_str());
    break;
  }
  case 'c': {
    std::string c;
    text::append_utf8(c, static_cast<char32_t>(x));
    return apply_padding("", c, p, '<');
  }
  default: throw template_error(std::string("Unknown format code '") + p.type + "' for object of type '" + type_name(v) + "'");
  }
  body = buf;
  if (p.grouping && (p.type == 0 || p.type == 'd')) body = group_digits(body, p.grouping);
  if (v.is_bool() && p.type == 0) return apply_padding("", to_str(v), p, '<');
  std::string sign = x < 0 ? "-" : p.sign == '+' ? "+" : p.sign == ' ' ? " " : "";
  return apply_padding(sign, body, p, '>');
}

std::string python_format(interpreter& in, const std::string& format, const call_args& args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false, used_manual = false;
  for (size_t i = 0; i < format.size();) {
    char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        i += 2;
        continue;
      }
      throw template_error("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      i += 2;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string::npos) throw template_error("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close + 1;
    std::string spec, conversion;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = field.substr(bang + 1);
      field = field.substr(0, bang);
    }
    size_t name_end = field.find_first_of(".[");
    std::string head = field.substr(0, name_end);
    value v;
    if (head.empty() || std::all_of(head.begin(), head.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      size_t index;
      if (head.empty()) {
        if (used_manual) throw template_error("cannot switch from manual field specification to automatic field numbering");
        used_auto = true;
        index = auto_index++;
      } else {
        if (used_auto) throw template_error("cannot switch from automatic field numbering to manual field specification");
        used_manual = true;
        index = std::stoul(head);
      }
      if (index >= args.positional.size()) throw template_error("Replacement index " + std::to_string(index) + " out of range for positional args tuple");
      v = args.positional[index];
    } else {
      auto it = std::find_if(args.keyword.begin(), args.keyword.end(), [&](const auto& kv) { return kv.first == head; });
      if (it == args.keyword.end()) throw template_error("'" + head + "'");
      v = it->second;
    }
    // .attr and [key] parts, through the sandbox's attribute lookup.
    for (size_t p = name_end; p != std::string::npos && p < field.size();) {
      if (field[p] == '.') {
        size_t e = field.find_first_of(".[", p + 1);
        v = in.getattr(v, field.substr(p + 1, e == std::string::npos ? std::string::npos : e - p - 1));
        p = e;
      } else {
        size_t e = field.find(']', p);
        if (e == std::string::npos) throw template_error("Missing ']' in format string");
        std::string key = field.substr(p + 1, e - p - 1);
        bool numeric = !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        v = in.getitem(v, numeric ? value(static_cast<int64_t>(std::stoll(key))) : value(key));
        p = e + 1;
      }
    }
    if (conversion == "r" || conversion == "a") {
      v = value(repr(v));
    } else if (conversion == "s") {
      v = value(to_str(v));
    } else if (!conversion.empty()) {
      throw template_error("Unknown conversion specifier " + conversion);
    }
    out += format_spec(v, spec);
  }
  return out;
}

std::string percent_format(const std::string& fmt, const value& args) {
  std::vector<value> items;
  const dict_object* mapping = nullptr;
  if (args.is_list() && args.as_list().flavor == seq_flavor::tuple) {
    items = args.as_list().items;
  } else if (args.is_dict()) {
    mapping = &args.as_dict();
  } else {
    items.push_back(args);
  }
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw template_error("incomplete format");
    value v;
    bool have_value = false;
    if (fmt[i] == '(') {
      size_t close = fmt.find(')', i);
      if (close == std::string::npos || !mapping) throw template_error("format requires a mapping");
      std::string key = fmt.substr(i + 1, close - i - 1);
      const value* found = mapping->find_name(key);
      if (!found) throw template_error("'" + key + "'");
      v = *found;
      have_value = true;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) flags += fmt[i++];
    std::string width, precision;
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) width += fmt[i++];
    if (i < fmt.size() && fmt[i] == '.') {
      precision = ".";
      ++i;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) precision += fmt[i++];
    }
    if (i >= fmt.size()) throw template_error("incomplete format");
    char type = fmt[i];
    if (type == '%') {
      out += '%';
      continue;
    }
    if (!have_value) {
      if (mapping) {
        v = args;
      } else {
        if (next >= items.size()) throw template_error("not enough arguments for format string");
        v = items[next++];
      }
    }
    std::string spec = "%" + flags + width + precision;
    char buf[512];
    switch (type) {
    case 's': case 'r': case 'a': {
      std::string s = type == 's' ? to_str(v) : repr(v);
      if (precision.size() > 1) s = text::slice(s, 0, std::stoll(precision.substr(1)), 1);
      int64_t w = width.empty() ? 0 : std::stoll(width);
      auto len = static_cast<int64_t>(text::code_point_count(s));
      if (w > len) {
        std::string padding(static_cast<size_t>(w - len), ' ');
        s = flags.find('-') != std::string::npos ? s + padding : padding + s;
      }
      out += s;
      break;
    }
    case 'd': case 'i': case 'u': {
      if (!v.is_number()) throw template_error("%" + std::string(1, type) + " format: a real number is required, not " + type_name(v));
      long long n = v.is_float() ? static_cast<long long>(std::trunc(v.as_float())) : v.as_integer();
      std::snprintf(buf, sizeof buf, (spec + "lld").c_str(), n);
      out += buf;
      break;
    }
    case 'x': case 'X': case 'o': {
      if (!v.is_int() && !v.is_bool()) throw template_error("%" + std::string(1, type) + " format: an integer is required, not " + type_name(v));
      std::snprintf(buf, sizeof buf, (spec + "ll" + type).c_str(), v.as_integer());
      out += buf;
      break;
    }
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
      if (!v.is_number()) throw template_error("must be real number, not " + type_name(v));
      std::snprintf(buf, sizeof buf, (spec + type).c_str(), v.as_number());
      out += buf;
      break;
    }
    case 'c': {
      if (v.is_string()) {
        out += v.as_string();
      } else {
        text::append_utf8(out, static_cast<char32_t>(v.as_integer()));
      }
      break;
    }
    default: throw template_error(std::string("unsupported format character '") + type + "'");
    }
  }
  // Python treats any subscriptable non-tuple (a list too) like a mapping here: nothing is left over.
  if (!mapping && !args.is_list() && next < items.size())
    throw template_error("not all arguments converted during string formatting");
  if (!mapping && args.is_list() && args.as_list().flavor == seq_flavor::tuple && next < items.size())
    throw template_error("not all arguments converted during string formatting");
  return out;
}

} // namespace troupe::jinja
