// troupe::tokenizer and troupe::incremental_detokenizer end to end, on small hand-written
// tokenizer.json files: loading and its errors, added tokens, and streaming text deltas.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/error.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path test_data = TROUPE_TEST_DATA;
const std::string space_mark = "\xE2\x96\x81"; // ▁

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

json special_token(const std::string& content, int id) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// A Llama 2 style tokenizer (▁ for spaces, byte fallback, <s> added in front) that knows "Hello" and
// "world" as whole tokens.
json mini_llama2() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int next = 259;
  for (const std::string& token : {space_mark, std::string("H"), std::string("e"), std::string("l"), std::string("o"),
                                  std::string("w"), std::string("r"), std::string("d"), space_mark + "H",
                                  space_mark + "He", std::string("ll"), space_mark + "Hell", space_mark + "Hello",
                                  space_mark + "w", std::string("or"), space_mark + "wor", std::string("ld"),
                                  space_mark + "world"})
    vocab[token] = next++;
  const json merges = {space_mark + " H", space_mark + "H e", "l l", space_mark + "He ll", space_mark + "Hell o",
                       space_mark + " w", "o r", space_mark + "w or", "l d", space_mark + "wor ld"};
  return {
      {"version", "1.0"},
      {"added_tokens", {special_token("<unk>", 0), special_token("<s>", 1), special_token("</s>", 2)}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", space_mark}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space_mark}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", space_mark}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true},
        {"vocab", vocab}, {"merges", merges}}}};
}

tokenizer load(const json& doc, std::string_view config = {}) {
  return tokenizer::from_json_text(doc.dump(), "mini/tokenizer.json", config);
}

int32_t id_of(const tokenizer& tok, const std::string& token) { return tok.token_to_id(token).value(); }

// --- loading -----------------------------------------------------------------------------------

TEST(tokenizer_loading, names_the_file_when_it_cannot_be_read) {
  EXPECT_EQ(error_of([] { tokenizer::from_file("no/such/tokenizer.json"); }),
            "no/such/tokenizer.json: cannot be read (does the file exist?)");
}

TEST(tokenizer_loading, takes_a_model_folder_for_its_tokenizer_json) {
  const auto tok = tokenizer::from_file(test_data / "tokenizers" / "troupe_tiny");
  EXPECT_EQ(tok.vocab_size(), 432);
  EXPECT_EQ(error_of([] { tokenizer::from_file(test_data); }),
            (test_data / "tokenizer.json").string() + ": cannot be read (does the file exist?)");
}

TEST(tokenizer_loading, names_the_byte_where_the_json_breaks) {
  EXPECT_EQ(error_of([] { tokenizer::from_json_text("{\"model\": [1, 2", "bad/tokenizer.json"); }),
            "bad/tokenizer.json: not valid JSON (syntax error at byte 16)");
}

TEST(tokenizer_loading, refuses_a_model_type_it_does_not_support) {
  json doc = mini_llama2();
  doc["model"]["type"] = "Unigram";
  EXPECT_EQ(error_of([&] { load(doc); }), "mini/tokenizer.json: model type 'Unigram' is not supported (troupe supports BPE)");
}

TEST(tokenizer_loading, refuses_merges_that_reference_unknown_tokens) {
  json doc = mini_llama2();
  doc["model"]["merges"].push_back("Q u");
  EXPECT_EQ(error_of([&] { load(doc); }),
            "mini/tokenizer.json: model: merge 10 ('Q u') uses token 'Q', which is not in the vocabulary");
}

TEST(tokenizer_loading, refuses_an_unsupported_pre_tokenizer_by_name) {
  json doc = mini_llama2();
  doc["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  EXPECT_EQ(error_of([&] { load(doc); }),
            "mini/tokenizer.json: pre_tokenizer type 'BertPreTokenizer' is not supported (troupe supports Split, "
            "ByteLevel, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, Sequence)");
}

TEST(tokenizer_loading, refuses_a_file_without_a_model) {
  EXPECT_EQ(error_of([] { tokenizer::from_json_text("{\"version\": \"1.0\"}", "x.json"); }),
            "x.json: not a tokenizer.json: missing field 'model'");
  EXPECT_EQ(error_of([] { tokenizer::from_json_text("{\"model\": {\"type\": \"BPE\"}}", "x.json"); }),
            "x.json: model: missing field 'vocab'");
}

TEST(tokenizer_loading, reads_bos_and_eos_from_tokenizer_config) {
  const auto tok = load(mini_llama2(), R"({"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}})");
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  const auto plain = load(mini_llama2());
  EXPECT_EQ(plain.bos_id(), std::nullopt);
  EXPECT_EQ(load(mini_llama2(), R"({"bos_token": null, "eos_token": "</s>"})").bos_id(), std::nullopt);
}

TEST(tokenizer_loading, refuses_a_config_naming_a_token_it_does_not_have) {
  EXPECT_EQ(error_of([] { load(mini_llama2(), R"({"eos_token": "<|eot|>"})"); }),
            "mini/tokenizer_config.json: eos_token '<|eot|>' is not a token of mini/tokenizer.json");
}

TEST(tokenizer_loading, loads_the_tokenizer_troupe_make_model_writes) {
  const auto tok = tokenizer::from_file(test_data / "tokenizers" / "troupe_tiny" / "tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 432);
  EXPECT_EQ(tok.eos_id(), tok.token_to_id("<|im_end|>"));
  EXPECT_EQ(tok.bos_id(), std::nullopt);
  const auto ids = tok.encode("<|im_start|>user\nHi there!<|im_end|>");
  EXPECT_EQ(ids.front(), id_of(tok, "<|im_start|>"));
  EXPECT_EQ(ids.back(), id_of(tok, "<|im_end|>"));
  EXPECT_TRUE(tok.is_special(ids.front()));
  EXPECT_EQ(tok.decode(ids), "<|im_start|>user\nHi there!<|im_end|>");
  EXPECT_EQ(tok.decode(ids, true), "user\nHi there!");
}

// --- encoding and decoding ---------------------------------------------------------------------

TEST(tokenizer, encodes_words_bytes_and_the_template_of_special_tokens) {
  const auto tok = load(mini_llama2());
  const int32_t hello = id_of(tok, space_mark + "Hello"), world = id_of(tok, space_mark + "world");
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{1, hello, world}));
  EXPECT_EQ(tok.encode("Hello world", false), (std::vector<int32_t>{hello, world}));
  // é is not in the vocabulary: its two bytes.
  EXPECT_EQ(tok.encode("\xC3\xA9", false), (std::vector<int32_t>{id_of(tok, space_mark), 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok.encode("", true), (std::vector<int32_t>{1}));
}

TEST(tokenizer, matches_special_tokens_written_in_the_text) {
  const auto tok = load(mini_llama2());
  const int32_t hello = id_of(tok, space_mark + "Hello"), world = id_of(tok, space_mark + "world");
  // Each piece between special tokens is normalized on its own, so each gets its ▁.
  EXPECT_EQ(tok.encode("Hello</s> world", false), (std::vector<int32_t>{hello, 2, id_of(tok, space_mark), world}));
  EXPECT_EQ(tok.encode("<s>Hello", false), (std::vector<int32_t>{1, hello}));
}

TEST(tokenizer, decodes_with_and_without_special_tokens) {
  const auto tok = load(mini_llama2());
  const std::vector<int32_t> ids = tok.encode("Hello world");
  EXPECT_EQ(tok.decode(ids), "<s> Hello world");
  EXPECT_EQ(tok.decode(ids, true), "Hello world");
  // Ids outside the vocabulary are left out.
  EXPECT_EQ(tok.decode(std::vector<int32_t>{-1, 100000, ids[1]}), "Hello");
}

TEST(tokenizer, maps_between_ids_and_tokens) {
  const auto tok = load(mini_llama2());
  EXPECT_EQ(tok.vocab_size(), 277);
  EXPECT_EQ(tok.id_to_token(1), "<s>");
  EXPECT_EQ(tok.id_to_token(3 + 0x41), "<0x41>");
  EXPECT_EQ(tok.id_to_token(277), "");
  EXPECT_EQ(tok.id_to_token(-1), "");
  EXPECT_EQ(tok.token_to_id("</s>"), 2);
  EXPECT_EQ(tok.token_to_id("nope"), std::nullopt);
  EXPECT_TRUE(tok.is_special(2));
  EXPECT_FALSE(tok.is_special(3));
  EXPECT_FALSE(tok.is_special(-5));
}

TEST(tokenizer, replaces_invalid_utf8_in_the_input_with_the_replacement_character) {
  const auto tok = load(mini_llama2());
  EXPECT_EQ(tok.encode("\xFFHello", false), tok.encode("\xEF\xBF\xBDHello", false));
}

TEST(tokenizer, gives_the_same_ids_from_several_threads_at_once) {
  const auto tok = tokenizer::from_file(test_data / "tokenizers" / "troupe_tiny" / "tokenizer.json");
  const std::string text = "The quick brown fox, 12345 times! \xE4\xB8\xAD\xE6\x96\x87 <|im_end|>";
  const auto expected = tok.encode(text);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (tok.encode(text + std::to_string(i % 7)).size() < expected.size()) ++mismatches[t];
        if (tok.encode(text) != expected) ++mismatches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}

// --- incremental detokenizer -------------------------------------------------------------------

std::vector<std::string> deltas(const tokenizer& tok, std::span<const int32_t> prompt, std::span<const int32_t> ids,
                                bool skip_special = false) {
  incremental_detokenizer detok(tok, prompt, skip_special);
  std::vector<std::string> out;
  for (const int32_t id : ids) out.push_back(detok.push(id));
  out.push_back(detok.flush());
  return out;
}

using texts = std::vector<std::string>;

TEST(tokenizer_incremental_detokenizer, holds_an_emoji_back_until_its_last_byte_token) {
  const auto tok = load(mini_llama2());
  const auto ids = tok.encode("Hello \xF0\x9F\x98\x80 world", false); // ▁Hello ▁ <F0> <9F> <98> <80> ▁world
  ASSERT_EQ(ids.size(), 7u);
  EXPECT_EQ(deltas(tok, {}, ids), (texts{"Hello", " ", "", "", "", "\xF0\x9F\x98\x80", " world", ""}));
}

TEST(tokenizer_incremental_detokenizer, keeps_the_space_of_the_first_token_after_a_prompt) {
  const auto tok = load(mini_llama2());
  const auto prompt = tok.encode("Hello");
  const auto generated = tok.encode("world", false);
  EXPECT_EQ(deltas(tok, prompt, generated), (texts{" world", ""}));
  // Without a prompt the text starts there, and SentencePiece drops the space, as decode does.
  EXPECT_EQ(deltas(tok, {}, generated), (texts{"world", ""}));
}

TEST(tokenizer_incremental_detokenizer, keeps_the_space_after_skipped_special_tokens) {
  const auto tok = load(mini_llama2());
  const int32_t hello = id_of(tok, space_mark + "Hello"), world = id_of(tok, space_mark + "world");
  const std::vector<int32_t> prompt{1, hello, 2, 2, 2, 2, 2, 2};
  EXPECT_EQ(deltas(tok, prompt, std::vector<int32_t>{world}, true), (texts{" world", ""}));
  EXPECT_EQ(deltas(tok, {}, std::vector<int32_t>{hello, 2, world}, true), (texts{"Hello", "", " world", ""}));
  EXPECT_EQ(deltas(tok, {}, std::vector<int32_t>{hello, 2, world}, false), (texts{"Hello", "</s>", " world", ""}));
}

TEST(tokenizer_incremental_detokenizer, completes_a_character_the_prompt_began) {
  const auto tok = load(mini_llama2());
  // 中 is E4 B8 AD; the window must not start inside it.
  const std::vector<int32_t> ids{id_of(tok, space_mark + "Hello"), id_of(tok, space_mark), 3 + 0xE4, 3 + 0xB8, 3 + 0xAD,
                                 3 + 0xE4, 3 + 0xB8, 3 + 0xAD, 3 + 0xE4, 3 + 0xB8, 3 + 0xAD};
  const std::span<const int32_t> all(ids);
  EXPECT_EQ(deltas(tok, all.first(8), all.subspan(8)), (texts{"", "", "\xE4\xB8\xAD", ""}));
}

TEST(tokenizer_incremental_detokenizer, flushes_a_dangling_partial_character_as_replacement_characters) {
  const auto tok = load(mini_llama2());
  const std::vector<int32_t> ids{id_of(tok, space_mark + "Hello"), 3 + 0xE4, 3 + 0xB8};
  EXPECT_EQ(deltas(tok, {}, ids), (texts{"Hello", "", "", "\xEF\xBF\xBD\xEF\xBF\xBD"}));
}

TEST(tokenizer_incremental_detokenizer, splits_byte_level_characters_only_at_character_ends) {
  const auto tok = tokenizer::from_file(test_data / "tokenizers" / "troupe_tiny" / "tokenizer.json");
  const std::string text = "a\xF0\x9F\x98\x80\xE4\xB8\xAD b";
  const auto ids = tok.encode(text);
  std::string joined;
  for (const auto& delta : deltas(tok, {}, ids)) {
    EXPECT_TRUE(delta.empty() || delta == "a" || delta == "\xF0\x9F\x98\x80" || delta == "\xE4\xB8\xAD" ||
                delta == " b" || delta == " " || delta == "b")
        << json(delta).dump();
    joined += delta;
  }
  EXPECT_EQ(joined, text);
}

} // namespace
} // namespace troupe
