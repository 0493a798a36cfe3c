// guided_regex: the regex front end, checked against std::regex (ECMAScript) on the same strings.

#include "runtime/structured/grammar_front_ends.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

#include <regex>

namespace troupe::structured {
namespace {

using testing::error_of;
using testing::matches;

TEST(regex_grammar, agrees_with_std_regex_on_the_usual_constructs) {
  const std::vector<std::string> patterns = {
      R"(\d{3}-\d{4})", R"([A-Z][a-z]+( [A-Z][a-z]+)*)", R"((?:ab|cd)+e?)", R"(^\w+@\w+\.(com|org)$)",
      R"(a.c)", R"([^0-9]{2,3})", R"(x*?y+?)", R"(\s*\S+)", R"([\d.\-]+)", R"(\(\)\[\]\{\}\\)", R"(a{2}|b{1,}|c{0,1})"};
  const std::vector<std::string> texts = {"123-4567", "12-4567", "Ada Lovelace", "ada", "ababcde", "abe", "me@x.com",
                                          "me@x.net", "abc", "a\nc", "xy", "x", "yy", "  word", " ", "1.5-2", "()[]{}\\",
                                          "aa", "bbb", "c", "", "ab", "ccc", "zz", "zzz", "zzzz"};
  for (const auto& pattern : patterns) {
    const grammar g = regex_grammar(pattern);
    const std::regex reference(pattern, std::regex::ECMAScript);
    for (const auto& text : texts) {
      EXPECT_EQ(matches(g, text), std::regex_match(text, reference)) << pattern << " on \"" << text << "\"";
    }
  }
}

TEST(regex_grammar, matches_code_points_not_bytes_in_classes_and_dot) {
  EXPECT_TRUE(matches(regex_grammar("[é-ë]{2}"), "éë"));
  EXPECT_TRUE(matches(regex_grammar("."), "中"));
  EXPECT_FALSE(matches(regex_grammar("."), "\n"));
  EXPECT_TRUE(matches(regex_grammar(R"(\u00e9\x41)"), "éA"));
}

TEST(regex_grammar, refuses_what_a_grammar_cannot_match_by_name) {
  EXPECT_EQ(error_of([] { regex_grammar(R"((a)\1)"); }), "guided_regex: backreference \\1 is not supported at offset 3");
  EXPECT_EQ(error_of([] { regex_grammar("a(?=b)"); }), "guided_regex: lookahead is not supported at offset 1");
  EXPECT_EQ(error_of([] { regex_grammar("(?<!a)b"); }), "guided_regex: lookbehind is not supported at offset 0");
  EXPECT_EQ(error_of([] { regex_grammar(R"(\bword)"); }), "guided_regex: word boundary \\b is not supported at offset 0");
  EXPECT_EQ(error_of([] { regex_grammar("(ab"); }), "guided_regex: unbalanced parenthesis at offset 0");
  EXPECT_EQ(error_of([] { regex_grammar("ab)"); }), "guided_regex: unbalanced parenthesis at offset 2");
  EXPECT_EQ(error_of([] { regex_grammar("[a-"); }), "guided_regex: unterminated character class at offset 0");
  EXPECT_EQ(error_of([] { regex_grammar("*a"); }), "guided_regex: nothing to repeat at offset 0");
  EXPECT_EQ(error_of([] { regex_grammar("a^b"); }), "guided_regex: anchor '^' is supported only at the start of the pattern at offset 1");
  EXPECT_EQ(error_of([] { regex_grammar("a{3,1}"); }), "guided_regex: repetition {3,1} has max < min at offset 1");
}

TEST(regex_grammar, inside_a_json_string_writes_quotes_backslashes_and_controls_escaped) {
  grammar g;
  g.root = g.rule("root");
  g.set_body(g.root, add_regex(g, R"(["\\]\t.)", {.what = "pattern", .json_string = true}));
  EXPECT_TRUE(matches(g, R"(\"\tx)"));
  EXPECT_TRUE(matches(g, R"(\\\t\")"));
  EXPECT_FALSE(matches(g, "\"\tx"));
  EXPECT_FALSE(matches(g, "\\\"\\t\""));
}

} // namespace
} // namespace troupe::structured
