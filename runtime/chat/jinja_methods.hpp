#pragma once
// The Python methods templates call on values ('a,b'.split(','), message.get('content'),
// d.items()) and Python's string formatting.

#include "runtime/chat/jinja_value.hpp"

#include <optional>
#include <string>

namespace troupe::jinja {

// The Python attribute name of obj: a bound method of str, dict or list, or a namespace attribute;
// nullopt when Python has none. Methods that modify a list or dict give an undefined that fails with
// jinja2's "access to attribute ... is unsafe" (transformers renders in the immutable sandbox).
std::optional<value> python_attribute(const value& obj, const std::string& name);

// str.format(*args, **kwargs) as jinja2's sandboxed formatter does it.
std::string python_format(interpreter& in, const std::string& format, const call_args& args);

// fmt % args (printf style: %s %r %d %i %f %e %g %x %o %c %%); args a tuple, a dict or one value.
std::string percent_format(const std::string& fmt, const value& args);

// Python's format(v, spec) for the spec mini-language ([[fill]align][sign][0][width][,][.precision][type]).
std::string format_spec(const value& v, const std::string& spec);

} // namespace troupe::jinja
