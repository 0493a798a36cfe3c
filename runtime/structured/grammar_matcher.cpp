// compile_structured_output and grammar_matcher: the contract of grammar_matcher.hpp over the pushdown
// parser, the vocabulary trie and the compiled grammar's mask cache.

#include "runtime/structured/grammar_matcher.hpp"

#include "runtime/structured/compiled_grammar.hpp"
#include "runtime/structured/grammar_front_ends.hpp"
#include "runtime/structured/grammar_limits.hpp"
#include "runtime/structured/pushdown_parser.hpp"

#include <algorithm>
#include <bitset>
#include <cstring>
#include <stdexcept>

namespace troupe {

using structured::parse_state;
using structured::pushdown_parser;

namespace {

// How messages name a spec's source.
std::string_view structured_output_source(structured_output::kind k) {
  switch (k) {
  case structured_output::kind::json_object: return "response_format";
  case structured_output::kind::json_schema: return "json_schema";
  case structured_output::kind::regex: return "guided_regex";
  case structured_output::kind::choice: return "guided_choice";
  case structured_output::kind::grammar: return "guided_grammar";
  }
  return "structured outputs";
}

} // namespace

std::shared_ptr<const compiled_grammar> compile_structured_output(const structured_output& spec,
                                                                  std::shared_ptr<const token_vocabulary> vocab,
                                                                  std::shared_ptr<mask_budget> masks) {
  if (!vocab) throw std::invalid_argument("structured outputs: no vocabulary");
  const std::string_view what = structured_output_source(spec.type);
  if (spec.text.size() > structured::limits::max_spec_bytes)
    throw std::invalid_argument(std::string(what) + ": the spec is " + std::to_string(spec.text.size()) +
                                " bytes, more than " + std::to_string(structured::limits::max_spec_bytes) + " (limit)");
  structured::grammar g;
  switch (spec.type) {
  case structured_output::kind::json_object: g = structured::json_object_grammar(); break;
  case structured_output::kind::json_schema: g = structured::json_schema_grammar(spec.text); break;
  case structured_output::kind::regex: g = structured::regex_grammar(spec.text); break;
  case structured_output::kind::choice: g = structured::choice_grammar(spec.text); break;
  case structured_output::kind::grammar: g = structured::parse_ebnf(spec.text); break;
  }
  return std::make_shared<const compiled_grammar>(structured::compile_automaton(g, what), std::move(vocab),
                                                  compiled_grammar::default_mask_cache_bytes, std::move(masks));
}

struct grammar_matcher::state {
  std::shared_ptr<const compiled_grammar> grammar;
  pushdown_parser parser;
  parse_state current;
  bool ended = false;  // an end id was accepted
  std::vector<parse_state> walk;  // the parse after each byte of the trie path being walked
  parse_state scratch_a, scratch_b;
  std::string key;

  explicit state(std::shared_ptr<const compiled_grammar> g)
      : grammar(std::move(g)), parser(grammar->automaton(), grammar->max_stack_depth()) {
    current = parser.initial();
  }

  static bool same(const parse_state& a, const parse_state& b) {
    return a.complete == b.complete && a.configs == b.configs;
  }

  // The mask of current into words, walking the vocabulary trie.
  void compute_mask(std::span<uint32_t> words) {
    std::fill(words.begin(), words.end(), 0u);
    const token_vocabulary& vocab = grammar->vocabulary();
    const auto& trie = vocab.trie();
    const auto& tokens = vocab.trie_tokens();
    const auto set_tokens = [&](const token_vocabulary::trie_node& t) {
      for (uint32_t k = t.token_begin; k < t.token_end; ++k) {
        const int32_t id = tokens[k];
        words[id >> 5] |= 1u << (id & 31);
      }
    };
    const std::size_t mark = parser.pool().mark();
    if (walk.empty()) {
      uint16_t deepest = 0;
      for (const auto& t : trie) deepest = std::max(deepest, t.depth);
      walk.resize(deepest + 1u);
    }
    walk[0] = current;
    // The bytes that leave the parse where it is (the contents of a JSON string, say): a subtree reached
    // in the current parse whose bytes are all of them is allowed whole, without walking it.
    std::bitset<256> loop;
    for (int b = 0; b < 256; ++b) {
      if (parser.advance(current, static_cast<uint8_t>(b), walk[1]) && same(walk[1], current)) loop.set(b);
    }
    for (uint32_t i = 1; i < trie.size();) {
      const auto& t = trie[i];
      parse_state& here = walk[t.depth];
      if (!parser.advance(walk[t.depth - 1], t.byte, here)) {
        i = t.subtree_end;
        continue;
      }
      if (loop.test(t.byte) && (vocab.bytes_below(i) & ~loop).none() && same(here, current)) {
        for (uint32_t k = vocab.tokens_from(i), end = vocab.tokens_from(t.subtree_end); k < end; ++k) {
          const int32_t id = tokens[k];
          words[id >> 5] |= 1u << (id & 31);
        }
        i = t.subtree_end;
        continue;
      }
      set_tokens(t);
      i = here.configs.empty() ? t.subtree_end : i + 1;
    }
    parser.pool().rollback(mark);
    if (current.complete) {
      for (const int32_t id : vocab.end_ids()) words[id >> 5] |= 1u << (id & 31);
    }
  }
};

grammar_matcher::grammar_matcher(std::shared_ptr<const compiled_grammar> grammar) {
  if (!grammar) throw std::invalid_argument("grammar_matcher: no grammar");
  state_ = std::make_unique<state>(std::move(grammar));
}
grammar_matcher::~grammar_matcher() = default;
grammar_matcher::grammar_matcher(grammar_matcher&&) noexcept = default;
grammar_matcher& grammar_matcher::operator=(grammar_matcher&&) noexcept = default;

int32_t grammar_matcher::bitmask_words() const { return (state_->grammar->vocabulary().size() + 31) / 32; }

void grammar_matcher::fill_next_token_bitmask(std::span<uint32_t> words) {
  if (static_cast<int32_t>(words.size()) != bitmask_words())
    throw std::invalid_argument("grammar_matcher: the bitmask has " + std::to_string(words.size()) + " words, not " +
                                std::to_string(bitmask_words()));
  state& s = *state_;
  if (s.ended || s.current.configs.empty()) {  // only ending is left
    std::fill(words.begin(), words.end(), 0u);
    for (const int32_t id : s.grammar->vocabulary().end_ids()) words[id >> 5] |= 1u << (id & 31);
    return;
  }
  s.parser.key(s.current, s.key);
  if (const auto cached = s.grammar->find_mask(s.key)) {
    std::memcpy(words.data(), cached->data(), words.size() * sizeof(uint32_t));
    return;
  }
  s.compute_mask(words);
  s.grammar->store_mask(s.key, std::make_shared<const compiled_grammar::mask>(words.begin(), words.end()));
}

bool grammar_matcher::accept_token(int32_t id) {
  state& s = *state_;
  const token_vocabulary& vocab = s.grammar->vocabulary();
  if (vocab.is_end(id)) {
    if (!s.ended && !s.current.complete) return false;
    s.ended = true;
    return true;
  }
  if (s.ended || !vocab.is_text(id)) return false;
  const std::string& bytes = vocab.bytes(id);
  const parse_state* from = &s.current;
  for (const char c : bytes) {
    parse_state& to = from == &s.scratch_a ? s.scratch_b : s.scratch_a;
    if (!s.parser.advance(*from, static_cast<uint8_t>(c), to)) return false;
    from = &to;
  }
  s.current = *from;
  return true;
}

bool grammar_matcher::ended() const { return state_->ended; }

bool grammar_matcher::is_terminated() const {
  return state_->ended || (state_->current.configs.empty() && state_->current.complete);
}

} // namespace troupe
