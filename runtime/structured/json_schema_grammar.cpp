// response_format json_schema / guided_json: a JSON schema becomes a grammar of the JSON texts it accepts,
// as xgrammar's json_schema_converter does. Properties come in the schema's order; optional ones may be
// left out. Objects with declared properties take no others unless additionalProperties says so (strict,
// as OpenAI's structured outputs and xgrammar's default); an object schema without properties takes any.
// A keyword that constrains values but that this converter cannot honour is refused by name. The text may
// start with whitespace (bounded, as between tokens): SentencePiece models like to begin with "▁{".

#include "runtime/structured/grammar_front_ends.hpp"
#include "runtime/structured/grammar_limits.hpp"
#include "runtime/structured/json_rules.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

namespace troupe::structured {
namespace {

using json = nlohmann::ordered_json;

const std::set<std::string, std::less<>> unsupported_keywords = {
    "patternProperties", "not", "if", "then", "else", "dependentSchemas", "dependentRequired", "dependencies",
    "propertyNames", "minProperties", "maxProperties", "contains", "minContains", "maxContains", "uniqueItems",
    "multipleOf", "unevaluatedItems", "additionalItems", "$dynamicRef", "$recursiveRef"};

// Full-match patterns for the formats people use; other formats are annotations and are not checked.
const std::map<std::string, std::string, std::less<>> format_patterns = {
    {"date", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))"},
    {"time", R"(([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)"},
    {"date-time", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
    {"email", R"([A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(\.[A-Za-z0-9\-]{1,63}){1,4})"},
    {"uuid", R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"},
    {"ipv4", R"(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"},
};

class schema_converter {
public:
  explicit schema_converter(json root) : root_(std::move(root)), json_(g_) { g_.what = "json_schema"; }

  grammar convert() {
    g_.root = g_.rule("root");
    g_.set_body(g_.root, g_.sequence({json_.ws(), visit(root_, "")}));
    return std::move(g_);
  }

private:
  [[noreturn]] static void fail(const std::string& message, std::string_view path) {
    throw std::invalid_argument("json_schema: " + message + (path.empty() ? "" : " (at " + std::string(path) + ")"));
  }

  int32_t visit(const json& schema, const std::string& path) {
    // The converter recurses through subschemas and '$ref's: bounded, so is its stack.
    struct depth_guard {
      int& depth;
      ~depth_guard() { --depth; }
    } guard{++depth_};
    if (depth_ > limits::max_nesting_depth)
      fail("the schema nests deeper than " + std::to_string(limits::max_nesting_depth) +
               " levels (limit; each '$ref' followed counts as one)", path);
    if (schema.is_boolean()) {
      if (!schema.get<bool>()) fail("the schema 'false' accepts nothing", path);
      return json_.value();
    }
    if (!schema.is_object()) fail("a schema must be an object or a boolean", path);
    for (const auto& [key, value] : schema.items()) {
      if (unsupported_keywords.contains(key)) fail("keyword '" + key + "' is not supported", path);
      if (key == "unevaluatedProperties" && !(value.is_boolean() && !value.get<bool>()))
        fail("keyword 'unevaluatedProperties' is supported only as false", path);
    }
    if (schema.contains("$ref")) return reference(schema.at("$ref"), path);
    if (schema.contains("const")) return g_.literal(schema.at("const").dump());
    if (schema.contains("enum")) {
      const json& values = schema.at("enum");
      if (!values.is_array() || values.empty()) fail("'enum' must be a non-empty list", path);
      std::vector<std::string> texts;
      for (const json& v : values) texts.push_back(v.dump());
      return g_.literal_set(std::move(texts));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!schema.contains(key)) continue;
      const json& list = schema.at(key);
      if (!list.is_array() || list.empty()) fail(std::string("'") + key + "' must be a non-empty list", path);
      std::vector<int32_t> options;
      for (std::size_t i = 0; i < list.size(); ++i) options.push_back(visit(merged(schema, list[i], key), path + "/" + key + "/" + std::to_string(i)));
      return g_.choice(std::move(options));
    }
    if (schema.contains("allOf")) {
      const json& list = schema.at("allOf");
      if (!list.is_array() || list.size() != 1) fail("keyword 'allOf' is supported with exactly one schema", path);
      return visit(merged(schema, list[0], "allOf"), path + "/allOf/0");
    }
    if (schema.contains("type")) {
      const json& type = schema.at("type");
      if (type.is_string()) return typed(schema, type.get<std::string>(), path);
      if (!type.is_array() || type.empty()) fail("'type' must be a string or a non-empty list", path);
      std::vector<int32_t> options;
      for (const json& t : type) {
        if (!t.is_string()) fail("'type' must list strings", path);
        options.push_back(typed(schema, t.get<std::string>(), path));
      }
      return g_.choice(std::move(options));
    }
    // No type: the keywords say which it is; none of them, any value.
    for (const char* key : {"properties", "additionalProperties", "required"}) if (schema.contains(key)) return typed(schema, "object", path);
    for (const char* key : {"items", "prefixItems", "minItems", "maxItems"}) if (schema.contains(key)) return typed(schema, "array", path);
    for (const char* key : {"minLength", "maxLength", "pattern", "format"}) if (schema.contains(key)) return typed(schema, "string", path);
    for (const char* key : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) if (schema.contains(key)) return typed(schema, "number", path);
    return json_.value();
  }

  // The branch of an anyOf/oneOf/allOf with the parent's other keywords (e.g. a shared "type") added.
  static json merged(const json& parent, const json& branch, const char* combinator) {
    if (!branch.is_object()) return branch;
    json out = branch;
    for (const auto& [key, value] : parent.items()) {
      if (key != combinator && !out.contains(key) && key != "$defs" && key != "definitions") out[key] = value;
    }
    return out;
  }

  int32_t reference(const json& ref, const std::string& path) {
    if (!ref.is_string()) fail("'$ref' must be a string", path);
    const std::string target = ref.get<std::string>();
    if (const auto it = refs_.find(target); it != refs_.end()) return g_.ref(it->second);
    if (!target.starts_with("#")) fail("'$ref' to '" + target + "' is not supported (only references inside the schema, '#/...')", path);
    const json* node = &root_;
    try {
      if (target.size() > 1) node = &root_.at(json::json_pointer(target.substr(1)));
    } catch (const json::exception&) {
      fail("'$ref' to '" + target + "' points nowhere in the schema", path);
    }
    const int32_t rule = g_.new_rule(target);
    refs_.emplace(target, rule);
    g_.set_body(rule, visit(*node, target.substr(1)));
    return g_.ref(rule);
  }

  static std::optional<long long> integer_bound(const json& schema, const char* key, const std::string& path) {
    if (!schema.contains(key)) return std::nullopt;
    const json& v = schema.at(key);
    if (!v.is_number()) fail(std::string("'") + key + "' must be a number", path);
    const double d = v.get<double>();
    if (std::abs(d) > 1e16) return std::nullopt;
    return static_cast<long long>(std::string(key).find("inimum") != std::string::npos ? std::ceil(d) : std::floor(d));
  }

  int32_t typed(const json& schema, const std::string& type, const std::string& path) {
    if (type == "object") return object(schema, path);
    if (type == "array") return array(schema, path);
    if (type == "string") return string(schema, path);
    if (type == "boolean") return g_.choice({g_.literal("true"), g_.literal("false")});
    if (type == "null") return g_.literal("null");
    if (type == "integer") {
      std::optional<long long> lo = integer_bound(schema, "minimum", path), hi = integer_bound(schema, "maximum", path);
      if (auto x = integer_bound(schema, "exclusiveMinimum", path)) lo = std::max(lo.value_or(*x + 1), *x + 1);
      if (auto x = integer_bound(schema, "exclusiveMaximum", path)) hi = std::min(hi.value_or(*x - 1), *x - 1);
      try {
        return json_.integer_range(lo, hi);
      } catch (const std::invalid_argument& e) {
        fail(e.what(), path);
      }
    }
    if (type == "number") return number(schema, path);
    fail("type '" + type + "' is not supported", path);
  }

  // Numbers with bounds: none, a lower bound of 0, or integer bounds lo >= 0 and hi.
  int32_t number(const json& schema, const std::string& path) {
    if (schema.contains("exclusiveMinimum") || schema.contains("exclusiveMaximum"))
      fail("keywords 'exclusiveMinimum' and 'exclusiveMaximum' are supported on integers only", path);
    const bool has_min = schema.contains("minimum"), has_max = schema.contains("maximum");
    if (!has_min && !has_max) return json_.number();
    const auto bound = [&](const char* key) {
      const json& v = schema.at(key);
      if (!v.is_number()) fail(std::string("'") + key + "' must be a number", path);
      const double d = v.get<double>();
      if (d != std::floor(d) || d < 0 || d > 1e15)
        fail(std::string("keyword '") + key + "' on a number is supported only as a non-negative whole number", path);
      return static_cast<long long>(d);
    };
    const long long lo = has_min ? bound("minimum") : 0;
    if (!has_min) fail("keyword 'maximum' on a number is supported only together with 'minimum' >= 0", path);
    const int32_t digit = g_.byte_range('0', '9');
    const int32_t fraction = g_.sequence({g_.literal("."), g_.repeat(digit, 1, max_json_digits)});
    if (!has_max) return g_.sequence({json_.integer_range(lo, std::nullopt), g_.optional(fraction)});
    const long long hi = bound("maximum");
    if (hi < lo) fail("'maximum' is below 'minimum'", path);
    std::vector<int32_t> options;
    if (hi > lo) options.push_back(g_.sequence({json_.integer_range(lo, hi - 1), g_.optional(fraction)}));
    options.push_back(g_.sequence({json_.integer_range(hi, hi),
                                   g_.optional(g_.sequence({g_.literal("."), g_.repeat(g_.literal("0"), 1, max_json_digits)}))}));
    return g_.choice(std::move(options));
  }

  static std::optional<int32_t> count(const json& schema, const char* key, const std::string& path) {
    if (!schema.contains(key)) return std::nullopt;
    const json& v = schema.at(key);
    if (!v.is_number_integer() || v.get<long long>() < 0) fail(std::string("'") + key + "' must be a non-negative integer", path);
    if (v.get<long long>() > limits::max_repeat_count)
      fail(std::string("'") + key + "' above " + std::to_string(limits::max_repeat_count) + " (limit) is not supported", path);
    return static_cast<int32_t>(v.get<long long>());
  }

  int32_t string(const json& schema, const std::string& path) {
    const auto min = count(schema, "minLength", path), max = count(schema, "maxLength", path);
    std::string pattern;
    if (schema.contains("pattern")) {
      if (!schema.at("pattern").is_string()) fail("'pattern' must be a string", path);
      pattern = schema.at("pattern").get<std::string>();
    } else if (schema.contains("format") && schema.at("format").is_string()) {
      if (const auto it = format_patterns.find(schema.at("format").get<std::string>()); it != format_patterns.end()) pattern = it->second;
    }
    if (!pattern.empty()) {
      if (min || max) fail("'pattern' (or 'format') together with 'minLength' or 'maxLength' is not supported", path);
      try {
        return json_.quoted(add_regex(g_, pattern, {.what = "pattern", .json_string = true}));
      } catch (const std::invalid_argument& e) {
        if (std::string_view(e.what()).starts_with("json_schema: ")) throw;  // a limit of the whole grammar
        fail(e.what(), path);
      }
    }
    if (!min && !max) return json_.string();
    if (max && *max < min.value_or(0)) fail("'maxLength' is below 'minLength'", path);
    return json_.quoted(g_.repeat(json_.string_char(), min.value_or(0), max.value_or(unbounded)));
  }

  int32_t array(const json& schema, const std::string& path) {
    std::vector<int32_t> prefix;
    std::optional<int32_t> rest = json_.value();  // the schema of items past the prefix; nullopt: none allowed
    const auto item_schema = [&](const json& s, const std::string& where) { return visit(s, where); };
    if (schema.contains("prefixItems")) {
      const json& list = schema.at("prefixItems");
      if (!list.is_array()) fail("'prefixItems' must be a list", path);
      for (std::size_t i = 0; i < list.size(); ++i) prefix.push_back(item_schema(list[i], path + "/prefixItems/" + std::to_string(i)));
    }
    if (schema.contains("items")) {
      const json& items = schema.at("items");
      if (items.is_array()) {  // draft 4-7 tuples
        for (std::size_t i = 0; i < items.size(); ++i) prefix.push_back(item_schema(items[i], path + "/items/" + std::to_string(i)));
      } else if (items.is_boolean() && !items.get<bool>()) {
        rest.reset();
      } else {
        rest = item_schema(items, path + "/items");
      }
    }
    // Each item of a tuple nests the rest (tail() below): bounded as nesting is.
    if (prefix.size() > static_cast<std::size_t>(limits::max_nesting_depth))
      fail("a tuple ('prefixItems', or 'items' as a list) of more than " + std::to_string(limits::max_nesting_depth) +
               " schemas (limit)", path);
    const int32_t min = count(schema, "minItems", path).value_or(0);
    int32_t max = count(schema, "maxItems", path).value_or(unbounded);
    const auto k = static_cast<int32_t>(prefix.size());
    if (!rest && (max == unbounded || max > k)) max = k;
    if (max != unbounded && max < min) fail("the array can never have 'minItems' items", path);
    const int32_t open = g_.sequence({g_.literal("["), json_.ws()});
    if (max == 0) return g_.sequence({open, g_.literal("]")});
    // Elements i.. each after a comma; those past minItems optional.
    const auto tail = [&](auto&& self, int32_t i) -> int32_t {
      if (max != unbounded && i >= max) return g_.empty();
      if (i >= k) {
        const int32_t lo = std::max(0, min - i), hi = max == unbounded ? unbounded : max - i;
        return g_.repeat(g_.sequence({json_.comma(), *rest}), lo, hi);
      }
      const int32_t body = g_.sequence({json_.comma(), prefix[i], self(self, i + 1)});
      return i >= min ? g_.optional(body) : body;
    };
    const int32_t content = g_.sequence({k > 0 ? prefix[0] : *rest, tail(tail, 1), json_.ws()});
    return g_.sequence({open, min == 0 ? g_.optional(content) : content, g_.literal("]")});
  }

  int32_t object(const json& schema, const std::string& path) {
    struct property {
      std::string name;
      int32_t value;
      bool required;
    };
    std::vector<property> properties;
    std::set<std::string> required;
    if (schema.contains("required")) {
      const json& list = schema.at("required");
      if (!list.is_array()) fail("'required' must be a list", path);
      for (const json& name : list) {
        if (!name.is_string()) fail("'required' must list strings", path);
        required.insert(name.get<std::string>());
      }
    }
    if (schema.contains("properties")) {
      const json& map = schema.at("properties");
      if (!map.is_object()) fail("'properties' must be an object", path);
      for (const auto& [name, sub] : map.items()) properties.push_back({name, visit(sub, path + "/properties/" + name), required.contains(name)});
    }
    for (const std::string& name : required) {
      bool declared = false;
      for (const auto& p : properties) declared |= p.name == name;
      if (!declared) properties.push_back({name, json_.value(), true});
    }
    // Extra properties: a schema for their values, or none allowed.
    std::optional<int32_t> extra;
    if (schema.contains("additionalProperties")) {
      const json& a = schema.at("additionalProperties");
      if (!(a.is_boolean() && !a.get<bool>())) extra = visit(a, path + "/additionalProperties");
    } else if (!schema.contains("properties")) {
      extra = json_.value();
    }
    const auto member = [&](int32_t key, int32_t value) { return g_.sequence({key, json_.ws(), g_.literal(":"), json_.ws(), value}); };
    std::vector<int32_t> key_exprs;
    for (const auto& p : properties) key_exprs.push_back(member(g_.literal(json(p.name).dump()), p.value));
    const int32_t extra_member = extra ? member(json_.string(), *extra) : -1;

    // first[i]: the members from property i on, none written yet; rest[i]: the same after one was written
    // (each then starts with a comma). Rules, so that the alternatives do not grow exponentially.
    const auto n = static_cast<int32_t>(properties.size());
    std::vector<int32_t> first(n + 1), rest(n + 1);
    for (int32_t i = 0; i <= n; ++i) {
      first[i] = g_.new_rule("object-first");
      rest[i] = g_.new_rule("object-rest");
    }
    const int32_t more_extra = extra ? g_.repeat(g_.sequence({json_.comma(), extra_member}), 0, unbounded) : g_.empty();
    g_.set_body(rest[n], more_extra);
    g_.set_body(first[n], extra ? g_.optional(g_.sequence({extra_member, more_extra})) : g_.empty());
    for (int32_t i = n - 1; i >= 0; --i) {
      const int32_t with_rest = g_.sequence({key_exprs[i], g_.ref(rest[i + 1])});
      const int32_t after_comma = g_.sequence({json_.comma(), with_rest});
      g_.set_body(first[i], properties[i].required ? with_rest : g_.choice({with_rest, g_.ref(first[i + 1])}));
      g_.set_body(rest[i], properties[i].required ? after_comma : g_.choice({after_comma, g_.ref(rest[i + 1])}));
    }
    const int32_t members = g_.sequence({g_.ref(first[0]), json_.ws()});
    return g_.sequence({g_.literal("{"), json_.ws(), members, g_.literal("}")});
  }

  json root_;
  grammar g_;
  json_rules json_;
  std::map<std::string, int32_t> refs_;
  int depth_ = 0;
};

// Whether text's arrays and objects nest deeper than limit, read without recursion: nlohmann's dump() and
// this converter recurse, so a deep document is refused before either sees it.
bool nests_deeper_than(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

} // namespace

grammar json_schema_grammar(std::string_view schema_text) {
  // A schema level is two JSON levels ("properties": {"name": {...}}), with room for const and enum values.
  if (nests_deeper_than(schema_text, 4 * limits::max_nesting_depth))
    throw std::invalid_argument("json_schema: the schema's JSON nests deeper than " +
                                std::to_string(4 * limits::max_nesting_depth) + " levels (limit)");
  json schema = json::parse(schema_text.begin(), schema_text.end(), nullptr, false);
  if (schema.is_discarded()) throw std::invalid_argument("json_schema: the schema is not valid JSON");
  return schema_converter(std::move(schema)).convert();
}

grammar json_object_grammar() {
  grammar g;
  g.what = "response_format";
  json_rules rules(g);
  g.root = g.rule("root");
  g.set_body(g.root, g.sequence({rules.ws(), rules.object()}));
  return g;
}

} // namespace troupe::structured
