// The tokenizer's stages one at a time, built from hand-written tokenizer.json sections, with the
// results Hugging Face tokenizers gives for them.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/tokenizer/tokenizer_added_tokens.hpp"
#include "runtime/tokenizer/tokenizer_bpe.hpp"
#include "runtime/tokenizer/tokenizer_components.hpp"
#include "runtime/tokenizer/tokenizer_regex.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe::tokenization {
namespace {

using nlohmann::json;
using strings = std::vector<std::string>;

std::string normalized(const json& section, std::string text) {
  make_normalizer(section)->normalize(text);
  return text;
}

strings pre_tokenized(const json& section, const std::string& text, bool at_start = true) {
  std::vector<piece> pieces{{text, at_start}};
  make_pre_tokenizer(section)->pre_tokenize(pieces);
  strings out;
  for (const auto& p : pieces) out.push_back(p.text);
  return out;
}

std::string decoded(const json& section, strings tokens) {
  make_decoder(section)->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

// The error message of what throws user_error; "" when nothing is thrown.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

// --- UTF-8 -------------------------------------------------------------------------------------

TEST(tokenizer_utf8, replaces_each_maximal_invalid_subpart_with_one_replacement_character) {
  EXPECT_EQ(utf8::make_valid("\xE4\xB8" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(utf8::make_valid("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8::make_valid("\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::make_valid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); // a surrogate
  EXPECT_EQ(utf8::make_valid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
  EXPECT_EQ(utf8::make_valid("ok \xE4\xB8\xAD"), "ok \xE4\xB8\xAD");
}

TEST(tokenizer_utf8, tells_valid_text_from_invalid_bytes) {
  EXPECT_TRUE(utf8::is_valid("\xEF\xBF\xBD plain \xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8::is_valid("\xF0\x9F\x98"));
  EXPECT_FALSE(utf8::is_valid("\xFF"));
}

TEST(tokenizer_utf8, finds_where_an_unfinished_character_starts) {
  EXPECT_EQ(utf8::complete_prefix_length("ab\xE4\xB8"), 2u);
  EXPECT_EQ(utf8::complete_prefix_length("ab\xE4\xB8\xAD"), 5u);
  EXPECT_EQ(utf8::complete_prefix_length("ab\x80"), 3u); // a stray byte will never complete
}

// --- regex -------------------------------------------------------------------------------------

TEST(tokenizer_regex, narrows_backslash_s_to_unicode_white_space) {
  EXPECT_EQ(onig_compatible_pattern(R"(\s+(?!\S))"),
            R"([\t-\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+(?!)"
            R"([^\t-\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]))");
  EXPECT_EQ(onig_compatible_pattern(R"([^\s\p{L}])"),
            R"([^\t-\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\p{L}])");
  EXPECT_EQ(onig_compatible_pattern(R"([]\s])"), R"([]\t-\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}])");
}

TEST(tokenizer_regex, does_not_count_the_mongolian_vowel_separator_as_space) {
  const regex spaces(R"(\s)");
  // U+180E (3 bytes), a space, U+3000 (3 bytes)
  const auto matches = spaces.find_all("\xE1\xA0\x8E \xE3\x80\x80");
  ASSERT_EQ(matches.size(), 2u);
  EXPECT_EQ(matches[0], std::make_pair(std::size_t{3}, std::size_t{4}));
  EXPECT_EQ(matches[1], std::make_pair(std::size_t{4}, std::size_t{7}));
}

TEST(tokenizer_regex, skips_an_empty_match_right_after_a_match_like_oniguruma) {
  const auto matches = regex("a*").find_all("baab");
  const std::vector<std::pair<std::size_t, std::size_t>> expected{{0, 0}, {1, 3}, {4, 4}};
  EXPECT_EQ(matches, expected);
}

TEST(tokenizer_regex, escapes_a_literal_string) {
  EXPECT_EQ(regex::escape("a.b*c d"), "a\\.b\\*c\\ d");
  EXPECT_EQ(regex(regex::escape("a.b")).find_all("axb a.b").size(), 1u);
}

TEST(tokenizer_regex, reports_an_invalid_pattern) {
  EXPECT_EQ(error_of([] { regex("(a"); }), "invalid regex pattern '(a': missing closing parenthesis at offset 2");
}

// --- normalizers -------------------------------------------------------------------------------

TEST(tokenizer_normalizer, composes_and_decomposes_unicode) {
  EXPECT_EQ(normalized({{"type", "NFC"}}, "e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(normalized({{"type", "NFD"}}, "\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(normalized({{"type", "NFKC"}}, "\xEF\xAC\x81 \xE2\x91\xA0"), "fi 1"); // ﬁ ①
  EXPECT_EQ(normalized({{"type", "NFKD"}}, "\xC3\xA9\xEF\xAC\x81"), "e\xCC\x81" "fi");
}

TEST(tokenizer_normalizer, lowercases_with_full_mappings_character_by_character) {
  EXPECT_EQ(normalized({{"type", "Lowercase"}}, "HeLLo \xC3\x89"), "hello \xC3\xA9");
  EXPECT_EQ(normalized({{"type", "Lowercase"}}, "\xC4\xB0"), "i\xCC\x87");                 // İ
  EXPECT_EQ(normalized({{"type", "Lowercase"}}, "\xCE\x91\xCE\xA3"), "\xCE\xB1\xCF\x83"); // ΑΣ: no final sigma
}

TEST(tokenizer_normalizer, strips_white_space_on_the_sides_asked_for) {
  EXPECT_EQ(normalized({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, " \t\xE3\x80\x80x y\n "), "x y");
  EXPECT_EQ(normalized({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, "  x  "), "x  ");
  EXPECT_EQ(normalized({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, "  x  "), "  x");
}

TEST(tokenizer_normalizer, prepends_only_to_text_that_is_not_empty) {
  EXPECT_EQ(normalized({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}}, "hi"), "\xE2\x96\x81hi");
  EXPECT_EQ(normalized({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}}, ""), "");
}

TEST(tokenizer_normalizer, replaces_strings_and_regex_matches) {
  EXPECT_EQ(normalized({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}}, "a b  c"), "a_b__c");
  EXPECT_EQ(normalized({{"type", "Replace"}, {"pattern", {{"String", "a.b"}}}, {"content", "!"}}, "a.b axb"), "! axb");
  EXPECT_EQ(normalized({{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}}, "a \t\n b"), "a b");
}

TEST(tokenizer_normalizer, strips_accents_by_dropping_combining_marks) {
  EXPECT_EQ(normalized({{"type", "StripAccents"}}, "e\xCC\x81" "a\xCC\x88"), "ea");
}

TEST(tokenizer_normalizer, applies_a_sequence_in_order) {
  const json llama2 = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  EXPECT_EQ(normalized(llama2, "Hi you"), "\xE2\x96\x81Hi\xE2\x96\x81you");
}

TEST(tokenizer_normalizer, refuses_an_unknown_type_by_name) {
  EXPECT_EQ(error_of([] { make_normalizer({{"type", "Precompiled"}}); }),
            "normalizer type 'Precompiled' is not supported (troupe supports NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
            "StripAccents, Prepend, Replace, ByteLevel, Sequence)");
  EXPECT_EQ(make_normalizer(json()), nullptr);
}

// --- pre-tokenizers ----------------------------------------------------------------------------

json split_on_dash(const char* behavior) {
  return {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}};
}

// The example of HF's SplitDelimiterBehavior documentation.
TEST(tokenizer_pre_tokenizer, splits_with_each_delimiter_behavior) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(pre_tokenized(split_on_dash("Removed"), text), (strings{"the", "final", "countdown"}));
  EXPECT_EQ(pre_tokenized(split_on_dash("Isolated"), text), (strings{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pre_tokenized(split_on_dash("MergedWithPrevious"), text), (strings{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pre_tokenized(split_on_dash("MergedWithNext"), text), (strings{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pre_tokenized(split_on_dash("Contiguous"), text), (strings{"the", "-", "final", "--", "countdown"}));
}

TEST(tokenizer_pre_tokenizer, splits_on_what_does_not_match_when_inverted) {
  const json section = {{"type", "Split"}, {"pattern", {{"Regex", "\\p{L}+"}}}, {"behavior", "Removed"}, {"invert", true}};
  EXPECT_EQ(pre_tokenized(section, "ab, cd!"), (strings{"ab", "cd"}));
}

TEST(tokenizer_pre_tokenizer, splits_like_qwen2) {
  const json section = {{"type", "Split"},
                        {"pattern",
                         {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  EXPECT_EQ(pre_tokenized(section, "I'M 42  ok\r\n"), (strings{"I", "'M", " ", "4", "2", " ", " ok", "\r\n"}));
}

TEST(tokenizer_pre_tokenizer, maps_bytes_to_gpt2_characters_after_the_gpt2_split) {
  const json section = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  // "Hi  there" gets a leading space; the GPT-2 regex keeps one space with the next word.
  EXPECT_EQ(pre_tokenized(section, "Hi  there"), (strings{"\xC4\xA0Hi", "\xC4\xA0", "\xC4\xA0there"}));
  EXPECT_EQ(pre_tokenized({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}, "a\n\xC3\xA9"),
            (strings{"a\xC4\x8A\xC3\x83\xC2\xA9"}));
}

TEST(tokenizer_pre_tokenizer, puts_the_metaspace_first_only_at_the_start_of_the_text) {
  const json first = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
  EXPECT_EQ(pre_tokenized(first, "a b", true), (strings{"\xE2\x96\x81" "a\xE2\x96\x81" "b"}));
  EXPECT_EQ(pre_tokenized(first, "a b", false), (strings{"a\xE2\x96\x81" "b"}));
  const json always = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_EQ(pre_tokenized(always, "a  b", false), (strings{"\xE2\x96\x81" "a", "\xE2\x96\x81", "\xE2\x96\x81" "b"}));
}

TEST(tokenizer_pre_tokenizer, splits_digits_one_by_one_or_in_runs) {
  EXPECT_EQ(pre_tokenized({{"type", "Digits"}, {"individual_digits", true}}, "a12b"), (strings{"a", "1", "2", "b"}));
  EXPECT_EQ(pre_tokenized({{"type", "Digits"}, {"individual_digits", false}}, "a12b3"), (strings{"a", "12", "b", "3"}));
}

TEST(tokenizer_pre_tokenizer, splits_on_white_space_and_punctuation) {
  EXPECT_EQ(pre_tokenized({{"type", "WhitespaceSplit"}}, " a  b\tc "), (strings{"a", "b", "c"}));
  EXPECT_EQ(pre_tokenized({{"type", "Whitespace"}}, "hi, you!!"), (strings{"hi", ",", "you", "!!"}));
  EXPECT_EQ(pre_tokenized({{"type", "Punctuation"}, {"behavior", "Isolated"}}, "a,b!?"), (strings{"a", ",", "b", "!", "?"}));
}

TEST(tokenizer_pre_tokenizer, applies_a_sequence_to_every_piece) {
  const json section = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
  EXPECT_EQ(pre_tokenized(section, "ab12 c3"), (strings{"ab", "1", "2", "c", "3"}));
}

TEST(tokenizer_pre_tokenizer, refuses_an_unknown_type_or_behavior_by_name) {
  EXPECT_EQ(error_of([] { make_pre_tokenizer({{"type", "BertPreTokenizer"}}); }),
            "pre_tokenizer type 'BertPreTokenizer' is not supported (troupe supports Split, ByteLevel, Metaspace, Digits, "
            "Punctuation, Whitespace, WhitespaceSplit, Sequence)");
  EXPECT_EQ(error_of([] { make_pre_tokenizer(split_on_dash("Sideways")); }),
            "Split pre_tokenizer: behavior 'Sideways' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
            "Contiguous");
}

// --- decoders ----------------------------------------------------------------------------------

TEST(tokenizer_decoder, maps_gpt2_characters_back_to_bytes) {
  EXPECT_EQ(decoded({{"type", "ByteLevel"}}, {"\xC4\xA0Hello", "\xC4\xA0w\xC3\x83", "\xC2\xA9"}), " Hello w\xC3\xA9");
  // A token with characters outside the byte alphabet passes through as its own text.
  EXPECT_EQ(decoded({{"type", "ByteLevel"}}, {"<|im_start|>", "\xE4\xB8\xAD"}), "<|im_start|>\xE4\xB8\xAD");
  // Bytes that do not make a character become U+FFFD.
  EXPECT_EQ(decoded({{"type", "ByteLevel"}}, {"\xC3\xA4", "a"}), "\xEF\xBF\xBD" "a");
}

TEST(tokenizer_decoder, turns_byte_tokens_into_text_or_one_replacement_per_byte) {
  const json section = {{"type", "ByteFallback"}};
  EXPECT_EQ(decoded(section, {"<0xE4>", "<0xB8>", "<0xAD>", "x"}), "\xE4\xB8\xAD" "x");
  EXPECT_EQ(decoded(section, {"<0xE4>", "<0xB8>", "x"}), "\xEF\xBF\xBD\xEF\xBF\xBD" "x");
  EXPECT_EQ(decoded(section, {"<0xZZ>", "<0x41>"}), "<0xZZ>A");
}

TEST(tokenizer_decoder, removes_every_metaspace_of_the_first_token_only) {
  const json section = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(decoded(section, {"\xE2\x96\x81\xE2\x96\x81" "a", "\xE2\x96\x81" "b"}), "a b");
  const json never = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "never"}};
  EXPECT_EQ(decoded(never, {"\xE2\x96\x81" "a"}), " a");
}

TEST(tokenizer_decoder, strips_fuses_and_replaces_like_llama2) {
  const json llama2 = {{"type", "Sequence"},
                       {"decoders",
                        {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                         {{"type", "ByteFallback"}},
                         {{"type", "Fuse"}},
                         {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(decoded(llama2, {"\xE2\x96\x81Hello", "\xE2\x96\x81", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"}),
            "Hello \xF0\x9F\x98\x80");
  EXPECT_EQ(decoded(llama2, {"<s>", "\xE2\x96\x81Hi"}), "<s> Hi");
  EXPECT_EQ(decoded({{"type", "Strip"}, {"content", "x"}, {"start", 2}, {"stop", 1}}, {"xxxaxx"}), "xax");
}

TEST(tokenizer_decoder, turns_the_end_of_word_suffix_into_spaces) {
  EXPECT_EQ(decoded({{"type", "BPEDecoder"}, {"suffix", "</w>"}}, {"hel", "lo</w>", "you</w>"}), "hello you");
}

TEST(tokenizer_decoder, refuses_an_unknown_type_by_name) {
  EXPECT_EQ(error_of([] { make_decoder({{"type", "WordPiece"}}); }),
            "decoder type 'WordPiece' is not supported (troupe supports ByteLevel, Metaspace, Replace, ByteFallback, "
            "Fuse, Strip, BPEDecoder, Sequence)");
}

// --- post-processors ---------------------------------------------------------------------------

const json bos_eos_template = {
    {"type", "TemplateProcessing"},
    {"single",
     {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
      {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
    {"special_tokens",
     {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}, {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}};

TEST(tokenizer_post_processor, wraps_the_sequence_in_its_template_only_when_asked) {
  const auto processor = make_post_processor(bos_eos_template);
  EXPECT_EQ(processor->process({7, 8}, true), (std::vector<int32_t>{1, 7, 8, 2}));
  EXPECT_EQ(processor->process({7, 8}, false), (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(make_post_processor({{"type", "ByteLevel"}})->process({7}, true), (std::vector<int32_t>{7}));
  EXPECT_EQ(make_post_processor({{"type", "BertProcessing"}, {"cls", {"[CLS]", 101}}, {"sep", {"[SEP]", 102}}})
                ->process({7}, true),
            (std::vector<int32_t>{101, 7, 102}));
}

TEST(tokenizer_post_processor, refuses_a_template_token_it_has_no_ids_for) {
  json broken = bos_eos_template;
  broken["special_tokens"].erase("</s>");
  EXPECT_EQ(error_of([&] { make_post_processor(broken); }),
            "TemplateProcessing post_processor: special token '</s>' has no ids in 'special_tokens'");
}

// --- BPE ---------------------------------------------------------------------------------------

json bpe(json vocab, json merges, json extra = json::object()) {
  json model = {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
  for (const auto& [key, value] : extra.items()) model[key] = value;
  return model;
}

std::vector<int32_t> tokenized(const bpe_model& model, std::string_view word) {
  std::vector<int32_t> ids;
  model.tokenize(word, ids);
  return ids;
}

TEST(tokenizer_bpe, applies_merges_in_rank_order_not_left_to_right) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, {"b c", "a b"})), "abc"), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, {"a b", "b c", "ab c"})), "abc"), (std::vector<int32_t>{5}));
}

TEST(tokenizer_bpe, merges_the_leftmost_pair_first_among_equal_ranks) {
  const bpe_model model(bpe({{"a", 0}, {"aa", 1}}, {"a a"}));
  EXPECT_EQ(tokenized(model, "aaa"), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(tokenized(model, "aaaa"), (std::vector<int32_t>{1, 1}));
}

TEST(tokenizer_bpe, reads_merges_as_pairs_the_same_as_strings) {
  const json vocab = {{"a", 0}, {"b", 1}, {"ab", 2}};
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, json::array({json::array({"a", "b"})}))), "abab"),
            (std::vector<int32_t>{2, 2}));
}

TEST(tokenizer_bpe, falls_back_to_byte_tokens_for_unknown_characters) {
  json vocab = {{"<unk>", 0}, {"a", 1}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 2 + b;
  }
  const bpe_model model(bpe(vocab, json::array(), {{"byte_fallback", true}, {"unk_token", "<unk>"}}));
  EXPECT_EQ(tokenized(model, "a\xC3\xA9"), (std::vector<int32_t>{1, 2 + 0xC3, 2 + 0xA9}));
}

TEST(tokenizer_bpe, fuses_consecutive_unknown_characters_when_asked) {
  const json vocab = {{"<unk>", 0}, {"a", 1}};
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}})), "xyaz"),
            (std::vector<int32_t>{0, 1, 0}));
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", false}})), "xyaz"),
            (std::vector<int32_t>{0, 0, 1, 0}));
  // Without an unknown token, unknown characters are dropped.
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, json::array())), "xay"), (std::vector<int32_t>{1}));
}

TEST(tokenizer_bpe, emits_a_whole_vocabulary_word_as_is_when_ignoring_merges) {
  // "abc" is in the vocabulary but no merge leads there.
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"abc", 3}};
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, json::array(), {{"ignore_merges", true}})), "abc"), (std::vector<int32_t>{3}));
  EXPECT_EQ(tokenized(bpe_model(bpe(vocab, json::array())), "abc"), (std::vector<int32_t>{0, 1, 2}));
}

TEST(tokenizer_bpe, marks_word_continuations_and_ends_with_prefix_and_suffix) {
  const json prefixed = {{"h", 0}, {"##i", 1}, {"hi", 2}, {"##h", 3}};
  EXPECT_EQ(tokenized(bpe_model(bpe(prefixed, {"h ##i"}, {{"continuing_subword_prefix", "##"}})), "hih"),
            (std::vector<int32_t>{2, 3}));
  const json suffixed = {{"h", 0}, {"i</w>", 1}, {"hi</w>", 2}};
  EXPECT_EQ(tokenized(bpe_model(bpe(suffixed, {"h i</w>"}, {{"end_of_word_suffix", "</w>"}})), "hi"),
            (std::vector<int32_t>{2}));
}

TEST(tokenizer_bpe, names_a_merge_that_uses_a_token_outside_the_vocabulary) {
  EXPECT_EQ(error_of([] { bpe_model(bpe({{"a", 0}, {"b", 1}}, {"a b"})); }),
            "model: merge 0 ('a b') uses token 'ab', which is not in the vocabulary");
  EXPECT_EQ(error_of([] { bpe_model(bpe({{"a", 0}}, {"a x"})); }),
            "model: merge 0 ('a x') uses token 'x', which is not in the vocabulary");
  EXPECT_EQ(error_of([] { bpe_model(bpe({{"a", 0}}, {"ab"})); }),
            "model: merge 0 ('ab') is not two tokens separated by a space");
}

TEST(tokenizer_bpe, refuses_another_model_type_by_name) {
  EXPECT_EQ(error_of([] { bpe_model(json{{"type", "Unigram"}, {"vocab", json::array()}}); }),
            "model type 'Unigram' is not supported (troupe supports BPE)");
}

// --- added tokens ------------------------------------------------------------------------------

std::vector<std::string> parts_of(const added_token_matcher& matcher, std::string_view text) {
  std::vector<std::string> out;
  for (const auto& part : matcher.split(text))
    out.push_back((part.id >= 0 ? std::to_string(part.id) + ":" : "") +
                  std::string(text.substr(part.begin, part.end - part.begin)));
  return out;
}

added_token token(std::string content, int32_t id) {
  added_token t;
  t.content = std::move(content);
  t.id = id;
  return t;
}

TEST(tokenizer_added_tokens, match_the_longest_token_at_the_leftmost_position) {
  added_token_matcher matcher;
  matcher.add(token("<a>", 1), "<a>");
  matcher.add(token("<a><b>", 2), "<a><b>");
  matcher.add(token("b>x", 3), "b>x");
  EXPECT_EQ(parts_of(matcher, "x<a><b>x<a>"), (strings{"x", "2:<a><b>", "x", "1:<a>"}));
  EXPECT_EQ(parts_of(matcher, ""), strings{});
}

TEST(tokenizer_added_tokens, swallow_white_space_on_the_sides_they_strip) {
  added_token_matcher matcher;
  added_token both = token("<t>", 5);
  both.lstrip = both.rstrip = true;
  matcher.add(both, "<t>");
  EXPECT_EQ(parts_of(matcher, "a  <t> \tb"), (strings{"a", "5:  <t> \t", "b"}));
}

TEST(tokenizer_added_tokens, match_single_word_tokens_only_between_non_word_characters) {
  added_token_matcher matcher;
  added_token word = token("word", 7);
  word.single_word = true;
  matcher.add(word, "word");
  EXPECT_EQ(parts_of(matcher, "a word, swordfish word_"), (strings{"a ", "7:word", ", swordfish word_"}));
}

} // namespace
} // namespace troupe::tokenization
