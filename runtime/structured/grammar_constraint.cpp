#include "runtime/structured/grammar_constraint.hpp"

#include <algorithm>
#include <vector>

namespace troupe {
namespace {

class grammar_constraint final : public token_constraint {
 public:
  explicit grammar_constraint(std::shared_ptr<const compiled_grammar> g) : matcher_(std::move(g)) {}

  void fill_next_token_bitmask(std::span<uint32_t> words) override {
    const size_t own = static_cast<size_t>(matcher_.bitmask_words());
    if (words.size() == own) return matcher_.fill_next_token_bitmask(words);
    // The model's vocabulary and the tokenizer's differ in size (padded embeddings): the ids only one of
    // them has are never allowed.
    scratch_.resize(own);
    matcher_.fill_next_token_bitmask(scratch_);
    std::fill(words.begin(), words.end(), 0u);
    std::copy_n(scratch_.begin(), std::min(own, words.size()), words.begin());
  }
  bool accept_token(int32_t id) override { return matcher_.accept_token(id); }
  bool is_terminated() const override { return matcher_.is_terminated(); }
  bool ended() const override { return matcher_.ended(); }

 private:
  grammar_matcher matcher_;
  std::vector<uint32_t> scratch_;
};

} // namespace

constraint_factory grammar_constraint_factory(grammar_compiler compile) {
  return [compile = std::move(compile)](const structured_output& spec) -> std::unique_ptr<token_constraint> {
    return std::make_unique<grammar_constraint>(compile(spec));
  };
}

} // namespace troupe
