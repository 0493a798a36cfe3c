#include "runtime/engine/stop_checker.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace troupe {
namespace {

// Plays the scheduler: appends each token's text, then asks the checker.
struct sequence {
  sequence(const sampling_params& p, std::vector<int32_t> eos = {2}, int32_t num_prompt = 4,
           int32_t max_model_len = 4096)
      : eos_ids(std::move(eos)), checker(p, eos_ids, num_prompt, max_model_len) {}

  stop_decision step(int32_t token, std::string_view piece) {
    text += piece;
    return checker.check(token, text);
  }
  std::string released(const stop_decision& d) const { return text.substr(0, d.releasable_size); }
  std::string output(const stop_decision& d) const { return text.substr(0, d.text_size); }

  std::vector<int32_t> eos_ids;
  stop_checker checker;
  std::string text;
};

sampling_params with_stop(std::vector<std::string> stop, bool include = false) {
  sampling_params p;
  p.max_tokens = 100;
  p.stop = std::move(stop);
  p.include_stop_str_in_output = include;
  return p;
}

TEST(stop_checker, finish_reasons_have_openais_names) {
  EXPECT_EQ(to_string(finish_reason::stop), "stop");
  EXPECT_EQ(to_string(finish_reason::length), "length");
  EXPECT_EQ(to_string(finish_reason::none), "");
}

TEST(stop_checker, ordinary_tokens_do_not_stop_and_all_text_is_released_without_stop_strings) {
  sampling_params p;
  sequence s(p);
  auto d = s.step(10, "Hello");
  EXPECT_EQ(d.reason, finish_reason::none);
  EXPECT_EQ(s.released(d), "Hello");
  d = s.step(11, " wor");
  EXPECT_EQ(d.reason, finish_reason::none);
  EXPECT_EQ(s.released(d), "Hello wor");
  EXPECT_EQ(s.checker.num_output_tokens(), 2);
}

TEST(stop_checker, eos_ends_with_stop_and_its_text_is_dropped) {
  sampling_params p;
  sequence s(p);
  s.step(10, "Hi");
  auto d = s.step(2, "</s>");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_FALSE(d.stop_token.has_value());  // vLLM's stop_reason is null for EOS
  EXPECT_EQ(d.stop_string, "");
  EXPECT_EQ(s.output(d), "Hi");
  EXPECT_EQ(s.released(d), "Hi");
}

TEST(stop_checker, any_of_several_eos_ids_ends_the_sequence) {
  sampling_params p;
  for (int32_t eos : {2, 7, 9}) {
    sequence s(p, {2, 7, 9});
    s.step(10, "a");
    EXPECT_EQ(s.step(eos, "").reason, finish_reason::stop) << eos;
  }
}

TEST(stop_checker, eos_text_is_kept_with_include_stop_str_in_output) {
  sampling_params p;
  p.include_stop_str_in_output = true;
  sequence s(p);
  s.step(10, "Hi");
  auto d = s.step(2, "</s>");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(s.output(d), "Hi</s>");
}

TEST(stop_checker, ignore_eos_generates_past_eos_until_length) {
  sampling_params p;
  p.ignore_eos = true;
  p.max_tokens = 3;
  sequence s(p);
  EXPECT_EQ(s.step(2, "").reason, finish_reason::none);
  EXPECT_EQ(s.step(2, "").reason, finish_reason::none);
  EXPECT_EQ(s.step(2, "").reason, finish_reason::length);
}

TEST(stop_checker, stop_token_id_ends_with_stop_and_is_reported) {
  sampling_params p;
  p.stop_token_ids = {42, 43};
  p.ignore_eos = true;  // stop_token_ids still apply
  sequence s(p);
  s.step(10, "x = 1");
  auto d = s.step(43, ";");
  EXPECT_EQ(d.reason, finish_reason::stop);
  ASSERT_TRUE(d.stop_token.has_value());
  EXPECT_EQ(*d.stop_token, 43);
  EXPECT_EQ(s.output(d), "x = 1");
}

TEST(stop_checker, max_tokens_ends_with_length_and_releases_everything) {
  sampling_params p = with_stop({"STOP"});
  p.max_tokens = 2;
  sequence s(p);
  EXPECT_EQ(s.step(10, "a").reason, finish_reason::none);
  auto d = s.step(11, " ST");
  EXPECT_EQ(d.reason, finish_reason::length);
  EXPECT_EQ(s.output(d), "a ST");
  EXPECT_EQ(s.released(d), "a ST");  // the held-back "ST" can no longer become a stop string
}

TEST(stop_checker, max_model_len_ends_with_length) {
  sampling_params p;
  p.max_tokens = 100;
  sequence s(p, {2}, /*num_prompt=*/6, /*max_model_len=*/8);
  EXPECT_EQ(s.step(10, "a").reason, finish_reason::none);
  EXPECT_EQ(s.step(11, "b").reason, finish_reason::length);
}

TEST(stop_checker, max_model_len_applies_even_before_min_tokens) {
  sampling_params p;
  p.max_tokens = 100;
  p.min_tokens = 50;
  sequence s(p, {2}, 6, 8);
  s.step(10, "a");
  EXPECT_EQ(s.step(11, "b").reason, finish_reason::length);
}

TEST(stop_checker, nothing_stops_before_min_tokens) {
  sampling_params p;
  p.min_tokens = 3;
  p.stop_token_ids = {42};
  sequence s(p);
  EXPECT_EQ(s.step(2, "").reason, finish_reason::none);   // EOS at token 1
  EXPECT_EQ(s.step(42, "").reason, finish_reason::none);  // stop token at token 2
  EXPECT_EQ(s.step(2, "").reason, finish_reason::stop);   // EOS at token 3 counts
}

TEST(stop_checker, stop_strings_are_searched_only_in_text_after_min_tokens) {
  sampling_params p = with_stop({"STOP"});
  p.min_tokens = 2;
  sequence s(p);
  EXPECT_EQ(s.step(10, "a STOP").reason, finish_reason::none);
  EXPECT_EQ(s.step(11, " b").reason, finish_reason::none);
  auto d = s.step(12, " STOP!");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(s.output(d), "a STOP b ");  // the first STOP, inside min_tokens, stays in the output
}

TEST(stop_checker, a_stop_string_may_begin_in_min_tokens_text_and_end_after_it) {
  sampling_params p = with_stop({"STOP"});
  p.min_tokens = 1;
  sequence s(p);
  EXPECT_EQ(s.step(10, "go ST").reason, finish_reason::none);
  auto d = s.step(11, "OP");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(s.output(d), "go ");
}

TEST(stop_checker, a_stop_string_spanning_several_tokens_truncates_the_text_before_it) {
  sequence s(with_stop({"STOP"}));
  EXPECT_EQ(s.step(10, "Hel").reason, finish_reason::none);
  EXPECT_EQ(s.step(11, "lo ST").reason, finish_reason::none);
  auto d = s.step(12, "OP now");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(d.stop_string, "STOP");
  EXPECT_FALSE(d.stop_token.has_value());
  EXPECT_EQ(s.output(d), "Hello ");
  EXPECT_EQ(s.released(d), "Hello ");
}

TEST(stop_checker, a_partial_stop_string_is_held_back_until_it_is_ruled_out) {
  sequence s(with_stop({"STOP"}));
  EXPECT_EQ(s.released(s.step(10, "Hello S")), "Hello ");
  EXPECT_EQ(s.released(s.step(11, "T")), "Hello ");
  EXPECT_EQ(s.released(s.step(12, "A")), "Hello STA");
  EXPECT_EQ(s.released(s.step(13, "RS")), "Hello STAR");  // a new "S" is held again
}

TEST(stop_checker, the_hold_back_covers_the_longest_possible_start_of_any_stop_string) {
  sequence s(with_stop({"ab", "xxab"}));
  auto d = s.step(10, "12xxa");
  EXPECT_EQ(s.released(d), "12");
  d = s.step(11, "c");
  EXPECT_EQ(s.released(d), "12xxac");
}

TEST(stop_checker, include_stop_str_in_output_keeps_the_stop_string_and_drops_what_follows) {
  sequence s(with_stop({"STOP"}, /*include=*/true));
  auto d = s.step(10, "Hello ST");
  EXPECT_EQ(s.released(d), "Hello ST");  // nothing to hold back: the stop string would be output anyway
  d = s.step(11, "OP now");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(s.output(d), "Hello STOP");
  EXPECT_EQ(s.released(d), "Hello STOP");
}

TEST(stop_checker, the_stop_string_that_ends_first_wins) {
  {
    sequence s(with_stop({"world", "lo w"}));
    auto d = s.step(10, "Hello world");
    EXPECT_EQ(d.stop_string, "lo w");
    EXPECT_EQ(s.output(d), "Hel");
  }
  {
    // Equal ends: the longer (earlier-starting) match wins.
    sequence s(with_stop({"bc", "abc"}));
    auto d = s.step(10, "xabc");
    EXPECT_EQ(d.stop_string, "abc");
    EXPECT_EQ(s.output(d), "x");
  }
}

TEST(stop_checker, a_stop_string_on_the_last_allowed_token_ends_with_stop_not_length) {
  sampling_params p = with_stop({"END"});
  p.max_tokens = 2;
  sequence s(p);
  s.step(10, "the ");
  auto d = s.step(11, "END");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(s.output(d), "the ");
}

TEST(stop_checker, eos_on_the_last_allowed_token_ends_with_stop_not_length) {
  sampling_params p;
  p.max_tokens = 2;
  sequence s(p);
  s.step(10, "a");
  EXPECT_EQ(s.step(2, "").reason, finish_reason::stop);
}

TEST(stop_checker, multibyte_stop_strings_are_held_back_and_matched_whole) {
  sequence s(with_stop({"。\n"}));
  auto d = s.step(10, "你好");
  EXPECT_EQ(s.released(d), "你好");
  d = s.step(11, "");  // the detokenizer waits for the rest of a UTF-8 sequence
  EXPECT_EQ(d.reason, finish_reason::none);
  d = s.step(12, "。");
  EXPECT_EQ(s.released(d), "你好");
  d = s.step(13, "\n");
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(s.output(d), "你好");
}

TEST(stop_checker, released_text_never_shrinks_and_never_passes_the_output) {
  const std::vector<std::string> pieces = {"ab", "c", "a", "ba", "bca", "b", "c", "xx", "abc", "a", "b", "cab", "c"};
  for (bool include : {false, true}) {
    sequence s(with_stop({"abcab", "bcb", "cc"}, include));
    size_t released = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      auto d = s.step(100 + static_cast<int32_t>(i), pieces[i]);
      EXPECT_GE(d.releasable_size, released) << "token " << i;
      EXPECT_LE(d.releasable_size, d.text_size) << "token " << i;
      released = d.releasable_size;
      if (d.reason != finish_reason::none) {
        EXPECT_EQ(d.releasable_size, d.text_size);
        break;
      }
    }
  }
}

// The detokenizer holds back text that ends inside a character and releases it (as U+FFFD) when the
// sequence ends by length; a stop string in that text still cuts the output there.
TEST(stop_checker, a_stop_string_in_text_flushed_at_length_ends_with_stop) {
  sampling_params p = with_stop({"\xEF\xBF\xBD"});  // U+FFFD
  p.max_tokens = 2;
  sequence s(p);
  s.step(10, "ab");
  auto d = s.step(11, "");  // a byte that begins no valid character: held back
  ASSERT_EQ(d.reason, finish_reason::length);
  s.text += "\xEF\xBF\xBD";
  d = s.checker.check_flushed(d, s.text);
  EXPECT_EQ(d.reason, finish_reason::stop);
  EXPECT_EQ(d.stop_string, "\xEF\xBF\xBD");
  EXPECT_EQ(s.output(d), "ab");
  EXPECT_EQ(s.released(d), "ab");
}

TEST(stop_checker, text_flushed_at_length_without_a_stop_string_is_all_output) {
  sampling_params p = with_stop({"zz"});
  p.max_tokens = 1;
  sequence s(p);
  auto d = s.step(11, "a");
  ASSERT_EQ(d.reason, finish_reason::length);
  s.text += "z\xEF\xBF\xBD";
  d = s.checker.check_flushed(d, s.text);
  EXPECT_EQ(d.reason, finish_reason::length);
  EXPECT_EQ(s.output(d), "az\xEF\xBF\xBD");
  EXPECT_EQ(s.released(d), "az\xEF\xBF\xBD");
}

} // namespace
} // namespace troupe
