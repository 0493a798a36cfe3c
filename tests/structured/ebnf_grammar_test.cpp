// guided_grammar: the EBNF/GBNF front end.

#include "runtime/structured/grammar_front_ends.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

namespace troupe::structured {
namespace {

using testing::error_of;
using testing::matches;

TEST(ebnf_grammar, reads_rules_alternatives_groups_and_repetitions) {
  const grammar g = parse_ebnf(R"(
    # a greeting, then digits
    root ::= greeting " " digits ("!" | "?")?
    greeting ::= "hi" | "hello"
    digits ::= [0-9]{2,3}
  )");
  EXPECT_TRUE(matches(g, "hi 12"));
  EXPECT_TRUE(matches(g, "hello 123!"));
  EXPECT_FALSE(matches(g, "hi 1"));
  EXPECT_FALSE(matches(g, "hi 1234"));
  EXPECT_FALSE(matches(g, "hey 12"));
}

TEST(ebnf_grammar, reads_star_plus_and_open_counted_repetition) {
  const grammar g = parse_ebnf("root ::= \"a\"* \"b\"+ \"c\"{2,}");
  EXPECT_TRUE(matches(g, "bcc"));
  EXPECT_TRUE(matches(g, "aabbbccc"));
  EXPECT_FALSE(matches(g, "aacc"));
  EXPECT_FALSE(matches(g, "abc"));
}

TEST(ebnf_grammar, reads_escapes_negated_classes_and_utf8) {
  const grammar g = parse_ebnf(R"(root ::= "\"q\"\n" [^a-c\]] [α-ω] "\u00e9")");
  EXPECT_TRUE(matches(g, "\"q\"\nzβé"));
  EXPECT_TRUE(matches(g, "\"q\"\n\xE4\xB8\xAD" "ωé"));  // 中 is not in a-c
  EXPECT_FALSE(matches(g, "\"q\"\nbβé"));
  EXPECT_FALSE(matches(g, "\"q\"\n]βé"));
  EXPECT_FALSE(matches(g, "\"q\"\nzaé"));
}

TEST(ebnf_grammar, allows_recursion_that_consumes_input_first) {
  const grammar g = parse_ebnf("root ::= \"(\" root* \")\"");
  EXPECT_TRUE(matches(g, "(()(()))"));
  EXPECT_FALSE(matches(g, "(()"));
}

TEST(ebnf_grammar, says_what_is_wrong_and_where) {
  EXPECT_EQ(error_of([] { parse_ebnf("start ::= \"a\""); }), "guided_grammar: the grammar has no rule named 'root'");
  EXPECT_EQ(error_of([] { parse_ebnf("root ::= item"); }), "guided_grammar: rule 'item' is used but not defined");
  EXPECT_EQ(error_of([] { parse_ebnf("root ::= \"a\"\nroot ::= \"b\""); }),
            "guided_grammar: rule 'root' is defined twice at line 2, column 1");
  EXPECT_EQ(error_of([] { parse_ebnf("root ::= (\"a\""); }), "guided_grammar: unbalanced parenthesis at line 1, column 10");
  EXPECT_EQ(error_of([] { parse_ebnf("root ::= \"a"); }), "guided_grammar: unterminated string at line 1, column 10");
  EXPECT_EQ(error_of([] { parse_ebnf("root = \"a\""); }), "guided_grammar: expected '::=' after rule name 'root' at line 1, column 6");
  EXPECT_EQ(error_of([] { parse_ebnf(""); }), "guided_grammar: the grammar is empty at line 1, column 1");
}

TEST(ebnf_grammar, refuses_left_recursion_naming_the_rule) {
  const grammar g = parse_ebnf("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"");
  EXPECT_EQ(error_of([&] { compile_automaton(g, "guided_grammar"); }),
            "guided_grammar: rule 'expr' is left-recursive (it can reach itself without consuming input); "
            "write the repetition with * or + instead");
}

} // namespace
} // namespace troupe::structured
