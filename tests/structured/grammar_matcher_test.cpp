// The token-level contract of grammar_matcher.hpp on hand-made vocabularies: masks, end ids, special and
// empty tokens, termination, and the mask cache.

#include "runtime/structured/compiled_grammar.hpp"
#include "runtime/structured/grammar_matcher.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace troupe {
namespace {

using structured::testing::allowed_ids;
using structured::testing::error_of;
using structured::testing::toy_vocabulary;
using ids = std::vector<int32_t>;

std::shared_ptr<const compiled_grammar> compile(structured_output::kind kind, std::string text,
                                                std::shared_ptr<const token_vocabulary> vocab) {
  return compile_structured_output({kind, std::move(text)}, std::move(vocab));
}

TEST(grammar_matcher, allows_the_tokens_that_keep_a_choice_possible_and_ends_only_when_complete) {
  //                           0     1     2      3       4    5 (end)
  const auto vocab = toy_vocabulary({"y", "ye", "yes", "no", "x"});
  grammar_matcher m(compile(structured_output::kind::choice, R"(["yes", "no"])", vocab));
  EXPECT_EQ(m.bitmask_words(), 1);
  EXPECT_EQ(allowed_ids(m), (ids{0, 1, 2, 3}));
  EXPECT_TRUE(m.accept_token(1));
  EXPECT_EQ(allowed_ids(m), (ids{}));  // "yes" needs an "s", which no token spells alone
  EXPECT_FALSE(m.is_terminated());
}

TEST(grammar_matcher, allows_end_ids_exactly_when_the_output_is_complete) {
  const auto vocab = toy_vocabulary({"a", "b", "ab"}, 2);  // ends: 3 and 4
  grammar_matcher m(compile(structured_output::kind::regex, "ab?", vocab));
  EXPECT_FALSE(m.accept_token(3));
  EXPECT_EQ(allowed_ids(m), (ids{0, 2}));
  EXPECT_TRUE(m.accept_token(0));
  EXPECT_EQ(allowed_ids(m), (ids{1, 3, 4}));
  EXPECT_FALSE(m.is_terminated());
  EXPECT_TRUE(m.accept_token(1));
  EXPECT_TRUE(m.is_terminated());  // complete and nothing more can follow
  EXPECT_EQ(allowed_ids(m), (ids{3, 4}));
  EXPECT_TRUE(m.accept_token(4));
  EXPECT_TRUE(m.is_terminated());
  EXPECT_FALSE(m.accept_token(0));
}

TEST(grammar_matcher, rejects_a_token_outside_the_mask_and_keeps_its_state) {
  const auto vocab = toy_vocabulary({"a", "b"});
  grammar_matcher m(compile(structured_output::kind::regex, "ab", vocab));
  EXPECT_FALSE(m.accept_token(1));
  EXPECT_FALSE(m.accept_token(7));   // out of range
  EXPECT_FALSE(m.accept_token(-1));
  EXPECT_TRUE(m.accept_token(0));
  EXPECT_TRUE(m.accept_token(1));
}

TEST(grammar_matcher, never_allows_special_tokens_or_tokens_without_bytes) {
  const auto vocab = toy_vocabulary({"a", "", "b"}, 1, 1);  // 3: end, 4: special
  grammar_matcher m(compile(structured_output::kind::regex, "[a-z<>0-9]*", vocab));
  EXPECT_EQ(allowed_ids(m), (ids{0, 2, 3}));
  EXPECT_FALSE(m.accept_token(1));
  EXPECT_FALSE(m.accept_token(4));
}

TEST(grammar_matcher, takes_a_choice_of_one_empty_string_as_an_empty_output) {
  const auto vocab = toy_vocabulary({"a"});
  grammar_matcher m(compile(structured_output::kind::choice, R"([""])", vocab));
  EXPECT_TRUE(m.is_terminated());
  EXPECT_EQ(allowed_ids(m), (ids{1}));
}

TEST(grammar_matcher, refuses_an_empty_choice_list_and_names_the_field) {
  const auto vocab = toy_vocabulary({"a"});
  EXPECT_EQ(error_of([&] { compile(structured_output::kind::choice, "[]", vocab); }),
            "guided_choice: the list of choices is empty");
  EXPECT_EQ(error_of([&] { compile(structured_output::kind::choice, R"(["a", 3])", vocab); }),
            "guided_choice: choice 1 is not a string");
}

TEST(grammar_matcher, a_token_may_cross_rule_boundaries_and_complete_nested_rules) {
  const auto vocab = toy_vocabulary({"{\"", "a\":", "1}", "1", "}", " "});
  grammar_matcher m(compile(structured_output::kind::json_schema,
                            R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})", vocab));
  EXPECT_EQ(allowed_ids(m), (ids{0, 5}));  // leading whitespace is allowed
  EXPECT_TRUE(m.accept_token(0));
  EXPECT_EQ(allowed_ids(m), (ids{1}));
  EXPECT_TRUE(m.accept_token(1));
  EXPECT_EQ(allowed_ids(m), (ids{2, 3, 5}));
  EXPECT_TRUE(m.accept_token(2));
  EXPECT_EQ(allowed_ids(m), (ids{6}));
}

TEST(grammar_matcher, shares_masks_between_matchers_through_the_compiled_grammar) {
  const auto vocab = toy_vocabulary({"a", "b"});
  const auto grammar = compile(structured_output::kind::regex, "(ab)*", vocab);
  grammar_matcher first(grammar), second(grammar);
  allowed_ids(first);
  allowed_ids(second);
  EXPECT_EQ(grammar->stats().misses, 1u);
  EXPECT_EQ(grammar->stats().hits, 1u);
  EXPECT_EQ(grammar->stats().entries, 1u);
}

TEST(grammar_matcher, checks_the_size_of_the_bitmask) {
  const auto vocab = toy_vocabulary({"a"});
  grammar_matcher m(compile(structured_output::kind::regex, "a", vocab));
  std::vector<uint32_t> words(2);
  EXPECT_EQ(error_of([&] { m.fill_next_token_bitmask(words); }), "grammar_matcher: the bitmask has 2 words, not 1");
}

TEST(grammar_matcher, bounds_recursion_depth_so_nesting_stops_being_allowed) {
  const auto vocab = toy_vocabulary({"(", ")"});
  grammar_matcher m(compile(structured_output::kind::grammar, "root ::= \"(\" root? \")\"", vocab));
  int opened = 0;
  while (m.accept_token(0)) ++opened;
  EXPECT_EQ(opened, 2001);  // the outermost pair needs no frame; each nested one takes one of 2000
  EXPECT_EQ(allowed_ids(m), (ids{1}));
}

TEST(grammar_matcher, follows_choices_with_shared_prefixes_as_one_path) {
  const auto vocab = toy_vocabulary({"a", "b", "c", "ab", "abc"});
  grammar_matcher m(compile(structured_output::kind::choice, R"(["abc", "ab", "a", "b", "abc"])", vocab));
  EXPECT_EQ(allowed_ids(m), (ids{0, 1, 3, 4}));
  EXPECT_TRUE(m.accept_token(0));
  EXPECT_EQ(allowed_ids(m), (ids{1, 5}));  // "ab", or end after "a"
  EXPECT_TRUE(m.accept_token(1));
  EXPECT_EQ(allowed_ids(m), (ids{2, 5}));
  EXPECT_TRUE(m.accept_token(2));
  EXPECT_TRUE(m.is_terminated());
}

TEST(grammar_matcher, gives_the_same_masks_when_threads_share_a_compiled_grammar) {
  const auto vocab = toy_vocabulary({"{", "}", "\"", "a", ":", "1", ",", " ", "\"a\":"});
  const auto grammar = compile(structured_output::kind::json_object, "", vocab);
  const std::vector<int32_t> text = {0, 8, 5, 6, 2, 3, 2, 4, 7, 0, 1, 1};  // {"a":1,"a": {}}
  const auto masks_of = [&] {
    grammar_matcher m(grammar);
    std::vector<std::vector<int32_t>> masks;
    for (const int32_t id : text) {
      masks.push_back(allowed_ids(m));
      EXPECT_TRUE(m.accept_token(id));
    }
    masks.push_back(allowed_ids(m));
    return masks;
  };
  const auto expected = masks_of();
  EXPECT_EQ(expected.back(), (ids{9}));
  std::vector<std::thread> threads;
  std::vector<std::vector<std::vector<int32_t>>> seen(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round) seen[t] = masks_of();
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& masks : seen) EXPECT_EQ(masks, expected);
}

} // namespace
} // namespace troupe
