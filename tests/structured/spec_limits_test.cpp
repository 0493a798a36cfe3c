// Hostile and pathological specs: each is refused quickly with a message naming the limit it passes (or is
// compiled within bounded cost), while the specs people really send still compile. grammar_limits.hpp holds
// the limits; compile_structured_output is what the server calls for every request.

#include "runtime/structured/compiled_grammar.hpp"
#include "runtime/structured/grammar_cache.hpp"
#include "runtime/structured/grammar_front_ends.hpp"
#include "runtime/structured/grammar_limits.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace troupe::structured {
namespace {

using testing::error_of;
using testing::matches;
using kind = structured_output::kind;

std::shared_ptr<const token_vocabulary> vocab() {
  static const auto v = testing::toy_vocabulary({"a", "b", "c", "\"", "{", "}", "x", "1"});
  return v;
}

std::string compile_error(kind k, const std::string& text) {
  return error_of([&] { compile_structured_output({k, text}, vocab()); });
}

std::string repeated(const std::string& s, int n, const std::string& separator = "") {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i ? separator : "") + s;
  return out;
}

// n JSON strings "<prefix>0", "<prefix>1", ..., comma-separated.
std::string numbered(const std::string& prefix, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i ? ",\"" : "\"") + prefix + std::to_string(i) + "\"";
  return out;
}

struct hostile_case {
  const char* name;
  kind type;
  std::function<std::string()> text;
  const char* message;  // a substring of the error
};

class refuses_hostile_spec : public ::testing::TestWithParam<hostile_case> {};

TEST_P(refuses_hostile_spec, with_a_message_naming_the_limit) {
  const hostile_case& c = GetParam();
  const std::string why = compile_error(c.type, c.text());
  EXPECT_NE(why.find(c.message), std::string::npos) << c.name << ": " << why;
}

const hostile_case hostile_cases[] = {
    {"regex_nested_counts", kind::regex, [] { return std::string("(a{1000}){1000}"); },
     "guided_regex: the spec expands to more than 524288 automaton states (limit); use a smaller bound than {1000}"},
    {"regex_count_past_limit", kind::regex, [] { return std::string(".{100000}"); }, "repetition count above 10000 (limit)"},
    {"regex_negated_class_count", kind::regex, [] { return std::string("[^x]{65535}"); }, "repetition count above 10000 (limit)"},
    {"regex_stacked_counts", kind::regex, [] { return std::string("a{10}{10}{10}{10}{10}{10}"); },
     "automaton states (limit); use a smaller bound than {10}"},
    {"regex_deep_groups", kind::regex, [] { return std::string(100000, '(') + "a" + std::string(100000, ')'); },
     "guided_regex: groups nested deeper than 128 (limit) at offset 128"},
    {"regex_stacked_quantifiers", kind::regex, [] { return "a" + std::string(100000, '*'); },
     "quantifiers and groups nested deeper than 128 (limit)"},
    {"regex_optional_repeated", kind::regex, [] { return std::string("(a?){10000}"); }, "edges (limit)"},
    {"regex_over_a_mebibyte", kind::regex, [] { return std::string((1 << 20) + 1, 'a'); },
     "guided_regex: the spec is 1048577 bytes, more than 1048576 (limit)"},
    {"regex_invalid_utf8", kind::regex, [] { return std::string("ab\xff"); }, "guided_regex: invalid UTF-8 at offset 2"},
    {"regex_truncated_utf8", kind::regex, [] { return std::string("a\xc3(b)"); }, "invalid UTF-8 at offset 1"},
    {"schema_min_items_1e9", kind::json_schema, [] { return std::string(R"({"type":"array","minItems":1000000000})"); },
     "'minItems' above 10000 (limit) is not supported"},
    {"schema_max_length_1e8", kind::json_schema, [] { return std::string(R"({"type":"string","maxLength":100000000})"); },
     "'maxLength' above 10000 (limit) is not supported"},
    {"schema_long_strings_in_a_long_array", kind::json_schema,
     [] { return std::string(R"({"type":"array","maxItems":10000,"items":{"type":"string","maxLength":10000}})"); },
     "json_schema: the spec expands to more than 524288 automaton states (limit)"},
    {"schema_ref_to_itself", kind::json_schema, [] { return std::string(R"({"$ref":"#"})"); }, "is left-recursive"},
    {"schema_mutual_refs_without_base", kind::json_schema,
     [] { return std::string(R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})"); },
     "is left-recursive"},
    {"schema_ref_chain_of_10k", kind::json_schema,
     [] {
       std::string s = R"({"$ref":"#/$defs/d0","$defs":{)";
       for (int i = 0; i < 10000; ++i) s += "\"d" + std::to_string(i) + "\":{\"$ref\":\"#/$defs/d" + std::to_string(i + 1) + "\"},";
       return s + "\"d10000\":{\"type\":\"integer\"}}}";
     },
     "the schema nests deeper than 128 levels (limit; each '$ref' followed counts as one)"},
    {"schema_nested_100k_deep", kind::json_schema, [] { return repeated("{\"items\":", 100000) + "{}" + std::string(100000, '}'); },
     "json_schema: the schema's JSON nests deeper than 512 levels (limit)"},
    {"schema_enum_of_100k", kind::json_schema, [] { return "{\"enum\":[" + numbered("v", 100000) + "]}"; },
     "json_schema: the spec makes a grammar of more than 262144 parts (limit)"},
    {"schema_properties_copied_into_3k_branches", kind::json_schema,
     [] {
       std::string props;
       for (int i = 0; i < 3000; ++i) props += (i ? ",\"p" : "\"p") + std::to_string(i) + "\":{\"type\":\"string\"}";
       return "{\"type\":\"object\",\"properties\":{" + props + "},\"anyOf\":[" + repeated("{}", 3000, ",") + "]}";
     },
     "more than 262144 parts (limit)"},
    {"schema_tuple_of_100k", kind::json_schema, [] { return "{\"prefixItems\":[" + repeated("{}", 100000, ",") + "]}"; },
     "a tuple ('prefixItems', or 'items' as a list) of more than 128 schemas (limit)"},
    {"schema_a_number", kind::json_schema, [] { return std::string("5"); }, "a schema must be an object or a boolean"},
    {"schema_an_array", kind::json_schema, [] { return std::string("[]"); }, "a schema must be an object or a boolean"},
    {"schema_null", kind::json_schema, [] { return std::string("null"); }, "a schema must be an object or a boolean"},
    {"grammar_count_past_limit", kind::grammar, [] { return std::string("root ::= \"a\"{1000000}"); },
     "repetition count above 10000 (limit)"},
    {"grammar_nested_counts", kind::grammar, [] { return std::string("root ::= (\"a\"{1000}){1000}"); },
     "guided_grammar: the spec expands to more than 524288 automaton states (limit); use a smaller bound than {1000}"},
    {"grammar_root_is_only_itself", kind::grammar, [] { return std::string("root ::= root"); }, "rule 'root' is left-recursive"},
    {"grammar_undefined_rule", kind::grammar, [] { return std::string("root ::= x"); }, "rule 'x' is used but not defined"},
    {"grammar_deep_parentheses", kind::grammar, [] { return "root ::= " + std::string(100000, '(') + "\"a\"" + std::string(100000, ')'); },
     "parentheses nested deeper than 128 (limit)"},
    {"grammar_over_a_mebibyte", kind::grammar,
     [] {
       std::string s = "root ::= r0\n";
       for (int i = 0; i < 50000; ++i) s += "r" + std::to_string(i) + " ::= \"x\" r" + std::to_string(i + 1) + "?\n";
       return s + "r50000 ::= \"y\"\n";
     },
     "bytes, more than 1048576 (limit)"},
    {"grammar_of_20k_chained_rules", kind::grammar,
     [] {
       std::string s = "root ::= r0\n";
       for (int i = 0; i < 20000; ++i) s += "r" + std::to_string(i) + " ::= \"x\" r" + std::to_string(i + 1) + "?\n";
       return s + "r20000 ::= \"y\"\n";
     },
     "guided_grammar: the spec makes more than 16384 grammar rules (limit)"},
    {"schema_of_10k_properties", kind::json_schema,
     [] {
       std::string props;
       for (int i = 0; i < 10000; ++i) props += (i ? ",\"p" : "\"p") + std::to_string(i) + "\":{\"type\":\"string\"}";
       return "{\"type\":\"object\",\"properties\":{" + props + "}}";
     },
     "json_schema: the spec makes more than 16384 grammar rules (limit)"},
    {"choice_of_100k", kind::choice, [] { return "[" + numbered("c", 100000) + "]"; },
     "guided_choice: the spec makes a grammar of more than 262144 parts (limit)"},
    {"choice_of_one_10_mib_item", kind::choice, [] { return "[\"" + std::string(10 << 20, 'q') + "\"]"; },
     "guided_choice: the spec is 10485764 bytes, more than 1048576 (limit)"},
};

INSTANTIATE_TEST_SUITE_P(spec_limits, refuses_hostile_spec, ::testing::ValuesIn(hostile_cases),
                         [](const auto& info) { return std::string(info.param.name); });

// Pathological but within bounds: compiled, and matched in bounded time.
TEST(spec_limits, nested_stars_and_unreachable_rules_and_nullable_unions_compile_and_match) {
  EXPECT_TRUE(matches(regex_grammar("((a*)*)*"), std::string(2000, 'a')));
  EXPECT_TRUE(matches(regex_grammar("((a|b|c|d){50}){50}"), std::string(2500, 'c')));
  EXPECT_TRUE(matches(parse_ebnf("root ::= \"a\"\nz ::= \"b\""), "a"));
  EXPECT_TRUE(matches(parse_ebnf("root ::= (\"a\" | \"a\")*"), std::string(2000, 'a')));
  EXPECT_TRUE(matches(json_schema_grammar(R"({"type":["string","null"]})"), "null"));
  EXPECT_TRUE(matches(json_schema_grammar(R"({"type":["string","null"]})"), "\"x\""));
  EXPECT_FALSE(matches(json_schema_grammar(R"({"type":["string","null"]})"), "1"));
}

// s ::= "a" s | "a" s "b" doubles its parses at every "a": 2^40 stacks after 40 bytes, were they all kept.
TEST(spec_limits, an_ambiguous_grammar_keeps_at_most_max_configs_parses_per_byte) {
  const grammar_automaton a = compile_automaton(parse_ebnf("root ::= s\ns ::= \"a\" s | \"a\" s \"b\" | \"c\""), "test");
  pushdown_parser parser(a, 2000);
  parse_state state = parser.initial(), next;
  bool cut = false;
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(parser.advance(state, 'a', next)) << "byte " << i;
    std::swap(state, next);
    EXPECT_LE(state.configs.size(), pushdown_parser::max_configs);
    cut |= state.cut;
  }
  EXPECT_TRUE(cut);
  // What is kept are real parses: "c" is still a valid next byte, and "b" before it is not.
  EXPECT_TRUE(parser.advance(state, 'c', next));
  EXPECT_FALSE(parser.advance(state, 'b', next));
}

TEST(spec_limits, grammars_of_one_cache_share_one_mask_budget) {
  grammar_cache cache(8, 40);  // room for two or three toy masks (a word each, and their keys)
  std::vector<std::shared_ptr<const compiled_grammar>> held;  // as running requests hold theirs
  for (const char* pattern : {"a", "b", "c", "ab", "ba", "abc"}) {
    held.push_back(cache.get({kind::regex, pattern}, vocab()));
    grammar_matcher m(held.back());
    EXPECT_EQ(testing::allowed_ids(m), std::vector<int32_t>{pattern[0] - 'a'}) << pattern;
    EXPECT_LE(cache.mask_bytes_used(), 40u) << pattern;
  }
  EXPECT_GT(cache.mask_bytes_used(), 0u);
}

TEST(spec_limits, a_full_budget_keeps_no_mask_and_masks_stay_right) {
  grammar_cache cache(8, 0);
  grammar_matcher m(cache.get({kind::regex, "b|c"}, vocab()));
  EXPECT_EQ(testing::allowed_ids(m), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(testing::allowed_ids(m), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(cache.mask_bytes_used(), 0u);
}

TEST(spec_limits, a_grammar_gives_its_mask_bytes_back_when_it_goes) {
  auto budget = std::make_shared<mask_budget>(1 << 20);
  {
    const auto g = compile_structured_output({kind::regex, "a|b"}, vocab(), budget);
    grammar_matcher m(g);
    std::vector<uint32_t> words(m.bitmask_words());
    m.fill_next_token_bitmask(words);
    EXPECT_GT(budget->used(), 0u);
  }
  EXPECT_EQ(budget->used(), 0u);
}

// The specs people send: OpenAI strict function parameters and tool schemas, formats, enums of hundreds.
struct realistic_case {
  const char* name;
  kind type;
  std::string text;
  std::string sample;  // an output the spec accepts
};

class compiles_realistic_spec : public ::testing::TestWithParam<realistic_case> {};

TEST_P(compiles_realistic_spec, and_accepts_its_sample) {
  const realistic_case& c = GetParam();
  EXPECT_EQ(compile_error(c.type, c.text), "") << c.name;
  const grammar g = c.type == kind::json_schema ? json_schema_grammar(c.text)
                    : c.type == kind::regex     ? regex_grammar(c.text)
                    : c.type == kind::choice    ? choice_grammar(c.text)
                                                : parse_ebnf(c.text);
  EXPECT_TRUE(matches(g, c.sample)) << c.name;
}

std::string enum_schema(int n) { return "{\"type\":\"string\",\"enum\":[" + numbered("value-", n) + "]}"; }

const realistic_case realistic_cases[] = {
    {"openai_strict_weather", kind::json_schema,
     R"({"type":"object","properties":{"location":{"type":"string","description":"City and country"},
        "unit":{"type":["string","null"],"enum":["celsius","fahrenheit",null]}},
        "required":["location","unit"],"additionalProperties":false})",
     R"({"location":"Paris, France","unit":"celsius"})"},
    {"openai_strict_nested_order", kind::json_schema,
     R"({"type":"object","properties":{
        "order_id":{"type":"string"},
        "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},"quantity":{"type":"integer"},
          "price":{"type":"number"}},"required":["sku","quantity","price"],"additionalProperties":false}},
        "shipping":{"type":"object","properties":{"address":{"type":"object","properties":{"street":{"type":"string"},
          "city":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"],
          "additionalProperties":false},"method":{"type":"string","enum":["standard","express","overnight"]}},
          "required":["address","method"],"additionalProperties":false},
        "gift":{"anyOf":[{"type":"string"},{"type":"null"}]}},
        "required":["order_id","items","shipping","gift"],"additionalProperties":false})",
     R"({"order_id":"A1","items":[{"sku":"x","quantity":2,"price":9.5}],"shipping":{"address":{"street":"1 Rd","city":"Oslo","zip":"01234"},"method":"express"},"gift":null})"},
    {"openai_recursive_ui_tree", kind::json_schema,
     R"({"$defs":{"node":{"type":"object","properties":{"type":{"type":"string","enum":["div","button","field"]},
        "label":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},
        "required":["type","label","children"],"additionalProperties":false}},"$ref":"#/$defs/node"})",
     R"({"type":"div","label":"root","children":[{"type":"button","label":"ok","children":[]}]})"},
    {"tool_call_arguments", kind::json_schema,
     R"({"type":"array","minItems":1,"items":{"type":"object","properties":{"name":{"type":"string","enum":["search","fetch"]},
        "parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer","minimum":1,"maximum":50}},
        "required":["query"]}},"required":["name","parameters"]}})",
     R"([{"name":"search","parameters":{"query":"llm","limit":10}}])"},
    {"formats_date_email_uuid", kind::json_schema,
     R"({"type":"object","properties":{"day":{"type":"string","format":"date"},"at":{"type":"string","format":"date-time"},
        "mail":{"type":"string","format":"email"},"id":{"type":"string","format":"uuid"}},"required":["day","at","mail","id"]})",
     R"({"day":"2026-12-05","at":"2026-12-05T08:00:00Z","mail":"ada@example.com","id":"123e4567-e89b-12d3-a456-426614174000"})"},
    {"enum_of_500", kind::json_schema, enum_schema(500), "\"value-499\""},
    {"long_text_field", kind::json_schema, R"({"type":"object","properties":{"summary":{"type":"string","maxLength":1000}}})",
     R"({"summary":"short"})"},
    {"regex_date", kind::regex, R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))", "2026-12-05"},
    {"regex_email", kind::regex, R"([a-zA-Z0-9._%+\-]+@[a-zA-Z0-9.\-]+\.[a-zA-Z]{2,})", "ada.l@example.co.uk"},
    {"regex_uuid", kind::regex, "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
     "123e4567-e89b-12d3-a456-426614174000"},
    {"grammar_arithmetic", kind::grammar,
     "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor ((\"*\" | \"/\") factor)*\n"
     "factor ::= [0-9]+ | \"(\" expr \")\"",
     "(1+2)*30-4"},
    {"choice_of_500", kind::choice, "[" + numbered("option ", 500) + "]", "option 250"},
};

INSTANTIATE_TEST_SUITE_P(spec_limits, compiles_realistic_spec, ::testing::ValuesIn(realistic_cases),
                         [](const auto& info) { return std::string(info.param.name); });

} // namespace
} // namespace troupe::structured
