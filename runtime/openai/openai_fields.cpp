#include "runtime/openai/openai_fields.hpp"

#include <charconv>
#include <cmath>
#include <limits>

#include "runtime/openai/python_repr.hpp"

namespace troupe::openai_detail {

namespace {

constexpr int64_t max_input_chars = 200;

std::string ascii_strip_lower(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out(s.substr(b, e - b));
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int64_t saturate(double d) {
  if (d >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
  if (d <= -9.2233720368547758e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(d);
}

// Python's float() of a string: optional sign, decimal digits with '.', exponent, inf/infinity/nan.
std::optional<double> parse_float_text(std::string_view text) {
  std::string s = ascii_strip_lower(text);
  if (s.empty()) return std::nullopt;
  std::string_view body = s;
  bool negative = false;
  if (body.front() == '+' || body.front() == '-') {
    negative = body.front() == '-';
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity")
    return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (body == "nan") return std::numeric_limits<double>::quiet_NaN();
  bool digits = false;
  for (char c : body) {
    if (std::isdigit(static_cast<unsigned char>(c))) digits = true;
    else if (c != '.' && c != 'e' && c != '+' && c != '-') return std::nullopt;
  }
  if (!digits) return std::nullopt;
  double d = 0;
  auto r = std::from_chars(body.data(), body.data() + body.size(), d);
  if (r.ptr != body.data() + body.size()) return std::nullopt;
  if (r.ec == std::errc::result_out_of_range) d = body.find("e-") != std::string_view::npos ? 0.0 : INFINITY;
  else if (r.ec != std::errc()) return std::nullopt;
  return negative ? -d : d;
}

std::optional<int64_t> parse_int_text(std::string_view text) {
  std::string s = ascii_strip_lower(text);
  std::string_view body = s;
  if (!body.empty() && body.front() == '+') body.remove_prefix(1);
  if (body.empty()) return std::nullopt;
  int64_t v = 0;
  auto r = std::from_chars(body.data(), body.data() + body.size(), v);
  if (r.ptr != body.data() + body.size()) return std::nullopt;
  if (r.ec == std::errc::result_out_of_range)
    return body.front() == '-' ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  if (r.ec != std::errc()) return std::nullopt;
  return v;
}

} // namespace

loc_path operator+(loc_path loc, std::string_view segment) {
  loc.emplace_back(segment);
  return loc;
}

loc_path operator+(loc_path loc, size_t index) {
  loc.push_back(std::to_string(index));
  return loc;
}

std::string summarize_input(const pjson& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (python_len(s) > max_input_chars) return std::string(python_prefix(s, max_input_chars)) + "...[truncated]";
    return s;
  }
  if (v.is_array()) return "<list of " + std::to_string(v.size()) + " items>";
  if (v.is_object()) return "<dict of " + std::to_string(v.size()) + " items>";
  std::string text = python_str(v);
  if (python_len(text) > max_input_chars) return std::string(python_prefix(text, max_input_chars)) + "...[truncated]";
  return text;
}

void issue_list::add(std::string type, loc_path loc, std::string msg, const pjson& input, std::string ctx) {
  validation_issue issue;
  issue.type = std::move(type);
  issue.loc = std::move(loc);
  issue.msg = std::move(msg);
  issue.input = summarize_input(input);
  issue.ctx = std::move(ctx);
  issues_.push_back(std::move(issue));
}

void issue_list::append(const issue_list& other) {
  issues_.insert(issues_.end(), other.issues_.begin(), other.issues_.end());
}

validation_issue model_validator_error(std::string_view message, std::optional<std::string> parameter,
                                       std::optional<std::string> value_str, const pjson& body, loc_path loc) {
  std::string text(message);
  std::string extras;
  if (parameter) extras = "parameter=" + *parameter;
  if (value_str) extras += (extras.empty() ? "" : ", ") + ("value=" + *value_str);
  if (!extras.empty()) text += " (" + extras + ")";
  validation_issue issue;
  issue.type = "value_error";
  issue.loc = std::move(loc);
  issue.msg = "Value error, " + text;
  issue.input = summarize_input(body);
  // repr(VLLMValidationError(message)): the exception's only argument is the bare message.
  issue.ctx = "{'error': VLLMValidationError(" + python_str_repr(message) + ")}";
  issue.from_vllm_error = true;
  issue.vllm_parameter = std::move(parameter);
  return issue;
}

bool strict_int(const pjson& v) { return v.is_number_integer(); }

std::optional<int64_t> to_int(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                         : static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d)) {
      issues.add("finite_number", loc, "Input should be a finite number", v);
      return std::nullopt;
    }
    if (d != std::floor(d)) {
      issues.add("int_from_float", loc, "Input should be a valid integer, got a number with a fractional part", v);
      return std::nullopt;
    }
    return saturate(d);
  }
  if (v.is_string()) {
    if (auto parsed = parse_int_text(v.get_ref<const std::string&>())) return parsed;
    issues.add("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", v);
    return std::nullopt;
  }
  issues.add("int_type", loc, "Input should be a valid integer", v);
  return std::nullopt;
}

std::optional<double> to_float(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_number_float()) return v.get<double>();
  if (v.is_number_unsigned()) return static_cast<double>(v.get<uint64_t>());
  if (v.is_number_integer()) return static_cast<double>(v.get<int64_t>());
  if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
  if (v.is_string()) {
    if (auto parsed = parse_float_text(v.get_ref<const std::string&>())) return parsed;
    issues.add("float_parsing", loc, "Input should be a valid number, unable to parse string as a number", v);
    return std::nullopt;
  }
  issues.add("float_type", loc, "Input should be a valid number", v);
  return std::nullopt;
}

std::optional<bool> to_bool(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) {
    double d = v.get<double>();
    if (d == 0) return false;
    if (d == 1) return true;
    issues.add("bool_parsing", loc, "Input should be a valid boolean, unable to interpret input", v);
    return std::nullopt;
  }
  if (v.is_string()) {
    std::string s = ascii_strip_lower(v.get_ref<const std::string&>());
    if (s == "0" || s == "off" || s == "f" || s == "false" || s == "n" || s == "no") return false;
    if (s == "1" || s == "on" || s == "t" || s == "true" || s == "y" || s == "yes") return true;
    issues.add("bool_parsing", loc, "Input should be a valid boolean, unable to interpret input", v);
    return std::nullopt;
  }
  issues.add("bool_type", loc, "Input should be a valid boolean", v);
  return std::nullopt;
}

std::optional<std::string> to_str(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_string()) return v.get<std::string>();
  issues.add("string_type", loc, "Input should be a valid string", v);
  return std::nullopt;
}

bool is_list(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_array()) return true;
  issues.add("list_type", loc, "Input should be a valid list", v);
  return false;
}

bool is_dict(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_object()) return true;
  issues.add("dict_type", loc, "Input should be a valid dictionary", v);
  return false;
}

bool is_model(const pjson& v, const loc_path& loc, issue_list& issues) {
  if (v.is_object()) return true;
  issues.add("model_attributes_type", loc, "Input should be a valid dictionary or object to extract fields from", v);
  return false;
}

const pjson* object_fields::find(std::string_view key) const {
  auto it = object_.find(std::string(key));
  return it == object_.end() ? nullptr : &*it;
}

bool object_fields::has_value(std::string_view key) const {
  const pjson* v = find(key);
  return v && !v->is_null();
}

std::optional<int64_t> object_fields::opt_int(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  return to_int(*v, loc(key), issues_);
}

std::optional<double> object_fields::opt_float(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  return to_float(*v, loc(key), issues_);
}

std::optional<bool> object_fields::opt_bool(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  return to_bool(*v, loc(key), issues_);
}

std::optional<std::string> object_fields::opt_str(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  return to_str(*v, loc(key), issues_);
}

int64_t object_fields::int_or(std::string_view key, int64_t fallback) {
  const pjson* v = find(key);
  if (!v) return fallback;
  return to_int(*v, loc(key), issues_).value_or(fallback);
}

double object_fields::float_or(std::string_view key, double fallback) {
  const pjson* v = find(key);
  if (!v) return fallback;
  return to_float(*v, loc(key), issues_).value_or(fallback);
}

bool object_fields::bool_or(std::string_view key, bool fallback) {
  const pjson* v = find(key);
  if (!v) return fallback;
  return to_bool(*v, loc(key), issues_).value_or(fallback);
}

const pjson* object_fields::required(std::string_view key) {
  const pjson* v = find(key);
  if (!v) issues_.add("missing", loc(key), "Field required", object_);
  return v;
}

std::optional<std::string> object_fields::required_str(std::string_view key) {
  const pjson* v = required(key);
  if (!v) return std::nullopt;
  return to_str(*v, loc(key), issues_);
}

std::optional<int64_t> object_fields::opt_int_bounded(std::string_view key, std::optional<int64_t> ge,
                                                      std::optional<int64_t> le) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  // A JSON integer past int64 is out of range even though int64 saturates it.
  if (v->is_number_unsigned() && le && v->get<uint64_t>() > static_cast<uint64_t>(*le)) {
    issues_.add("less_than_equal", loc(key), "Input should be less than or equal to " + std::to_string(*le), *v,
                "{'le': " + std::to_string(*le) + "}");
    return std::nullopt;
  }
  auto x = to_int(*v, loc(key), issues_);
  if (!x) return std::nullopt;
  if (ge && *x < *ge) {
    issues_.add("greater_than_equal", loc(key), "Input should be greater than or equal to " + std::to_string(*ge), *v,
                "{'ge': " + std::to_string(*ge) + "}");
    return std::nullopt;
  }
  if (le && *x > *le) {
    issues_.add("less_than_equal", loc(key), "Input should be less than or equal to " + std::to_string(*le), *v,
                "{'le': " + std::to_string(*le) + "}");
    return std::nullopt;
  }
  return x;
}

std::optional<std::vector<int64_t>> object_fields::opt_int_list(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!is_list(*v, loc(key), issues_)) return std::nullopt;
  std::vector<int64_t> out;
  size_t before = issues_.size();
  for (size_t i = 0; i < v->size(); ++i)
    if (auto x = to_int((*v)[i], loc(key) + i, issues_)) out.push_back(*x);
  if (issues_.size() != before) return std::nullopt;
  return out;
}

std::optional<std::vector<std::string>> object_fields::opt_str_list(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!is_list(*v, loc(key), issues_)) return std::nullopt;
  std::vector<std::string> out;
  size_t before = issues_.size();
  for (size_t i = 0; i < v->size(); ++i)
    if (auto x = to_str((*v)[i], loc(key) + i, issues_)) out.push_back(*x);
  if (issues_.size() != before) return std::nullopt;
  return out;
}

std::optional<std::vector<std::string>> object_fields::opt_str_or_str_list(std::string_view key,
                                                                          std::optional<size_t> max_items) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (v->is_string()) return std::vector<std::string>{v->get<std::string>()};
  if (v->is_array() && max_items && v->size() > *max_items) {
    // pydantic-core counts items as it validates them and stops at the first past max_length,
    // reporting the list's whole length; the items' own errors are dropped.
    const std::string max = std::to_string(*max_items), actual = std::to_string(v->size());
    issues_.add("string_type", loc(key) + "str", "Input should be a valid string", *v);
    issues_.add("too_long", loc(key) + "list[str]",
                "List should have at most " + max + " item" + (*max_items == 1 ? "" : "s") +
                    " after validation, not " + actual,
                *v, "{'field_type': 'List', 'max_length': " + max + ", 'actual_length': " + actual + "}");
    return std::nullopt;
  }
  if (v->is_array()) {
    bool all_strings = true;
    for (const auto& item : *v) all_strings = all_strings && item.is_string();
    if (all_strings) {
      std::vector<std::string> out;
      for (const auto& item : *v) out.push_back(item.get<std::string>());
      return out;
    }
  }
  // Both union members fail: pydantic lists the str member's error, then the list member's.
  issues_.add("string_type", loc(key) + "str", "Input should be a valid string", *v);
  if (!v->is_array()) {
    issues_.add("list_type", loc(key) + "list[str]", "Input should be a valid list", *v);
  } else {
    for (size_t i = 0; i < v->size(); ++i)
      if (!(*v)[i].is_string())
        issues_.add("string_type", loc(key) + "list[str]" + i, "Input should be a valid string", (*v)[i]);
  }
  return std::nullopt;
}

std::optional<std::vector<std::pair<std::string, double>>> object_fields::opt_str_float_dict(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!is_dict(*v, loc(key), issues_)) return std::nullopt;
  std::vector<std::pair<std::string, double>> out;
  size_t before = issues_.size();
  for (const auto& [k, item] : v->items())
    if (auto x = to_float(item, loc(key) + k, issues_)) out.emplace_back(k, *x);
  if (issues_.size() != before) return std::nullopt;
  return out;
}

std::optional<std::string> object_fields::opt_dict_json(std::string_view key) {
  const pjson* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!is_dict(*v, loc(key), issues_)) return std::nullopt;
  return dump_json(*v);
}

checked_body decode_body(std::string_view body) {
  checked_body out;
  if (body.empty()) {
    // FastAPI reads no JSON from an empty body: the required body is missing.
    issue_list issues;
    issues.add("missing", {"body"}, "Field required", pjson(nullptr));
    out.error = validation_error(issues.all());
    return out;
  }
  python_json_result parsed = parse_python_json(body);
  if (parsed.error) {
    if (parsed.error->unparsable) {
      out.error = body_parse_error();
      return out;
    }
    issue_list issues;
    issues.add("json_invalid", {"body", std::to_string(parsed.error->position)}, "JSON decode error",
               pjson::object(), "{'error': " + python_str_repr(parsed.error->message) + "}");
    out.error = validation_error(issues.all());
    return out;
  }
  if (parsed.value.is_null()) {
    // FastAPI treats a JSON null body like no body.
    issue_list issues;
    issues.add("missing", {"body"}, "Field required", parsed.value);
    out.error = validation_error(issues.all());
    return out;
  }
  if (!parsed.value.is_object()) {
    issue_list issues;
    is_model(parsed.value, {"body"}, issues);
    out.error = validation_error(issues.all());
    return out;
  }
  out.value = std::move(parsed.value);
  return out;
}

std::string dump_json(const pjson& v) { return v.dump(-1, ' ', false, pjson::error_handler_t::replace); }

std::optional<api_error> check_num_sequences(const pjson* raw, int64_t n, int64_t num_prompts,
                                             const openai_server_config& server) {
  const int64_t max = server.max_n_sequences;
  if (n > max) {
    // int64 saturates what Python keeps whole: report the number the client sent.
    std::string got = std::to_string(n);
    if (raw && raw->is_number_float()) got = python_int_of_float(raw->get<double>());
    else if (raw && raw->is_number_unsigned()) got = std::to_string(raw->get<uint64_t>());
    return bad_request("n must be at most " + std::to_string(max) + ", got " + got +
                           ". Ask for fewer choices per prompt.",
                       "n");
  }
  if (n * num_prompts > max)  // no overflow: n <= max here, and num_prompts is bounded by the body
    return bad_request("n × the number of prompts must be at most " + std::to_string(max) + ", got " +
                           std::to_string(n) + " × " + std::to_string(num_prompts) + " = " +
                           std::to_string(n * num_prompts) + ". Send fewer prompts per request or a smaller n.",
                       "n");
  return std::nullopt;
}

} // namespace troupe::openai_detail
