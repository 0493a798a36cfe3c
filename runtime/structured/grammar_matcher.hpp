#pragma once
// Structured outputs: a request's constraint (JSON schema, any JSON object, regex, choice, EBNF grammar)
// compiled once into a grammar over the tokenizer's vocabulary, and one matcher per request that says, each
// step, which token ids may come next (a bitmask over the vocabulary) and advances on the token sampled.
//
// Who uses what:
//   gateway      compile() at request time, so a bad schema/regex/grammar is a 400 naming the field;
//   sampling shard  one grammar_matcher per constrained sequence: fill_next_token_bitmask() while the
//                forward runs, the sampler sets disallowed logits to -inf, then accept_token(sampled id).
// The compiled grammar is immutable and shared by every request with the same spec (grammar_cache).
//
// NOTE: this header is the contract between the grammar engine (runtime/structured/*.cpp) and the engine's
// sampling path; it must stay free of heavy headers (no nlohmann, no CAF).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace troupe {

class tokenizer;

// What a request asked for, as text: the spec travels in sampling_params and step plans unchanged.
struct structured_output {
  enum class kind : uint8_t {
    json_object,  // any JSON object (response_format json_object); text is empty
    json_schema,  // text: the JSON schema (response_format json_schema, guided_json)
    regex,        // text: the pattern (guided_regex), matched against the whole output
    choice,       // text: a JSON array of strings (guided_choice); the output is exactly one of them
    grammar,      // text: an EBNF/GBNF grammar with a `root` rule (guided_grammar)
  };
  kind type = kind::json_object;
  std::string text;
  bool operator==(const structured_output&) const = default;
};

// The vocabulary as the grammar engine sees it: each token's bytes (byte-level BPE and SentencePiece pieces
// decoded to raw bytes), which ids end generation (EOS and the model's stop ids), and which are special
// (never allowed inside constrained text). Built once per model. vocab_size: the model's vocabulary when it
// is larger than the tokenizer's (Qwen3: 151,936 logits for 151,669 tokens); the ids past the tokenizer's
// are never allowed. 0: the tokenizer's.
class token_vocabulary;
std::shared_ptr<const token_vocabulary> make_token_vocabulary(const tokenizer& tok,
                                                              std::span<const int32_t> end_ids,
                                                              int32_t vocab_size = 0);

class compiled_grammar;
class mask_budget;

// Compiles a spec for a vocabulary. Throws std::invalid_argument with a message a user can act on
// (which part of the schema/regex/grammar is unsupported or malformed, e.g. "guided_regex: unbalanced
// parenthesis at offset 7", or which limit of grammar_limits.hpp it passes). masks: the memory its mask
// cache shares with other grammars' (compiled_grammar.hpp); null: its own bound only.
std::shared_ptr<const compiled_grammar> compile_structured_output(const structured_output& spec,
                                                                  std::shared_ptr<const token_vocabulary> vocab,
                                                                  std::shared_ptr<mask_budget> masks = nullptr);

// One constrained sequence's position in its grammar. Not thread-safe; cheap to create.
class grammar_matcher {
 public:
  explicit grammar_matcher(std::shared_ptr<const compiled_grammar> grammar);
  ~grammar_matcher();
  grammar_matcher(grammar_matcher&&) noexcept;
  grammar_matcher& operator=(grammar_matcher&&) noexcept;

  // Words of the bitmask fill_next_token_bitmask writes: ceil(vocab_size / 32).
  int32_t bitmask_words() const;
  // Bit (id % 32) of word (id / 32) set <=> token id may be sampled next. End ids are allowed exactly when
  // the output so far is complete under the grammar; after termination only end ids are allowed.
  // `words.size()` must be bitmask_words().
  void fill_next_token_bitmask(std::span<uint32_t> words);
  // Advances over a sampled token. Returns false (state unchanged) when the token is not allowed.
  bool accept_token(int32_t id);
  // True once an end id was accepted, or the grammar is complete and admits nothing more.
  bool is_terminated() const;
  // True once an end id was accepted.
  bool ended() const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

} // namespace troupe
