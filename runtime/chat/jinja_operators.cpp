// Python's arithmetic and ordering on template values, with the TypeError and ZeroDivisionError texts
// Python gives (transformers passes them on as the template's error).

#include "runtime/chat/jinja_interpreter.hpp"

#include "runtime/chat/jinja_methods.hpp"

#include <cmath>

namespace troupe::jinja {
namespace {

const char* symbol(binary_op op) {
  switch (op) {
  case binary_op::add: return "+";
  case binary_op::sub: return "-";
  case binary_op::mul: return "*";
  case binary_op::div: return "/";
  case binary_op::floordiv: return "//";
  case binary_op::mod: return "%";
  case binary_op::pow: return "** or pow()";
  }
  return "?";
}

[[noreturn]] void unsupported(binary_op op, const value& a, const value& b) {
  throw template_error(std::string("unsupported operand type(s) for ") + symbol(op) + ": '" + type_name(a) + "' and '" +
                       type_name(b) + "'");
}

[[noreturn]] void overflow() { throw template_error("integer result too large for this renderer"); }

value repeat(const value& seq, int64_t times) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < times; ++k) out += seq.as_string();
    return value(std::move(out));
  }
  std::vector<value> out;
  for (int64_t k = 0; k < times; ++k)
    out.insert(out.end(), seq.as_list().items.begin(), seq.as_list().items.end());
  return value::list(std::move(out), seq.as_list().flavor);
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

double float_mod(double a, double b) {
  double r = std::fmod(a, b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  if (r == 0) r = std::copysign(0.0, b);
  return r;
}

// CPython's float divmod: the quotient rounded so that x == q * y + (x % y).
double float_floor_div(double x, double y) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0 && ((y < 0) != (mod < 0))) div -= 1.0;
  if (div == 0) return std::copysign(0.0, x / y);
  double floordiv = std::floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

value numeric(binary_op op, const value& a, const value& b) {
  bool floating = a.is_float() || b.is_float();
  if (op == binary_op::div) {
    if (b.as_number() == 0) throw template_error(floating ? "float division by zero" : "division by zero");
    return a.as_number() / b.as_number();
  }
  if (floating) {
    double x = a.as_number(), y = b.as_number();
    switch (op) {
    case binary_op::add: return x + y;
    case binary_op::sub: return x - y;
    case binary_op::mul: return x * y;
    case binary_op::floordiv:
      if (y == 0) throw template_error("float floor division by zero");
      return float_floor_div(x, y);
    case binary_op::mod:
      if (y == 0) throw template_error("float modulo by zero");
      return float_mod(x, y);
    case binary_op::pow:
      if (x == 0 && y < 0) throw template_error("zero to a negative power");
      return std::pow(x, y);
    default: break;
    }
  }
  int64_t x = a.as_integer(), y = b.as_integer(), r = 0;
  switch (op) {
  case binary_op::add:
    if (__builtin_add_overflow(x, y, &r)) overflow();
    return r;
  case binary_op::sub:
    if (__builtin_sub_overflow(x, y, &r)) overflow();
    return r;
  case binary_op::mul:
    if (__builtin_mul_overflow(x, y, &r)) overflow();
    return r;
  case binary_op::floordiv:
    if (y == 0) throw template_error("integer division or modulo by zero");
    return floor_div(x, y);
  case binary_op::mod:
    if (y == 0) throw template_error("integer modulo by zero");
    return floor_mod(x, y);
  case binary_op::pow: {
    if (y < 0) {
      if (x == 0) throw template_error("zero to a negative power");
      return std::pow(static_cast<double>(x), static_cast<double>(y));
    }
    int64_t result = 1;
    for (int64_t k = 0; k < y; ++k)
      if (__builtin_mul_overflow(result, x, &result)) overflow();
    return result;
  }
  default: break;
  }
  return value();
}

// Three-way comparison of comparable values; nullopt when Python has no ordering for the pair.
std::optional<int> three_way(const value& a, const value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_number(), y = b.as_number();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    int64_t x = a.as_integer(), y = b.as_integer();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_sequence_list() && b.is_sequence_list() && a.as_list().flavor == b.as_list().flavor) {
    const auto &x = a.as_list().items, &y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return three_way(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return std::nullopt;
}

} // namespace

value binary_operation(binary_op op, const value& a, const value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (a.is_number() && b.is_number()) return numeric(op, a, b);
  switch (op) {
  case binary_op::add:
    if (a.is_string() && b.is_string()) return a.as_string() + b.as_string();
    if (a.is_sequence_list() && b.is_sequence_list() && a.as_list().flavor == b.as_list().flavor) {
      std::vector<value> out = a.as_list().items;
      out.insert(out.end(), b.as_list().items.begin(), b.as_list().items.end());
      return value::list(std::move(out), a.as_list().flavor);
    }
    if (a.is_string() || a.is_sequence_list()) {
      throw template_error("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " +
                           type_name(a));
    }
    break;
  case binary_op::mul: {
    const value* seq = (a.is_string() || a.is_sequence_list()) ? &a : (b.is_string() || b.is_sequence_list()) ? &b : nullptr;
    const value& count = seq == &a ? b : a;
    if (seq && (count.is_int() || count.is_bool())) return repeat(*seq, std::max<int64_t>(0, count.as_integer()));
    if (seq) throw template_error("can't multiply sequence by non-int of type '" + type_name(count) + "'");
    break;
  }
  case binary_op::mod:
    if (a.is_string()) return value(percent_format(a.as_string(), b));
    break;
  default: break;
  }
  unsupported(op, a, b);
}

bool ordering(compare_op op, const value& a, const value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  auto c = three_way(a, b);
  const char* sym = op == compare_op::lt ? "<" : op == compare_op::le ? "<=" : op == compare_op::gt ? ">" : ">=";
  if (!c) {
    throw template_error(std::string("'") + sym + "' not supported between instances of '" + type_name(a) + "' and '" +
                         type_name(b) + "'");
  }
  switch (op) {
  case compare_op::lt: return *c < 0;
  case compare_op::le: return *c <= 0;
  case compare_op::gt: return *c > 0;
  default: return *c >= 0;
  }
}

} // namespace troupe::jinja
