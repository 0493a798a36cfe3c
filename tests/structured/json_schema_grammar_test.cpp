// response_format json_schema / guided_json and json_object: the JSON front ends.

#include "runtime/structured/grammar_front_ends.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

namespace troupe::structured {
namespace {

using testing::error_of;
using testing::matches;

bool valid(std::string_view schema, std::string_view text) { return matches(json_schema_grammar(schema), text); }

TEST(json_schema_grammar, writes_properties_in_order_and_lets_optional_ones_out) {
  const char* schema = R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
                           "tags":{"type":"array","items":{"type":"string"}}},"required":["name","tags"]})";
  EXPECT_TRUE(valid(schema, R"({"name":"Ada","age":36,"tags":[]})"));
  EXPECT_TRUE(valid(schema, R"({"name":"Ada","tags":["x","y"]})"));
  EXPECT_TRUE(valid(schema, "{\n  \"name\": \"Ada\",\n  \"tags\": [ \"x\" ]\n}"));
  EXPECT_FALSE(valid(schema, R"({"age":36,"name":"Ada","tags":[]})"));    // out of order
  EXPECT_FALSE(valid(schema, R"({"name":"Ada","age":36})"));              // tags required
  EXPECT_FALSE(valid(schema, R"({"name":"Ada","tags":[],"extra":1})"));   // strict: no other properties
  EXPECT_FALSE(valid(schema, R"({"name":"Ada",,"tags":[]})"));
}

TEST(json_schema_grammar, takes_additional_properties_when_asked_and_any_for_a_bare_object) {
  EXPECT_TRUE(valid(R"({"type":"object","properties":{"a":{"type":"null"}},"additionalProperties":{"type":"boolean"}})",
                    R"({"a":null,"b":true,"c":false})"));
  EXPECT_FALSE(valid(R"({"type":"object","properties":{"a":{"type":"null"}},"additionalProperties":{"type":"boolean"}})",
                     R"({"a":null,"b":1})"));
  EXPECT_TRUE(valid(R"({"type":"object"})", R"({"x":[1,{"y":"z"}],"w":-1.5e3})"));
  EXPECT_TRUE(valid(R"({"type":"object"})", "{}"));
}

TEST(json_schema_grammar, reads_enum_const_any_of_and_type_lists) {
  EXPECT_TRUE(valid(R"({"enum":["red",1,null,{"a":[true]}]})", R"({"a":[true]})"));
  EXPECT_FALSE(valid(R"({"enum":["red",1]})", R"("blue")"));
  EXPECT_TRUE(valid(R"({"const":"x"})", R"("x")"));
  EXPECT_TRUE(valid(R"({"anyOf":[{"type":"integer"},{"type":"string","maxLength":2}]})", R"("ab")"));
  EXPECT_FALSE(valid(R"({"anyOf":[{"type":"integer"},{"type":"string","maxLength":2}]})", R"("abc")"));
  EXPECT_TRUE(valid(R"({"type":["string","null"]})", "null"));
  EXPECT_TRUE(valid(R"({"allOf":[{"type":"boolean"}]})", "false"));
}

TEST(json_schema_grammar, follows_refs_including_recursive_ones) {
  const char* schema = R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"})";
  EXPECT_TRUE(valid(schema, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]})"));
  EXPECT_FALSE(valid(schema, R"({"v":1,"kids":[{}]})"));
  EXPECT_TRUE(valid(R"({"definitions":{"b":{"type":"boolean"}},"items":{"$ref":"#/definitions/b"}})", "[true,false]"));
}

TEST(json_schema_grammar, bounds_arrays_strings_and_integers) {
  EXPECT_TRUE(valid(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2})", "[1, 2]"));
  EXPECT_FALSE(valid(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2})", "[]"));
  EXPECT_FALSE(valid(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2})", "[1,2,3]"));
  EXPECT_TRUE(valid(R"({"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})", R"(["a",1])"));
  EXPECT_FALSE(valid(R"({"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})", R"(["a",1,2])"));
  EXPECT_TRUE(valid(R"({"type":"string","minLength":2,"maxLength":3})", R"("a\"c")"));
  EXPECT_FALSE(valid(R"({"type":"string","minLength":2,"maxLength":3})", R"("a")"));
  const char* range = R"({"type":"integer","minimum":-12,"maximum":305})";
  for (int v = -20; v <= 320; ++v) EXPECT_EQ(valid(range, std::to_string(v)), v >= -12 && v <= 305) << v;
  EXPECT_FALSE(valid(range, "007"));
  EXPECT_FALSE(valid(R"({"type":"integer","exclusiveMinimum":0})", "0"));
  EXPECT_TRUE(valid(R"({"type":"number","minimum":0,"maximum":5})", "4.75"));
  EXPECT_TRUE(valid(R"({"type":"number","minimum":0,"maximum":5})", "5.00"));
  EXPECT_FALSE(valid(R"({"type":"number","minimum":0,"maximum":5})", "5.5"));
  EXPECT_FALSE(valid(R"({"type":"number","minimum":0})", "-1"));
}

TEST(json_schema_grammar, matches_patterns_and_formats_on_the_string_value) {
  EXPECT_TRUE(valid(R"({"type":"string","pattern":"^[a-z]+-\\d{2}$"})", R"("abc-12")"));
  EXPECT_FALSE(valid(R"({"type":"string","pattern":"^[a-z]+-\\d{2}$"})", R"("abc-1")"));
  EXPECT_TRUE(valid(R"({"type":"string","format":"date"})", R"("2026-12-05")"));
  EXPECT_FALSE(valid(R"({"type":"string","format":"date"})", R"("2026-13-05")"));
  EXPECT_TRUE(valid(R"({"type":"string","format":"uuid"})", R"("123e4567-e89b-12d3-a456-426614174000")"));
}

TEST(json_schema_grammar, takes_true_and_empty_schemas_as_any_value) {
  EXPECT_TRUE(valid("true", R"([1,"a",{"b":null}])"));
  EXPECT_TRUE(valid("{}", "-0.5"));
  EXPECT_FALSE(valid("{}", "01"));
}

TEST(json_schema_grammar, bounds_whitespace) {
  EXPECT_TRUE(valid(R"({"type":"array"})", "[" + std::string(16, ' ') + "]"));
  EXPECT_FALSE(valid(R"({"type":"array","maxItems":0})", "[" + std::string(17, ' ') + "]"));
}

TEST(json_schema_grammar, refuses_keywords_it_cannot_honour_by_name) {
  EXPECT_EQ(error_of([] { json_schema_grammar(R"({"type":"object","patternProperties":{"a":{}}})"); }),
            "json_schema: keyword 'patternProperties' is not supported");
  EXPECT_EQ(error_of([] { json_schema_grammar(R"({"properties":{"a":{"type":"array","uniqueItems":true}}})"); }),
            "json_schema: keyword 'uniqueItems' is not supported (at /properties/a)");
  EXPECT_EQ(error_of([] { json_schema_grammar(R"({"allOf":[{},{}]})"); }),
            "json_schema: keyword 'allOf' is supported with exactly one schema");
  EXPECT_EQ(error_of([] { json_schema_grammar(R"({"$ref":"#/$defs/missing"})"); }),
            "json_schema: '$ref' to '#/$defs/missing' points nowhere in the schema");
  EXPECT_EQ(error_of([] { json_schema_grammar(R"({"type":"date"})"); }), "json_schema: type 'date' is not supported");
  EXPECT_EQ(error_of([] { json_schema_grammar("{"); }), "json_schema: the schema is not valid JSON");
  EXPECT_EQ(error_of([] { json_schema_grammar(R"({"type":"string","pattern":"(a"})"); }),
            "json_schema: pattern: unbalanced parenthesis at offset 0");
}

TEST(json_object_grammar, takes_any_object_and_nothing_else) {
  const grammar g = json_object_grammar();
  EXPECT_TRUE(matches(g, R"({"a": [1, 2.5e-3, "x\u00e9\n", {"b": null}], "c": true})"));
  EXPECT_TRUE(matches(g, "{ }"));
  EXPECT_TRUE(matches(g, " {}"));  // SentencePiece's first token often carries a space
  EXPECT_FALSE(matches(g, "[1]"));
  EXPECT_FALSE(matches(g, R"({"a": 1,})"));
  EXPECT_FALSE(matches(g, R"({"a": "\x"})"));
}

} // namespace
} // namespace troupe::structured
